using Npgsql;

namespace Atelier.Catalog.PostgreSql;

/// <summary>The workspaces and API keys of the PostgreSQL catalog (tables <c>workspaces</c> and <c>api_keys</c>).</summary>
public sealed class PostgreSqlApiKeyRepository(PostgreSqlDatabase database) : IApiKeyRepository
{
    private const string KeyColumns = "k.id, k.workspace_id, w.name, k.name, k.role, k.created_at, k.revoked_at";

    /// <inheritdoc />
    public Task<Workspace> EnsureWorkspaceAsync(string newId, string name, long createdAt, CancellationToken cancellationToken = default) =>
        database.RunAsync(
            async connection =>
            {
                // Two statements, not one: a racing insert of the same name makes this one wait and
                // then do nothing, and only a statement started after that sees the winner's row (a
                // single statement would read with the snapshot it started with, and find nothing).
                await PostgreSqlDatabase.ExecuteAsync(
                    connection,
                    null,
                    "INSERT INTO workspaces(id, name, created_at) VALUES (@id, @name, @now) ON CONFLICT (name) DO NOTHING",
                    cancellationToken,
                    ("id", newId), ("name", name), ("now", createdAt)).ConfigureAwait(false);
                return (await PostgreSqlDatabase.QueryAsync(connection, null, "SELECT id, name FROM workspaces WHERE name = @name", ReadWorkspace, cancellationToken, ("name", name)).ConfigureAwait(false)).Single();
            },
            cancellationToken);

    /// <inheritdoc />
    public async Task<Workspace?> GetWorkspaceAsync(string id, CancellationToken cancellationToken = default) =>
        (await database.QueryAsync("SELECT id, name FROM workspaces WHERE id = @value", ReadWorkspace, cancellationToken, ("value", id)).ConfigureAwait(false)).FirstOrDefault();

    /// <inheritdoc />
    public async Task<Workspace?> FindWorkspaceAsync(string name, CancellationToken cancellationToken = default) =>
        (await database.QueryAsync("SELECT id, name FROM workspaces WHERE name = @value", ReadWorkspace, cancellationToken, ("value", name)).ConfigureAwait(false)).FirstOrDefault();

    /// <inheritdoc />
    public async Task<IReadOnlyList<Workspace>> ListWorkspacesAsync(CancellationToken cancellationToken = default) =>
        await database.QueryAsync("SELECT id, name FROM workspaces ORDER BY name", ReadWorkspace, cancellationToken).ConfigureAwait(false);

    /// <inheritdoc />
    public Task InsertAsync(ApiKeyInfo key, byte[] secretHash, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(key);
        return database.ExecuteAsync(
            "INSERT INTO api_keys(id, workspace_id, name, role, secret_hash, created_at) VALUES (@id, @ws, @name, @role, @hash, @now)",
            cancellationToken,
            ("id", key.Id), ("ws", key.WorkspaceId), ("name", key.Name), ("role", key.Role), ("hash", secretHash), ("now", key.CreatedAt));
    }

    /// <inheritdoc />
    public async Task<ApiKeyInfo?> GetAsync(string id, CancellationToken cancellationToken = default) =>
        (await database.QueryAsync(
            $"SELECT {KeyColumns} FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id WHERE k.id = @id",
            ReadKey,
            cancellationToken,
            ("id", id)).ConfigureAwait(false)).FirstOrDefault();

    /// <inheritdoc />
    public async Task<StoredApiKey?> GetWithSecretAsync(string id, CancellationToken cancellationToken = default) =>
        (await database.QueryAsync(
            $"SELECT {KeyColumns}, k.secret_hash FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id WHERE k.id = @id",
            static r => new StoredApiKey(ReadKey(r), r.GetFieldValue<byte[]>(7)),
            cancellationToken,
            ("id", id)).ConfigureAwait(false)).FirstOrDefault();

    /// <inheritdoc />
    public async Task<IReadOnlyList<ApiKeyInfo>> ListAsync(string? workspaceId, CancellationToken cancellationToken = default) =>
        await database.QueryAsync(
            $"""
            SELECT {KeyColumns} FROM api_keys k JOIN workspaces w ON w.id = k.workspace_id
            WHERE @ws::text IS NULL OR k.workspace_id = @ws::text ORDER BY k.created_at, k.id
            """,
            ReadKey,
            cancellationToken,
            ("ws", workspaceId)).ConfigureAwait(false);

    /// <inheritdoc />
    public Task ForgetAsync(string id, CancellationToken cancellationToken = default) =>
        database.ExecuteAsync("DELETE FROM api_keys WHERE id = @id", cancellationToken, ("id", id));

    /// <inheritdoc />
    public async Task<bool> RevokeAsync(string id, long revokedAt, CancellationToken cancellationToken = default) =>
        await database.ExecuteAsync("UPDATE api_keys SET revoked_at = @now WHERE id = @id AND revoked_at IS NULL", cancellationToken, ("id", id), ("now", revokedAt)).ConfigureAwait(false) == 1;

    private static Workspace ReadWorkspace(NpgsqlDataReader r) => new(r.GetString(0), r.GetString(1));

    private static ApiKeyInfo ReadKey(NpgsqlDataReader r) =>
        new(r.GetString(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetString(4), r.GetInt64(5), r.IsDBNull(6) ? null : r.GetInt64(6));
}
