using Npgsql;

namespace Atelier.Catalog.PostgreSql;

/// <summary>The vector collections' rows of the PostgreSQL catalog (table <c>vector_collections</c>).</summary>
public sealed class PostgreSqlVectorCollectionRepository(PostgreSqlDatabase database) : IVectorCollectionRepository
{
    private const string Columns = "id, workspace_id, name, config_json, policy, created_at, created_by";

    /// <inheritdoc />
    public async Task<VectorCollectionRow?> FindAsync(string workspaceId, string name, CancellationToken cancellationToken = default) =>
        (await database.QueryAsync($"SELECT {Columns} FROM vector_collections WHERE workspace_id = @w AND name = @n", Read, cancellationToken, ("w", workspaceId), ("n", name)).ConfigureAwait(false))
            .FirstOrDefault();

    /// <inheritdoc />
    public async Task<IReadOnlyList<VectorCollectionRow>> ListAsync(string workspaceId, CancellationToken cancellationToken = default) =>
        await database.QueryAsync($"SELECT {Columns} FROM vector_collections WHERE workspace_id = @w ORDER BY name", Read, cancellationToken, ("w", workspaceId)).ConfigureAwait(false);

    /// <inheritdoc />
    public Task InsertAsync(VectorCollectionRow row, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(row);

        // A name taken in the workspace breaks the table's unique key, which the database turns into a conflict.
        return database.ExecuteAsync(
            $"INSERT INTO vector_collections({Columns}) VALUES (@id, @w, @n, @c, @p, @t, @by)",
            cancellationToken,
            ("id", row.Id),
            ("w", row.WorkspaceId),
            ("n", row.Name),
            ("c", row.ConfigJson),
            ("p", row.Policy),
            ("t", row.CreatedAt),
            ("by", row.CreatedBy));
    }

    /// <inheritdoc />
    public Task DeleteAsync(string id, CancellationToken cancellationToken = default) =>
        database.ExecuteAsync("DELETE FROM vector_collections WHERE id = @id", cancellationToken, ("id", id));

    /// <inheritdoc />
    public async Task<IReadOnlySet<string>> AllIdsAsync(CancellationToken cancellationToken = default) =>
        new HashSet<string>(await database.QueryAsync("SELECT id FROM vector_collections", static r => r.GetString(0), cancellationToken).ConfigureAwait(false), StringComparer.Ordinal);

    private static VectorCollectionRow Read(NpgsqlDataReader reader) => new()
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
