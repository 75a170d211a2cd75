using System.Collections.Concurrent;
using System.Text.Json;
using Atelier.Catalog;
using Atelier.Catalog.Sqlite;
using Atelier.Core.Errors;
using Atelier.Storage.Audit;
using Atelier.Storage.Placement;
using Microsoft.Data.Sqlite;

namespace Atelier.Registry;

/// <summary>
/// The models of an installation: base models imported by an admin, visible to every workspace,
/// and fine-tuned models registered by the jobs that trained them, each owned by one workspace.
/// Rows live in the catalog's <c>models</c> table; bytes are written only through the placement
/// guard. A model's row is written only after all of its bytes are committed, so a model either
/// exists with every file or not at all.
/// </summary>
public sealed partial class ModelRegistry
{
    private const string Columns =
        "m.id, m.workspace_id, m.type, m.name, m.description, m.root, m.job_id, m.created_at, m.archived, m.max_context_length, " +
        "m.capabilities_json, m.policy, m.artifacts_json, m.aliases_json, m.lineage_json, m.owned_by, m.created_by";

    // The JSON columns use snake_case, as the rest of the catalog's JSON does.
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    private readonly CatalogDatabase _catalog;
    private readonly PlacementGuard _guard;
    private readonly TimeProvider _clock;
    private readonly string? _cacheDirectory;
    private readonly ModelImportRoots? _importRoots;

    // Ids being imported by this process: a second import of the same id waits for nothing and is refused,
    // so two imports never write the same blob keys.
    private readonly ConcurrentDictionary<string, byte> _importing = new(StringComparer.Ordinal);

