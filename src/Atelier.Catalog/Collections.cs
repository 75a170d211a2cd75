using Microsoft.Data.Sqlite;

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

/// <summary>The rows of table <c>vector_collections</c>.</summary>
public sealed class VectorCollectionCatalog(CatalogDatabase database)
{
    private const string Columns = "id, workspace_id, name, config_json, policy, created_at, created_by";

    /// <summary>The row named <paramref name="name"/> in the workspace; null when there is none.</summary>
    public VectorCollectionRow? Find(string workspace, string name)
    {
        var rows = database.Query($"SELECT {Columns} FROM vector_collections WHERE workspace_id = $w AND name = $n", Read, ("$w", workspace), ("$n", name));
        return rows.Count == 0 ? null : rows[0];
    }

    /// <summary>The rows of a workspace, by name.</summary>
    public List<VectorCollectionRow> List(string workspace) =>
        database.Query($"SELECT {Columns} FROM vector_collections WHERE workspace_id = $w ORDER BY name", Read, ("$w", workspace));

    /// <summary>Adds a row; a name already taken in the workspace violates the table's unique key.</summary>
    public void Insert(VectorCollectionRow row)
    {
        ArgumentNullException.ThrowIfNull(row);
        database.Execute(
            $"INSERT INTO vector_collections({Columns}) VALUES ($id, $w, $n, $c, $p, $t, $by)",
            ("$id", row.Id),
            ("$w", row.WorkspaceId),
            ("$n", row.Name),
            ("$c", row.ConfigJson),
            ("$p", row.Policy),
            ("$t", row.CreatedAt),
            ("$by", row.CreatedBy));
    }

    /// <summary>Removes the row of collection <paramref name="id"/>.</summary>
    public void Delete(string id) => database.Execute("DELETE FROM vector_collections WHERE id = $id", ("$id", id));

    /// <summary>The ids of every collection.</summary>
    public HashSet<string> AllIds() =>
        new(database.Query("SELECT id FROM vector_collections", static reader => reader.GetString(0)), StringComparer.Ordinal);

    private static VectorCollectionRow Read(SqliteDataReader reader) => new()
    {
        Id = reader.GetString(0),
        WorkspaceId = reader.GetString(1),
        Name = reader.GetString(2),
        ConfigJson = reader.GetString(3),
        Policy = reader.GetString(4),
        CreatedAt = reader.GetInt64(5),
        CreatedBy = reader.GetString(6),
    };
}
