namespace Atelier.Vectors.Collections;

/// <summary>
/// Where the <see cref="CollectionStore"/> keeps its catalog rows: which collections exist, by workspace and
/// name. The host binds it to its catalog; the store never sees the database itself.
/// </summary>
/// <remarks>
/// Calls come under the store's own lock for create and delete, so an implementation needs no transaction
/// beyond each statement; it must make an inserted or deleted row durable before its task completes.
/// </remarks>
public interface ICollectionCatalog
{
    /// <summary>The row of <paramref name="name"/> in <paramref name="workspace"/>; null when there is none.</summary>
    Task<CollectionRecord?> FindAsync(string workspace, string name, CancellationToken cancellationToken);

    /// <summary>The rows of a workspace, by name.</summary>
    Task<IReadOnlyList<CollectionRecord>> ListAsync(string workspace, CancellationToken cancellationToken);

    /// <summary>Adds a row.</summary>
    Task InsertAsync(CollectionRecord record, CancellationToken cancellationToken);

    /// <summary>Removes the row of collection <paramref name="id"/>.</summary>
    Task DeleteAsync(string id, CancellationToken cancellationToken);

    /// <summary>The ids of every collection in every workspace (for the sweep of orphaned blobs).</summary>
    Task<IReadOnlySet<string>> AllIdsAsync(CancellationToken cancellationToken);
}
