using Atelier.Core.Errors;

namespace Atelier.Catalog;

/// <summary>The catalog row of a dataset version and its build.</summary>
public sealed record DatasetRecord
{
    /// <summary>Id, <c>ds-</c> followed by a UUID.</summary>
    public required string Id { get; init; }

    /// <summary>Owning workspace.</summary>
    public required string WorkspaceId { get; init; }

    /// <summary>A display name.</summary>
    public required string Name { get; init; }

    /// <summary><c>queued</c>, <c>running</c>, <c>succeeded</c>, <c>failed</c> or <c>cancelled</c>.</summary>
    public required string Status { get; init; }

    /// <summary>What to build, as the API received it (JSON).</summary>
    public required string RequestJson { get; init; }

    /// <summary>The latest progress (JSON), while it builds.</summary>
    public string? ProgressJson { get; init; }

    /// <summary>Counters, shards and report of a finished build (JSON).</summary>
    public string? SummaryJson { get; init; }

    /// <summary>Why a build failed.</summary>
    public string? Error { get; init; }

    /// <summary>The residency policy (at least as strict as each source file's).</summary>
    public required string Policy { get; init; }

    /// <summary>Where its bytes are placed.</summary>
    public required string LocationId { get; init; }

    /// <summary>Unix seconds.</summary>
    public required long CreatedAt { get; init; }

    /// <summary>Unix seconds.</summary>
    public long? StartedAt { get; init; }

    /// <summary>Unix seconds.</summary>
    public long? FinishedAt { get; init; }

    /// <summary>The key that asked for it.</summary>
    public required string CreatedBy { get; init; }

    /// <summary>The node that holds the build's lease while it builds; null when nobody does (not started, or finished).</summary>
    public string? BuildOwner { get; init; }

    /// <summary>Unix seconds until which <see cref="BuildOwner"/>'s lease holds; past it, another node may take the build over.</summary>
    public long? BuildLeaseUntil { get; init; }
}

/// <summary>Dataset versions; every query but the builder's is scoped to a workspace.</summary>
public interface IDatasetRepository
{
    /// <summary>Adds a queued dataset.</summary>
    /// <exception cref="ConflictException">The row breaks a catalog constraint (an unknown workspace, a taken id).</exception>
    Task InsertAsync(DatasetRecord dataset, CancellationToken cancellationToken = default);

    /// <summary>The dataset of the workspace, or null.</summary>
    Task<DatasetRecord?> GetAsync(string workspaceId, string id, CancellationToken cancellationToken = default);

    /// <summary>The dataset by id alone, for the builder.</summary>
    Task<DatasetRecord?> GetForBuilderAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>A page of the workspace's datasets, newest first.</summary>
    Task<IReadOnlyList<DatasetRecord>> ListAsync(string workspaceId, int page, int pageSize, CancellationToken cancellationToken = default);

    /// <summary>Builds that must run (again): queued, or running when the process stopped; oldest first.</summary>
    Task<IReadOnlyList<DatasetRecord>> UnfinishedAsync(CancellationToken cancellationToken = default);

    /// <summary>Marks a queued (or already running) build running, keeping its first start time.</summary>
    Task MarkRunningAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>Records progress (JSON).</summary>
    Task UpdateProgressAsync(string id, string progressJson, CancellationToken cancellationToken = default);

    /// <summary>
    /// Claims the build for <paramref name="node"/> until <paramref name="leaseUntil"/> (unix seconds), in
    /// one conditional update: it succeeds when the build is queued or running and nobody owns it, this
    /// node already owns it, or the owner's lease ended at or before <paramref name="now"/>. Of several
    /// nodes claiming at once exactly one wins; the others get false and leave the build to it.
    /// </summary>
    Task<bool> TryClaimBuildAsync(string id, string node, long leaseUntil, long now, CancellationToken cancellationToken = default);

    /// <summary>
    /// Extends <paramref name="node"/>'s lease on an unfinished build to <paramref name="leaseUntil"/>;
    /// false when the node no longer owns it (another node took it over, or it finished).
    /// </summary>
    Task<bool> RenewBuildLeaseAsync(string id, string node, long leaseUntil, CancellationToken cancellationToken = default);

    /// <summary>Ends a build: succeeded with a summary, or failed/cancelled with an error. Clears the build's owner and lease.</summary>
    Task FinishAsync(string id, string status, string? summaryJson, string? error, CancellationToken cancellationToken = default);

    /// <summary>
    /// Removes the row unless a fine-tuning job or another dataset version of the workspace uses the
    /// dataset; returns it, or null when there was none in the workspace. The check and the removal
    /// are one atomic step.
    /// </summary>
    /// <exception cref="ConflictException">Something derives from the dataset (named in <see cref="ConflictException.Derived"/>); nothing was removed.</exception>
    Task<DatasetRecord?> DeleteAsync(string workspaceId, string id, CancellationToken cancellationToken = default);
}
