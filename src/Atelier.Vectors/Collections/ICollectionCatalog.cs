namespace Atelier.Vectors.Collections;

/// <summary>
/// Where the <see cref="CollectionStore"/> keeps its catalog rows: which collections exist, by workspace and
/// name. The host binds it to its catalog database; the store never sees the database itself.
/// </summary>
/// <remarks>
/// Calls come under the store's own lock for create and delete, so an implementation needs no transaction
/// beyond each statement; it must make an inserted or deleted row durable before returning.
/// </remarks>
public interface ICollectionCatalog
{
    /// <summary>The row of <paramref name="name"/> in <paramref name="workspace"/>; null when there is none.</summary>
    CollectionRecord? Find(string workspace, string name);

    /// <summary>The rows of a workspace, by name.</summary>
    IReadOnlyList<CollectionRecord> List(string workspace);

    /// <summary>Adds a row.</summary>
    void Insert(CollectionRecord record);

    /// <summary>Removes the row of collection <paramref name="id"/>.</summary>
    void Delete(string id);

    /// <summary>The ids of every collection in every workspace (for the sweep of orphaned blobs).</summary>
    IReadOnlySet<string> AllIds();
}
