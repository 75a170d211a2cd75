using Atelier.Catalog;
using Atelier.Vectors.Collections;

namespace Atelier.Server.Collections;

/// <summary>
/// Binds the collection store's <see cref="ICollectionCatalog"/> to the catalog: the rows are
/// <see cref="IVectorCollectionRepository"/>'s, the configuration JSON is the vector store's.
/// </summary>
internal sealed class CatalogCollectionRecords(IVectorCollectionRepository rows) : ICollectionCatalog
{
    public async Task<CollectionRecord?> FindAsync(string workspace, string name, CancellationToken cancellationToken) =>
        await rows.FindAsync(workspace, name, cancellationToken).ConfigureAwait(false) is { } row ? ToRecord(row) : null;

    public async Task<IReadOnlyList<CollectionRecord>> ListAsync(string workspace, CancellationToken cancellationToken) =>
        [.. (await rows.ListAsync(workspace, cancellationToken).ConfigureAwait(false)).Select(ToRecord)];

    public Task InsertAsync(CollectionRecord record, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(record);
        return rows.InsertAsync(
            new VectorCollectionRow
            {
                Id = record.Id,
                WorkspaceId = record.WorkspaceId,
                Name = record.Name,
                ConfigJson = CollectionJson.Serialize(record.Config),
                Policy = record.Policy,
                CreatedAt = record.CreatedAt,
                CreatedBy = record.CreatedBy,
            },
            cancellationToken);
    }

    public Task DeleteAsync(string id, CancellationToken cancellationToken) => rows.DeleteAsync(id, cancellationToken);

    public Task<IReadOnlySet<string>> AllIdsAsync(CancellationToken cancellationToken) => rows.AllIdsAsync(cancellationToken);

    private static CollectionRecord ToRecord(VectorCollectionRow row) => new()
    {
        Id = row.Id,
        WorkspaceId = row.WorkspaceId,
        Name = row.Name,
        Config = CollectionJson.DeserializeConfig(row.ConfigJson),
        Policy = row.Policy,
        CreatedAt = row.CreatedAt,
        CreatedBy = row.CreatedBy,
    };
}
