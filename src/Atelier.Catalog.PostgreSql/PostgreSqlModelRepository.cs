using Atelier.Core.Errors;
using System.Text.Json;
using Npgsql;

namespace Atelier.Catalog.PostgreSql;

/// <summary>The model registry's rows in the PostgreSQL catalog: the <c>models</c> table of catalog migration 4.</summary>
public sealed class PostgreSqlModelRepository(PostgreSqlDatabase database) : IModelRepository
{
    private const string Columns =
        "m.id, m.workspace_id, m.type, m.name, m.description, m.root, m.job_id, m.created_at, m.archived, m.max_context_length, " +
        "m.capabilities_json, m.policy, m.artifacts_json, m.aliases_json, m.lineage_json, m.owned_by, m.created_by";

    /// <inheritdoc />
    public async Task<ModelRecord?> FindVisibleAsync(string workspaceId, string idOrAlias, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(workspaceId);
        ArgumentNullException.ThrowIfNull(idOrAlias);

        // By id first, then by alias: the workspace's own models before base models, newest first.
        return (await database.QueryAsync(
            $"""
            SELECT * FROM (
                SELECT 0 AS rank, {Columns} FROM models m WHERE m.id = @id AND (m.workspace_id IS NULL OR m.workspace_id = @ws)
                UNION ALL
                (SELECT 1 AS rank, {Columns} FROM models m
                 WHERE m.aliases_json::jsonb ? @id AND (m.workspace_id IS NULL OR m.workspace_id = @ws)
                 ORDER BY m.workspace_id IS NULL, m.created_at DESC LIMIT 1)
            ) found ORDER BY rank LIMIT 1
            """,
            static r => Read(r, 1),
            cancellationToken,
            ("id", idOrAlias),
            ("ws", workspaceId)).ConfigureAwait(false)).FirstOrDefault();
    }

    /// <inheritdoc />
    public Task<ModelRecord?> FindBaseAsync(string id, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(id);
        return QueryOneAsync($"SELECT {Columns} FROM models m WHERE m.id = @id AND m.type = 'base'", cancellationToken, ("id", id));
    }

