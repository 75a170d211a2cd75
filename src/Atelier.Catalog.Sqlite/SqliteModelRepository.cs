using System.Text.Json;
using Atelier.Catalog;
using Atelier.Core.Errors;
using Microsoft.Data.Sqlite;

namespace Atelier.Catalog.Sqlite;

/// <summary>The model registry's rows in the SQLite catalog: the <c>models</c> table of catalog migration 4.</summary>
public sealed class SqliteModelRepository : IModelRepository
{
    private const string Columns =
        "m.id, m.workspace_id, m.type, m.name, m.description, m.root, m.job_id, m.created_at, m.archived, m.max_context_length, " +
        "m.capabilities_json, m.policy, m.artifacts_json, m.aliases_json, m.lineage_json, m.owned_by, m.created_by";

    // SQLITE_CONSTRAINT: the primary key or the unique index on job_id.
    private const int ConstraintViolation = 19;

    private readonly CatalogDatabase _catalog;

    /// <summary>Uses the <c>models</c> table of <paramref name="catalog"/> (already migrated when it was opened).</summary>
    public SqliteModelRepository(CatalogDatabase catalog)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        _catalog = catalog;
    }

    /// <inheritdoc />
    public Task<ModelRecord?> FindVisibleAsync(string workspaceId, string idOrAlias, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(workspaceId);
        ArgumentNullException.ThrowIfNull(idOrAlias);
        cancellationToken.ThrowIfCancellationRequested();
        var found = QueryOne($"SELECT {Columns} FROM models m WHERE m.id = $id AND (m.workspace_id IS NULL OR m.workspace_id = $ws)", ("$id", idOrAlias), ("$ws", workspaceId))
            ?? QueryOne(
                $"SELECT {Columns} FROM models m, json_each(m.aliases_json) a WHERE a.value = $id AND (m.workspace_id IS NULL OR m.workspace_id = $ws) " +
                "ORDER BY m.workspace_id IS NULL, m.created_at DESC LIMIT 1",
                ("$id", idOrAlias),
                ("$ws", workspaceId));
        return Task.FromResult(found);
    }

    /// <inheritdoc />
    public Task<ModelRecord?> FindBaseAsync(string id, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(id);
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult(QueryOne($"SELECT {Columns} FROM models m WHERE m.id = $id AND m.type = 'base'", ("$id", id)));
    }

    /// <inheritdoc />
    public Task<ModelRecord?> FindByJobAsync(string jobId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(jobId);
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult(QueryOne($"SELECT {Columns} FROM models m WHERE m.job_id = $job", ("$job", jobId)));
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<ModelRecord>> ListVisibleAsync(string workspaceId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(workspaceId);
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult<IReadOnlyList<ModelRecord>>(_catalog.Query(
            $"SELECT {Columns} FROM models m WHERE m.workspace_id IS NULL OR m.workspace_id = $ws " +
            "ORDER BY m.type = 'fine-tuned', CASE WHEN m.type = 'base' THEN m.id END, m.created_at DESC, m.id DESC",
            Read,
            ("$ws", workspaceId)));
    }

    /// <inheritdoc />
    public Task<bool> ExistsAsync(string idOrAlias, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(idOrAlias);
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult(_catalog.Query(
            "SELECT 1 FROM models WHERE id = $id UNION ALL SELECT 1 FROM models, json_each(models.aliases_json) a WHERE a.value = $id LIMIT 1",
            _ => true,
            ("$id", idOrAlias)).Count > 0);
    }

    /// <inheritdoc />
    public Task<bool> TryInsertAsync(ModelRecord model, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        cancellationToken.ThrowIfCancellationRequested();
        try
        {
            _catalog.Execute(
                """
                INSERT INTO models(id, workspace_id, type, name, description, root, job_id, created_at, archived, max_context_length,
                                   capabilities_json, policy, artifacts_json, aliases_json, lineage_json, owned_by, created_by)
                VALUES ($id, $ws, $type, $name, $desc, $root, $job, $created, $archived, $ctx, $caps, $policy, $artifacts, $aliases, $lineage, $owned, $by)
                """,
                ("$id", model.Id),
                ("$ws", model.WorkspaceId),
                ("$type", model.Type),
                ("$name", model.Name),
                ("$desc", model.Description),
                ("$root", model.Root),
                ("$job", model.JobId),
                ("$created", model.CreatedAt),
                ("$archived", model.Archived),
                ("$ctx", model.MaxContextLength),
                ("$caps", model.CapabilitiesJson),
                ("$policy", model.Policy),
                ("$artifacts", model.ArtifactsJson),
                ("$aliases", JsonSerializer.Serialize(model.Aliases)),
                ("$lineage", model.LineageJson),
                ("$owned", model.OwnedBy),
                ("$by", model.CreatedBy));
            return Task.FromResult(true);
        }
        catch (SqliteException e) when (e.SqliteErrorCode == ConstraintViolation && IsDuplicate(model))
        {
            return Task.FromResult(false);
        }
    }

    /// <inheritdoc />
    public Task<bool> UpdateTextAsync(string id, string? name, bool setName, string? description, bool setDescription, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(id);
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult(_catalog.Execute(
            "UPDATE models SET name = CASE WHEN $setName THEN $name ELSE name END, description = CASE WHEN $setDesc THEN $desc ELSE description END WHERE id = $id",
            ("$id", id),
            ("$setName", setName),
            ("$name", name),
            ("$setDesc", setDescription),
            ("$desc", description)) == 1);
    }

    /// <inheritdoc />
    public Task<bool> SetArchivedAsync(string id, bool archived, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(id);
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult(_catalog.Execute("UPDATE models SET archived = $a WHERE id = $id", ("$id", id), ("$a", archived)) == 1);
    }

    /// <inheritdoc />
    public Task<ModelDeleteOutcome> DeleteUnlessDerivedAsync(string id, IReadOnlyCollection<string> names, string? workspaceId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(id);
        ArgumentNullException.ThrowIfNull(names);
        cancellationToken.ThrowIfCancellationRequested();

        // An immediate (write) transaction: the check and the delete see the same catalog, so a job
        // or dataset recorded in between cannot slip past the check.
        using var connection = _catalog.Open();
        using var transaction = connection.BeginTransaction(deferred: false);
        using (var delete = connection.CreateCommand())
        {
            delete.Transaction = transaction;
            delete.CommandText = "DELETE FROM models WHERE id = $id";
            delete.Parameters.AddWithValue("$id", id);
            if (delete.ExecuteNonQuery() == 0)
            {
                return Task.FromResult(new ModelDeleteOutcome(ModelDeleteStatus.NotFound, []));
            }
        }

        var derived = new List<DerivedArtifact>();
        using (var children = connection.CreateCommand())
        {
            children.Transaction = transaction;
            children.CommandText = "SELECT id FROM models WHERE root = $id ORDER BY created_at, id";
            children.Parameters.AddWithValue("$id", id);
            derived.AddRange(CatalogDatabase.ReadAll(children, r => new DerivedArtifact(DerivedArtifact.Model, r.GetString(0))));
        }

        derived.AddRange(LineageCatalog.DerivedFromModel(connection, transaction, workspaceId, names));
        if (derived.Count > 0)
        {
            transaction.Rollback();
            return Task.FromResult(new ModelDeleteOutcome(ModelDeleteStatus.InUse, derived));
        }

        transaction.Commit();
        return Task.FromResult(new ModelDeleteOutcome(ModelDeleteStatus.Deleted, []));
    }

    /// <inheritdoc />
    public Task<string?> WorkspaceNameAsync(string workspaceId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(workspaceId);
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult(_catalog.Query("SELECT name FROM workspaces WHERE id = $id", r => r.GetString(0), ("$id", workspaceId)).FirstOrDefault());
    }

    // A constraint failure is a duplicate only when the id or the job is taken; anything else (a
    // broken CHECK, an unknown workspace) is a bug of the caller and must surface.
    private bool IsDuplicate(ModelRecord model) =>
        _catalog.Query(
            "SELECT 1 FROM models WHERE id = $id OR (job_id IS NOT NULL AND job_id = $job) LIMIT 1",
            _ => true,
            ("$id", model.Id),
            ("$job", model.JobId)).Count > 0;

    private ModelRecord? QueryOne(string sql, params (string Name, object? Value)[] parameters)
    {
        var rows = _catalog.Query(sql, Read, parameters);
        return rows.Count == 0 ? null : rows[0];
    }

    private static ModelRecord Read(SqliteDataReader reader)
    {
        string? Text(int i) => reader.IsDBNull(i) ? null : reader.GetString(i);
        return new ModelRecord
        {
            Id = reader.GetString(0),
            WorkspaceId = Text(1),
            Type = reader.GetString(2),
            Name = Text(3),
            Description = Text(4),
            Root = Text(5),
            JobId = Text(6),
            CreatedAt = reader.GetInt64(7),
            Archived = reader.GetInt64(8) != 0,
            MaxContextLength = reader.GetInt32(9),
            CapabilitiesJson = reader.GetString(10),
            Policy = reader.GetString(11),
            ArtifactsJson = reader.GetString(12),
            Aliases = JsonSerializer.Deserialize<string[]>(reader.GetString(13)) ?? [],
            LineageJson = reader.GetString(14),
            OwnedBy = reader.GetString(15),
            CreatedBy = reader.GetString(16),
        };
    }
}
