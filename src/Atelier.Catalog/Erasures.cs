namespace Atelier.Catalog;

/// <summary>
/// An erasure as the catalog keeps it: its plan is recorded before anything is deleted, so an
/// erasure that dies midway is found again (<see cref="IErasureRepository.FindUnfinishedAsync"/>) and
/// run to its end; the signed report is stored when it is done.
/// </summary>
public sealed record ErasureRecord
{
    /// <summary>Id, <c>er-</c> followed by a UUID.</summary>
    public required string Id { get; init; }

    /// <summary>The workspace of the erased artifact.</summary>
    public required string WorkspaceId { get; init; }

    /// <summary>The erased artifact's kind (<see cref="LineageKinds"/>).</summary>
    public required string ArtifactKind { get; init; }

    /// <summary>The erased artifact's id.</summary>
    public required string ArtifactId { get; init; }

    /// <summary>SHA-256 of the erased content, lower-case hex: what identifies it once it is gone.</summary>
    public required string ContentSha256 { get; init; }

    /// <summary><c>running</c> until every step is done, then <c>succeeded</c>.</summary>
    public required string Status { get; init; }

    /// <summary>The plan (JSON), fixed when the erasure starts.</summary>
    public required string PlanJson { get; init; }

    /// <summary>The signed report (JSON), once done.</summary>
    public string? ReportJson { get; init; }

    /// <summary>Unix seconds.</summary>
    public required long CreatedAt { get; init; }

    /// <summary>Unix seconds.</summary>
    public long? FinishedAt { get; init; }

    /// <summary>The key that asked for it.</summary>
    public required string CreatedBy { get; init; }
}

/// <summary>A model marked tainted: trained, directly or through a dataset, on erased data.</summary>
/// <param name="ModelId">The model.</param>
/// <param name="ErasureId">The erasure that tainted it.</param>
/// <param name="TaintedAt">Unix seconds.</param>
public sealed record ModelTaint(string ModelId, string ErasureId, long TaintedAt);

/// <summary>An explicit decision to serve a tainted model anyway.</summary>
/// <param name="ModelId">The model.</param>
/// <param name="Reason">Why, as the admin wrote it.</param>
/// <param name="Actor">Who allowed it.</param>
/// <param name="CreatedAt">Unix seconds.</param>
public sealed record ServingOverride(string ModelId, string Reason, string Actor, long CreatedAt);

/// <summary>
/// Erasures, the taints they leave on models and the overrides that allow a tainted model to be
/// served anyway.
/// </summary>
public interface IErasureRepository
{
    /// <summary>Records an erasure and its plan (status <c>running</c>).</summary>
    Task InsertAsync(ErasureRecord erasure, CancellationToken cancellationToken = default);

    /// <summary>The erasure of the workspace, or null.</summary>
    Task<ErasureRecord?> GetAsync(string workspaceId, string id, CancellationToken cancellationToken = default);

    /// <summary>The workspace's erasure of the artifact that has not finished, or null: what a re-run continues.</summary>
    Task<ErasureRecord?> FindUnfinishedAsync(string workspaceId, string artifactKind, string artifactId, CancellationToken cancellationToken = default);

    /// <summary>Marks an erasure succeeded and stores its signed report.</summary>
    Task FinishAsync(string id, string reportJson, long finishedAt, CancellationToken cancellationToken = default);

    /// <summary>Marks a model tainted by an erasure; a model already tainted keeps its first taint.</summary>
    Task TaintAsync(ModelTaint taint, CancellationToken cancellationToken = default);

    /// <summary>The model's taint, or null when it has none.</summary>
    Task<ModelTaint?> TaintOfAsync(string modelId, CancellationToken cancellationToken = default);

    /// <summary>Records (or replaces) the override that lets a tainted model be served.</summary>
    Task SetServingOverrideAsync(ServingOverride serving, CancellationToken cancellationToken = default);

    /// <summary>The model's serving override, or null.</summary>
    Task<ServingOverride?> ServingOverrideOfAsync(string modelId, CancellationToken cancellationToken = default);

    /// <summary>
    /// Removes the row of an erased file whatever still names it (the dataset versions and jobs that
    /// used it keep its id, never its content); false when there was none in the workspace.
    /// </summary>
    Task<bool> DeleteErasedFileAsync(string workspaceId, string fileId, CancellationToken cancellationToken = default);
}