    /// <inheritdoc />
    public Task<ModelRecord?> FindByJobAsync(string jobId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(jobId);
        return QueryOneAsync($"SELECT {Columns} FROM models m WHERE m.job_id = @job", cancellationToken, ("job", jobId));
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<ModelRecord>> ListVisibleAsync(string workspaceId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(workspaceId);
        return await database.QueryAsync(
            $"SELECT {Columns} FROM models m WHERE m.workspace_id IS NULL OR m.workspace_id = @ws " +
            "ORDER BY m.type = 'fine-tuned', CASE WHEN m.type = 'base' THEN m.id END, m.created_at DESC, m.id DESC",
            static r => Read(r, 0),
            cancellationToken,
            ("ws", workspaceId)).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<bool> ExistsAsync(string idOrAlias, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(idOrAlias);
        return (await database.QueryAsync(
            "SELECT EXISTS (SELECT 1 FROM models WHERE id = @id OR aliases_json::jsonb ? @id)",
            static r => r.GetBoolean(0),
            cancellationToken,
            ("id", idOrAlias)).ConfigureAwait(false))[0];
    }

    /// <inheritdoc />
    public Task<bool> TryInsertAsync(ModelRecord model, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        return database.InTransactionAsync(
            async (connection, transaction) =>
            {
                // A fine-tuned model records a use of its base: a deletion of the base waits for it.
                await PostgreSqlLineageRepository.LockForUseAsync(connection, transaction, model.WorkspaceId ?? "", cancellationToken).ConfigureAwait(false);

                // A taken id or job is an expected outcome (false); any other broken constraint
                // (an unknown workspace, a base model with a workspace) still throws.
                return await PostgreSqlDatabase.ExecuteAsync(
                    connection,
                    transaction,
                    """
                    INSERT INTO models(id, workspace_id, type, name, description, root, job_id, created_at, archived, max_context_length,
                                       capabilities_json, policy, artifacts_json, aliases_json, lineage_json, owned_by, created_by)
                    VALUES (@id, @ws, @type, @name, @desc, @root, @job, @created, @archived, @ctx, @caps, @policy, @artifacts, @aliases, @lineage, @owned, @by)
                    ON CONFLICT DO NOTHING
                    """,
                    cancellationToken,
                    ("id", model.Id),
                    ("ws", model.WorkspaceId),
                    ("type", model.Type),
                    ("name", model.Name),
                    ("desc", model.Description),
                    ("root", model.Root),
                    ("job", model.JobId),
                    ("created", model.CreatedAt),
                    ("archived", model.Archived),
                    ("ctx", model.MaxContextLength),
                    ("caps", model.CapabilitiesJson),
                    ("policy", model.Policy),
                    ("artifacts", model.ArtifactsJson),
                    ("aliases", JsonSerializer.Serialize(model.Aliases)),
                    ("lineage", model.LineageJson),
                    ("owned", model.OwnedBy),
                    ("by", model.CreatedBy)).ConfigureAwait(false) == 1;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public async Task<bool> UpdateTextAsync(string id, string? name, bool setName, string? description, bool setDescription, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(id);
        return await database.ExecuteAsync(
            "UPDATE models SET name = CASE WHEN @setName THEN @name::text ELSE name END, description = CASE WHEN @setDesc THEN @desc::text ELSE description END WHERE id = @id",
            cancellationToken,
            ("id", id),
            ("setName", setName),
            ("name", name),
            ("setDesc", setDescription),
            ("desc", description)).ConfigureAwait(false) == 1;
    }

    /// <inheritdoc />
    public async Task<bool> SetArchivedAsync(string id, bool archived, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(id);
        return await database.ExecuteAsync("UPDATE models SET archived = @a WHERE id = @id", cancellationToken, ("id", id), ("a", archived)).ConfigureAwait(false) == 1;
    }

    /// <inheritdoc />
    public Task<ModelDeleteOutcome> DeleteUnlessDerivedAsync(string id, IReadOnlyCollection<string> names, string? workspaceId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(id);
        ArgumentNullException.ThrowIfNull(names);
        return database.InTransactionAsync<ModelDeleteOutcome>(
            async (connection, transaction) =>
            {
                // Exclusive on the lineage lock (of every workspace for a base model): a job, a
                // dataset or a fine-tuned model naming this one commits before the check or after
                // this transaction, never in between.
                await PostgreSqlLineageRepository.LockForDeleteAsync(connection, transaction, workspaceId, cancellationToken).ConfigureAwait(false);
                if (await PostgreSqlDatabase.ExecuteAsync(connection, transaction, "DELETE FROM models WHERE id = @id", cancellationToken, ("id", id)).ConfigureAwait(false) == 0)
                {
                    return (new ModelDeleteOutcome(ModelDeleteStatus.NotFound, []), Commit: true);
                }

                var derived = await PostgreSqlDatabase.QueryAsync(
                    connection,
                    transaction,
                    "SELECT id FROM models WHERE root = @id ORDER BY created_at, id",
                    static r => new DerivedArtifact(DerivedArtifact.Model, r.GetString(0)),
                    cancellationToken,
                    ("id", id)).ConfigureAwait(false);
                derived.AddRange(await PostgreSqlLineageRepository.DerivedFromModelAsync(connection, transaction, workspaceId, names, cancellationToken).ConfigureAwait(false));
                // Something uses it: the delete is rolled back, and the answer says what.
                return derived.Count > 0
                    ? (new ModelDeleteOutcome(ModelDeleteStatus.InUse, derived), Commit: false)
                    : (new ModelDeleteOutcome(ModelDeleteStatus.Deleted, []), Commit: true);
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public async Task<string?> WorkspaceNameAsync(string workspaceId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(workspaceId);
        return (await database.QueryAsync("SELECT name FROM workspaces WHERE id = @id", static r => r.GetString(0), cancellationToken, ("id", workspaceId)).ConfigureAwait(false)).FirstOrDefault();
    }

    private async Task<ModelRecord?> QueryOneAsync(string sql, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters) =>
        (await database.QueryAsync(sql, static r => Read(r, 0), cancellationToken, parameters).ConfigureAwait(false)).FirstOrDefault();

    private static ModelRecord Read(NpgsqlDataReader reader, int first)
    {
        string? Text(int i) => reader.IsDBNull(first + i) ? null : reader.GetString(first + i);
        return new ModelRecord
        {
            Id = reader.GetString(first),
            WorkspaceId = Text(1),
            Type = reader.GetString(first + 2),
            Name = Text(3),
            Description = Text(4),
            Root = Text(5),
            JobId = Text(6),
            CreatedAt = reader.GetInt64(first + 7),
            Archived = reader.GetBoolean(first + 8),
            MaxContextLength = reader.GetInt32(first + 9),
            CapabilitiesJson = reader.GetString(first + 10),
            Policy = reader.GetString(first + 11),
            ArtifactsJson = reader.GetString(first + 12),
            Aliases = JsonSerializer.Deserialize<string[]>(reader.GetString(first + 13)) ?? [],
            LineageJson = reader.GetString(first + 14),
            OwnedBy = reader.GetString(first + 15),
            CreatedBy = reader.GetString(first + 16),
        };
    }
}
