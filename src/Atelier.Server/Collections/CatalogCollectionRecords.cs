using Atelier.Catalog;
using Atelier.Vectors.Collections;

namespace Atelier.Server.Collections;

/// <summary>
/// Binds the collection store's <see cref="ICollectionCatalog"/> to the catalog database: the rows are
/// <see cref="VectorCollectionCatalog"/>'s, the configuration JSON is the vector store's.
/// </summary>
internal sealed class CatalogCollectionRecords(VectorCollectionCatalog rows) : ICollectionCatalog
{
    public CollectionRecord? Find(string workspace, string name) => rows.Find(workspace, name) is { } row ? ToRecord(row) : null;

    public IReadOnlyList<CollectionRecord> List(string workspace) => [.. rows.List(workspace).Select(ToRecord)];

    public void Insert(CollectionRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        rows.Insert(new VectorCollectionRow
        {
            Id = record.Id,
            WorkspaceId = record.WorkspaceId,
            Name = record.Name,
            ConfigJson = CollectionJson.Serialize(record.Config),
            Policy = record.Policy,
            CreatedAt = record.CreatedAt,
            CreatedBy = record.CreatedBy,
        });
    }

    public void Delete(string id) => rows.Delete(id);

    public IReadOnlySet<string> AllIds() => rows.AllIds();

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