    /// <summary>Creates the registry over the catalog and the placement guard.</summary>
    /// <param name="catalog">The catalog (migrated to include the <c>models</c> table).</param>
    /// <param name="guard">The only write path for bytes.</param>
    /// <param name="clock">The clock.</param>
    /// <param name="cacheDirectory">
    /// Where <see cref="ModelDirectoryAsync"/> materialises a base model whose blobs are not plain local
    /// files; null when every location is a local directory.
    /// </param>
    /// <param name="importRoots">The directories base models may be imported from; null refuses every import.</param>
    public ModelRegistry(CatalogDatabase catalog, PlacementGuard guard, TimeProvider clock, string? cacheDirectory = null, ModelImportRoots? importRoots = null)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        ArgumentNullException.ThrowIfNull(guard);
        ArgumentNullException.ThrowIfNull(clock);
        _catalog = catalog;
        _guard = guard;
        _clock = clock;
        _cacheDirectory = cacheDirectory;
        _importRoots = importRoots;
    }

    /// <summary>
    /// The model <paramref name="modelId"/> (or the model with that alias) as <paramref name="workspace"/>
    /// sees it: any base model, and the workspace's own fine-tuned models. Null otherwise, so another
    /// workspace's models are indistinguishable from missing ones.
    /// </summary>
    /// <param name="workspace">The caller's workspace id.</param>
    /// <param name="modelId">A model id or alias.</param>
    /// <param name="ct">Cancellation.</param>
    public Task<RegisteredModel?> FindAsync(string workspace, string modelId, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        ArgumentNullException.ThrowIfNull(modelId);
        ct.ThrowIfCancellationRequested();
        var found = QueryOne($"SELECT {Columns} FROM models m WHERE m.id = $id AND (m.workspace_id IS NULL OR m.workspace_id = $ws)", ("$id", modelId), ("$ws", workspace))
            ?? QueryOne(
                $"SELECT {Columns} FROM models m, json_each(m.aliases_json) a WHERE a.value = $id AND (m.workspace_id IS NULL OR m.workspace_id = $ws) " +
                "ORDER BY m.workspace_id IS NULL, m.created_at DESC LIMIT 1",
                ("$id", modelId),
                ("$ws", workspace));
        return Task.FromResult(found);
    }

    /// <summary>The base model <paramref name="modelId"/>, or null.</summary>
    public Task<RegisteredModel?> FindBaseAsync(string modelId, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(modelId);
        ct.ThrowIfCancellationRequested();
        return Task.FromResult(QueryOne($"SELECT {Columns} FROM models m WHERE m.id = $id AND m.type = 'base'", ("$id", modelId)));
    }

    /// <summary>The fine-tuned model a job registered, in any workspace, or null.</summary>
    public Task<RegisteredModel?> FindByJobAsync(string jobId, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(jobId);
        ct.ThrowIfCancellationRequested();
        return Task.FromResult(QueryOne($"SELECT {Columns} FROM models m WHERE m.job_id = $job", ("$job", jobId)));
    }

    /// <summary>Every model <paramref name="workspace"/> sees: base models by id, then its fine-tuned models newest first.</summary>
    public Task<IReadOnlyList<RegisteredModel>> ListAsync(string workspace, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        ct.ThrowIfCancellationRequested();
        using var connection = _catalog.Open();
        using var command = connection.CreateCommand();
        command.CommandText =
            $"SELECT {Columns} FROM models m WHERE m.workspace_id IS NULL OR m.workspace_id = $ws " +
            "ORDER BY m.type = 'fine-tuned', CASE WHEN m.type = 'base' THEN m.id END, m.created_at DESC, m.id DESC";
        command.Parameters.AddWithValue("$ws", workspace);
        return Task.FromResult<IReadOnlyList<RegisteredModel>>(ReadAll(command));
    }

    /// <summary>
    /// Registers the model a finished job produced. Its id is <see cref="ModelIds.FineTuned"/>; it
    /// inherits the base model's context length and chat capabilities. Registering the same job again
    /// returns the model registered the first time.
    /// </summary>
    /// <exception cref="NotFoundException">The base model is not registered.</exception>
    /// <exception cref="BadRequestException">The suffix or the registration is invalid.</exception>
    /// <exception cref="ConflictException">The job already registered a different model.</exception>
    public async Task<RegisteredModel> RegisterFineTunedAsync(FineTunedModelRegistration registration, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(registration);
        ArgumentException.ThrowIfNullOrEmpty(registration.Workspace);
        ArgumentException.ThrowIfNullOrEmpty(registration.JobId);
        ArgumentException.ThrowIfNullOrEmpty(registration.PolicyName);
        ModelIds.ValidateSuffix(registration.Suffix);
        if (registration.Artifacts.Count == 0)
        {
            throw new ArgumentException("A fine-tuned model needs at least one artifact (the adapter).", nameof(registration));
        }

        if (await FindByJobAsync(registration.JobId, ct).ConfigureAwait(false) is { } existing)
        {
            return existing.WorkspaceId == registration.Workspace && existing.Root == registration.BaseModelId
                ? existing
                : throw new ConflictException($"Job '{registration.JobId}' already registered model '{existing.Id}'.");
        }

        var root = await FindBaseAsync(registration.BaseModelId, ct).ConfigureAwait(false)
            ?? throw new NotFoundException("base model", registration.BaseModelId);
        var workspaceName = WorkspaceName(registration.Workspace)
            ?? throw new ArgumentException($"No workspace with id '{registration.Workspace}'.", nameof(registration));
        var now = _clock.GetUtcNow();
        var lineage = registration.Lineage.RootVersion is null
            ? registration.Lineage with { RootVersion = root.Artifacts.FirstOrDefault(a => a.Name == "consolidated.safetensors")?.Sha256 }
            : registration.Lineage;
        var model = new RegisteredModel
        {
            Id = ModelIds.FineTuned(registration.Workspace, root.Id, registration.JobId, registration.Suffix, now),
            WorkspaceId = registration.Workspace,
            Kind = ModelKind.FineTuned,
            Name = registration.Name,
            Description = registration.Description,
            Root = root.Id,
            JobId = registration.JobId,
            CreatedAt = now.ToUnixTimeSeconds(),
            MaxContextLength = root.MaxContextLength,
            Capabilities = ModelCapabilities.FineTunedOf(root.Capabilities),
            Policy = registration.PolicyName,
            Artifacts = registration.Artifacts,
            Lineage = lineage,
            OwnedBy = workspaceName,
            CreatedBy = registration.Actor,
        };

        try
        {
            Insert(model);
        }
        catch (SqliteException e) when (e.SqliteErrorCode == 19 /* SQLITE_CONSTRAINT */)
        {
            // Another registration of the same job won the race: answer as if it had come first.
            if (await FindByJobAsync(registration.JobId, ct).ConfigureAwait(false) is { } raced && raced.WorkspaceId == registration.Workspace)
            {
                return raced;
            }

            throw new ConflictException($"A model with id '{model.Id}' already exists.");
        }

        await AuditAsync("model_registered", registration.Workspace, registration.Actor, model, $"fine-tuned from {root.Id} by job {registration.JobId}").ConfigureAwait(false);
        return model;
    }

    /// <summary>Sets the name and/or description of a fine-tuned model of the workspace.</summary>
    /// <param name="workspace">The caller's workspace id.</param>
    /// <param name="modelId">The model id or alias.</param>
    /// <param name="name">The new name, when <paramref name="setName"/>.</param>
    /// <param name="setName">Whether to change the name (null clears it).</param>
    /// <param name="description">The new description, when <paramref name="setDescription"/>.</param>
    /// <param name="setDescription">Whether to change the description (null clears it).</param>
    /// <param name="ct">Cancellation.</param>
    public async Task<RegisteredModel> UpdateAsync(string workspace, string modelId, string? name, bool setName, string? description, bool setDescription, CancellationToken ct)
    {
        var model = await FineTunedOrThrowAsync(workspace, modelId, "updated", ct).ConfigureAwait(false);
        Execute(
            "UPDATE models SET name = CASE WHEN $setName THEN $name ELSE name END, description = CASE WHEN $setDesc THEN $desc ELSE description END WHERE id = $id",
            ("$id", model.Id),
            ("$setName", setName),
            ("$name", name),
            ("$setDesc", setDescription),
            ("$desc", description));
        return model with { Name = setName ? name : model.Name, Description = setDescription ? description : model.Description };
    }

    /// <summary>Archives (or, with <paramref name="archived"/> false, unarchives) a fine-tuned model of the workspace. Idempotent.</summary>
    public async Task<RegisteredModel> SetArchivedAsync(string workspace, string modelId, bool archived, CancellationToken ct)
    {
        var model = await FineTunedOrThrowAsync(workspace, modelId, archived ? "archived" : "unarchived", ct).ConfigureAwait(false);
        Execute("UPDATE models SET archived = $a WHERE id = $id", ("$id", model.Id), ("$a", archived));
        return model with { Archived = archived };
    }

    /// <summary>
    /// Deletes a fine-tuned model of the workspace: its row first, then its artifacts through the guard
    /// (audited). A crash in between leaves unreferenced bytes, never a model without bytes.
    /// Checkpoints named in its lineage are not touched.
    /// </summary>
    /// <exception cref="NotFoundException">No such model in the workspace.</exception>
    /// <exception cref="BadRequestException">It is a base model.</exception>
    /// <exception cref="ConflictException">Jobs or dataset versions of the workspace use it (named in <see cref="ConflictException.Derived"/>); nothing was deleted.</exception>
    public async Task<RegisteredModel> DeleteFineTunedAsync(string workspace, string modelId, string actor, CancellationToken ct)
    {
        var model = await FineTunedOrThrowAsync(workspace, modelId, "deleted", ct).ConfigureAwait(false);
        DeleteRowUnlessDerived(model, workspace, "model");

        foreach (var artifact in model.Artifacts)
        {
            await _guard.DeleteAsync(new ArtifactRef("model", model.Id, workspace), artifact.LocationId, actor, artifact.Key, ct).ConfigureAwait(false);
        }

        await AuditAsync("model_deleted", workspace, actor, model, null).ConfigureAwait(false);
        return model;
    }

    /// <summary>
    /// Deletes a base model and its bytes (an admin operation). Refused while fine-tuned models of it,
    /// jobs trained on it or dataset versions built with it exist in any workspace, since their
    /// adapters, checkpoints and shards are useless without it.
    /// </summary>
    /// <exception cref="NotFoundException">No such base model.</exception>
    /// <exception cref="ConflictException">Something derives from it (named in <see cref="ConflictException.Derived"/>); nothing was deleted.</exception>
    public async Task<RegisteredModel> DeleteBaseAsync(string modelId, string actor, string auditWorkspace, CancellationToken ct)
    {
        var model = await FindBaseAsync(modelId, ct).ConfigureAwait(false) ?? throw new NotFoundException("base model", modelId);
        DeleteRowUnlessDerived(model, null, "base model");

        foreach (var artifact in model.Artifacts)
        {
            await _guard.DeleteAsync(new ArtifactRef("model", model.Id, auditWorkspace), artifact.LocationId, actor, artifact.Key, ct).ConfigureAwait(false);
        }

        await AuditAsync("model_deleted", auditWorkspace, actor, model, null).ConfigureAwait(false);
        return model;
    }

    private async Task<RegisteredModel> FineTunedOrThrowAsync(string workspace, string modelId, string operation, CancellationToken ct)
    {
        var model = await FindAsync(workspace, modelId, ct).ConfigureAwait(false) ?? throw new NotFoundException("model", modelId);
        if (model.Kind != ModelKind.FineTuned)
        {
            throw new BadRequestException(
                $"Model '{model.Id}' is a base model; only fine-tuned models can be {operation}. An admin removes a base model with DELETE /api/v1/models/{model.Id}.",
                "invalid_model_type");
        }

        return model;
    }

    private void Insert(RegisteredModel m)
    {
        using var connection = _catalog.Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            INSERT INTO models(id, workspace_id, type, name, description, root, job_id, created_at, archived, max_context_length,
                               capabilities_json, policy, artifacts_json, aliases_json, lineage_json, owned_by, created_by)
            VALUES ($id, $ws, $type, $name, $desc, $root, $job, $created, $archived, $ctx, $caps, $policy, $artifacts, $aliases, $lineage, $owned, $by)
            """;
        command.Parameters.AddWithValue("$id", m.Id);
        command.Parameters.AddWithValue("$ws", (object?)m.WorkspaceId ?? DBNull.Value);
        command.Parameters.AddWithValue("$type", m.Type);
        command.Parameters.AddWithValue("$name", (object?)m.Name ?? DBNull.Value);
        command.Parameters.AddWithValue("$desc", (object?)m.Description ?? DBNull.Value);
        command.Parameters.AddWithValue("$root", (object?)m.Root ?? DBNull.Value);
        command.Parameters.AddWithValue("$job", (object?)m.JobId ?? DBNull.Value);
        command.Parameters.AddWithValue("$created", m.CreatedAt);
        command.Parameters.AddWithValue("$archived", m.Archived);
        command.Parameters.AddWithValue("$ctx", m.MaxContextLength);
        command.Parameters.AddWithValue("$caps", JsonSerializer.Serialize(m.Capabilities, Json));
        command.Parameters.AddWithValue("$policy", m.Policy);
        command.Parameters.AddWithValue("$artifacts", JsonSerializer.Serialize(m.Artifacts, Json));
        command.Parameters.AddWithValue("$aliases", JsonSerializer.Serialize(m.Aliases, Json));
        command.Parameters.AddWithValue("$lineage", JsonSerializer.Serialize(m.Lineage, Json));
        command.Parameters.AddWithValue("$owned", m.OwnedBy);
        command.Parameters.AddWithValue("$by", m.CreatedBy);
        command.ExecuteNonQuery();
    }

    /// <summary>
    /// Deletes the model's row, unless fine-tuned models of it, or jobs or dataset versions (of
    /// <paramref name="workspace"/>, or of any workspace when null) use it. The check and the delete
    /// are one write transaction, so no use recorded in between is missed.
    /// </summary>
    private void DeleteRowUnlessDerived(RegisteredModel model, string? workspace, string kind)
    {
        using var connection = _catalog.Open();
        using var transaction = connection.BeginTransaction(deferred: false);
        using (var delete = connection.CreateCommand())
        {
            delete.Transaction = transaction;
            delete.CommandText = "DELETE FROM models WHERE id = $id";
            delete.Parameters.AddWithValue("$id", model.Id);
            if (delete.ExecuteNonQuery() == 0)
            {
                throw new NotFoundException(kind, model.Id);
            }
        }

        var derived = new List<DerivedArtifact>();
        using (var children = connection.CreateCommand())
        {
            children.Transaction = transaction;
            children.CommandText = "SELECT id FROM models WHERE root = $id ORDER BY created_at, id";
            children.Parameters.AddWithValue("$id", model.Id);
            derived.AddRange(CatalogDatabase.ReadAll(children, r => new DerivedArtifact(DerivedArtifact.Model, r.GetString(0))));
        }

        derived.AddRange(LineageCatalog.DerivedFromModel(connection, transaction, workspace, [model.Id, .. model.Aliases]));
        if (derived.Count > 0)
        {
            transaction.Rollback();
            throw ConflictException.DerivedFrom(kind, model.Id, derived);
        }

        transaction.Commit();
    }

    private bool Exists(string id)
    {
        using var connection = _catalog.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1 FROM models WHERE id = $id UNION ALL SELECT 1 FROM models, json_each(models.aliases_json) a WHERE a.value = $id LIMIT 1";
        command.Parameters.AddWithValue("$id", id);
        return command.ExecuteScalar() is not null;
    }

    private string? WorkspaceName(string workspaceId)
    {
        using var connection = _catalog.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT name FROM workspaces WHERE id = $id";
        command.Parameters.AddWithValue("$id", workspaceId);
        return command.ExecuteScalar() as string;
    }

    private void Execute(string sql, params (string Name, object? Value)[] parameters)
    {
        using var connection = _catalog.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        }

        command.ExecuteNonQuery();
    }

    private RegisteredModel? QueryOne(string sql, params (string Name, object Value)[] parameters)
    {
        using var connection = _catalog.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }

        var rows = ReadAll(command);
        return rows.Count == 0 ? null : rows[0];
    }

    private static List<RegisteredModel> ReadAll(SqliteCommand command)
    {
        var rows = new List<RegisteredModel>();
        using var reader = command.ExecuteReader();
        while (reader.Read())
        {
            string? Text(int i) => reader.IsDBNull(i) ? null : reader.GetString(i);
            rows.Add(new RegisteredModel
            {
                Id = reader.GetString(0),
                WorkspaceId = Text(1),
                Kind = reader.GetString(2) == "base" ? ModelKind.Base : ModelKind.FineTuned,
                Name = Text(3),
                Description = Text(4),
                Root = Text(5),
                JobId = Text(6),
                CreatedAt = reader.GetInt64(7),
                Archived = reader.GetInt64(8) != 0,
                MaxContextLength = reader.GetInt32(9),
                Capabilities = JsonSerializer.Deserialize<ModelCapabilities>(reader.GetString(10), Json) ?? new ModelCapabilities(),
                Policy = reader.GetString(11),
                Artifacts = JsonSerializer.Deserialize<ModelArtifact[]>(reader.GetString(12), Json) ?? [],
                Aliases = JsonSerializer.Deserialize<string[]>(reader.GetString(13), Json) ?? [],
                Lineage = JsonSerializer.Deserialize<ModelLineage>(reader.GetString(14), Json) ?? new ModelLineage(),
                OwnedBy = reader.GetString(15),
                CreatedBy = reader.GetString(16),
            });
        }

        return rows;
    }

    private ValueTask<AuditEvent> AuditAsync(string type, string workspace, string actor, RegisteredModel model, string? detail) =>
        _guard.Audit.AppendAsync(
            new AuditEvent
            {
                Type = type,
                Workspace = workspace,
                Actor = actor,
                ArtifactKind = "model",
                ArtifactId = model.Id,
                Policy = model.Policy,
                Bytes = model.Artifacts.Sum(a => a.Bytes),
                Detail = detail,
            },
            CancellationToken.None);
}
