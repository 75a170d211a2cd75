using Atelier.Core.Errors;

namespace Atelier.Catalog;

/// <summary>
/// The catalog row of a vector collection. The configuration is the vector store's own JSON
/// (<c>config_json</c>): the catalog keeps it, it does not read it.
/// </summary>
public sealed record VectorCollectionRow
{
    /// <summary>The internal id (<c>col-&lt;uuid&gt;</c>).</summary>
    public required string Id { get; init; }

    /// <summary>The owning workspace.</summary>
    public required string WorkspaceId { get; init; }

    /// <summary>The name, unique in the workspace.</summary>
    public required string Name { get; init; }

    /// <summary>The configuration as the vector store serialised it.</summary>
    public required string ConfigJson { get; init; }

    /// <summary>The residency policy name.</summary>
    public required string Policy { get; init; }

    /// <summary>Creation time, Unix seconds.</summary>
    public required long CreatedAt { get; init; }

    /// <summary>Who created it.</summary>
    public required string CreatedBy { get; init; }
}

/// <summary>The catalog rows of vector collections.</summary>
public interface IVectorCollectionRepository
{
    /// <summary>The row named <paramref name="name"/> in the workspace; null when there is none.</summary>
    Task<VectorCollectionRow?> FindAsync(string workspaceId, string name, CancellationToken cancellationToken = default);

    /// <summary>The rows of a workspace, by name.</summary>
    Task<IReadOnlyList<VectorCollectionRow>> ListAsync(string workspaceId, CancellationToken cancellationToken = default);

    /// <summary>Adds a row.</summary>
    /// <exception cref="ConflictException">The name is taken in the workspace, or the id is taken.</exception>
    Task InsertAsync(VectorCollectionRow row, CancellationToken cancellationToken = default);

    /// <summary>Removes the row of collection <paramref name="id"/>.</summary>
    Task DeleteAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>The ids of every collection of every workspace.</summary>
    Task<IReadOnlySet<string>> AllIdsAsync(CancellationToken cancellationToken = default);
}
