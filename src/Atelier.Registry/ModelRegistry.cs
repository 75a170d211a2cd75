using System.Collections.Concurrent;
using System.Text.Json;
using Atelier.Catalog;
using Atelier.Core.Errors;
using Atelier.Storage.Audit;
using Atelier.Storage.Placement;

namespace Atelier.Registry;

/// <summary>
/// The models of an installation: base models imported by an admin, visible to every workspace,
/// and fine-tuned models registered by the jobs that trained them, each owned by one workspace.
/// Rows live in the catalog's <see cref="IModelRepository"/>; bytes are written only through the placement
/// guard. A model's row is written only after all of its bytes are committed, so a model either
/// exists with every file or not at all.
/// </summary>
public sealed partial class ModelRegistry
{
    // The JSON columns use snake_case, as the rest of the catalog's JSON does.
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    private readonly IModelRepository _models;
    private readonly PlacementGuard _guard;
    private readonly TimeProvider _clock;
    private readonly string? _cacheDirectory;
    private readonly ModelImportRoots? _importRoots;
    private readonly IModelVersionRepository? _versions;

    // Ids being imported by this process: a second import of the same id waits for nothing and is refused,
    // so two imports never write the same blob keys.
    private readonly ConcurrentDictionary<string, byte> _importing = new(StringComparer.Ordinal);

    /// <summary>Creates the registry over the catalog's model rows and the placement guard.</summary>
    /// <param name="models">The catalog's model rows.</param>
    /// <param name="guard">The only write path for bytes.</param>
    /// <param name="clock">The clock.</param>
    /// <param name="cacheDirectory">
    /// Where <see cref="ModelDirectoryAsync"/> materialises a base model whose blobs are not plain local
    /// files; null when every location is a local directory.
    /// </param>
    /// <param name="importRoots">The directories base models may be imported from; null refuses every import.</param>
    /// <param name="versions">
    /// The catalog's registered names (versions, aliases, evaluations); null keeps none, and then
    /// <c>name@alias</c> resolves to nothing.
    /// </param>
    public ModelRegistry(IModelRepository models, PlacementGuard guard, TimeProvider clock, string? cacheDirectory = null, ModelImportRoots? importRoots = null, IModelVersionRepository? versions = null)
    {
        ArgumentNullException.ThrowIfNull(models);
        ArgumentNullException.ThrowIfNull(guard);
        ArgumentNullException.ThrowIfNull(clock);
        _models = models;
        _guard = guard;
        _clock = clock;
        _cacheDirectory = cacheDirectory;
        _importRoots = importRoots;
        _versions = versions;
    }

    /// <summary>
    /// The model <paramref name="modelId"/> (or the model with that alias) as <paramref name="workspace"/>
    /// sees it: any base model, and the workspace's own fine-tuned models. Null otherwise, so another
    /// workspace's models are indistinguishable from missing ones. This is the one place a model's name
    /// is resolved: <c>name@alias</c> and <c>name@N</c> (a registered name's alias or version) resolve here
    /// too, so they work wherever a model is named (jobs, chat, FIM, embeddings, model cards, exports).
    /// </summary>
    /// <param name="workspace">The caller's workspace id.</param>
    /// <param name="modelId">A model id or alias, or <c>name@alias</c>, or <c>name@N</c>.</param>
    /// <param name="ct">Cancellation.</param>
    public async Task<RegisteredModel?> FindAsync(string workspace, string modelId, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        ArgumentNullException.ThrowIfNull(modelId);

        // No model id or legacy alias holds '@' (both are validated without it), so the two never clash.
        var separator = modelId.LastIndexOf(VersionSeparator);
        if (separator >= 0)
        {
            return await ResolveVersionAsync(workspace, modelId, separator, ct).ConfigureAwait(false);
        }

        return ToModel(await _models.FindVisibleAsync(workspace, modelId, ct).ConfigureAwait(false));
    }

    /// <summary>The base model <paramref name="modelId"/>, or null.</summary>
    public async Task<RegisteredModel?> FindBaseAsync(string modelId, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(modelId);
        return ToModel(await _models.FindBaseAsync(modelId, ct).ConfigureAwait(false));
    }

    /// <summary>The fine-tuned model a job registered, in any workspace, or null.</summary>
    public async Task<RegisteredModel?> FindByJobAsync(string jobId, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(jobId);
        return ToModel(await _models.FindByJobAsync(jobId, ct).ConfigureAwait(false));
    }

    /// <summary>Every model <paramref name="workspace"/> sees: base models by id, then its fine-tuned models newest first.</summary>
    public async Task<IReadOnlyList<RegisteredModel>> ListAsync(string workspace, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        var records = await _models.ListVisibleAsync(workspace, ct).ConfigureAwait(false);
        var models = new RegisteredModel[records.Count];
        for (var i = 0; i < models.Length; i++)
        {
            models[i] = ToModel(records[i]);
        }

        return models;
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

        var registeredName = registration.RegisteredName ?? DefaultFineTunedName(registration.BaseModelId, registration.Suffix);
        RegisteredNames.ValidateName(registeredName, "registered_model_name");
        if (await FindByJobAsync(registration.JobId, ct).ConfigureAwait(false) is { } existing)
        {
            if (existing.WorkspaceId != registration.Workspace || existing.Root != registration.BaseModelId)
            {
                throw new ConflictException($"Job '{registration.JobId}' already registered model '{existing.Id}'.");
            }

            // A registration repeated after a crash between the model's row and its version.
            await RecordVersionAsync(existing, registeredName, registration.Workspace).ConfigureAwait(false);
            return existing;
        }

        var root = await FindBaseAsync(registration.BaseModelId, ct).ConfigureAwait(false)
            ?? throw new NotFoundException("base model", registration.BaseModelId);
        var workspaceName = await _models.WorkspaceNameAsync(registration.Workspace, ct).ConfigureAwait(false)
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

        if (!await _models.TryInsertAsync(ToRecord(model), CancellationToken.None).ConfigureAwait(false))
        {
            // Another registration of the same job won the race: answer as if it had come first.
            if (await FindByJobAsync(registration.JobId, ct).ConfigureAwait(false) is { } raced && raced.WorkspaceId == registration.Workspace)
            {
                await RecordVersionAsync(raced, registeredName, registration.Workspace).ConfigureAwait(false);
                return raced;
            }

            throw new ConflictException($"A model with id '{model.Id}' already exists.");
        }

        await AuditAsync("model_registered", registration.Workspace, registration.Actor, model, $"fine-tuned from {root.Id} by job {registration.JobId}").ConfigureAwait(false);
        await RecordVersionAsync(model, registeredName, registration.Workspace).ConfigureAwait(false);
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
        if (!await _models.UpdateTextAsync(model.Id, name, setName, description, setDescription, ct).ConfigureAwait(false))
        {
            throw new NotFoundException("model", modelId);
        }

        return model with { Name = setName ? name : model.Name, Description = setDescription ? description : model.Description };
    }

    /// <summary>Archives (or, with <paramref name="archived"/> false, unarchives) a fine-tuned model of the workspace. Idempotent.</summary>
    public async Task<RegisteredModel> SetArchivedAsync(string workspace, string modelId, bool archived, CancellationToken ct)
    {
        var model = await FineTunedOrThrowAsync(workspace, modelId, archived ? "archived" : "unarchived", ct).ConfigureAwait(false);
        if (!await _models.SetArchivedAsync(model.Id, archived, ct).ConfigureAwait(false))
        {
            throw new NotFoundException("model", modelId);
        }

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
        await DeleteRowUnlessDerivedAsync(model, workspace, "model").ConfigureAwait(false);

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
        await DeleteRowUnlessDerivedAsync(model, null, "base model").ConfigureAwait(false);

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

    /// <summary>
    /// Deletes the model's row, unless fine-tuned models of it, or jobs or dataset versions (of
    /// <paramref name="workspace"/>, or of any workspace when null) use it; the repository checks and
    /// deletes atomically, so no use recorded in between is missed.
    /// </summary>
    private async Task DeleteRowUnlessDerivedAsync(RegisteredModel model, string? workspace, string kind)
    {
        // Not cancellable: once asked, the row goes or stays as one step.
        var outcome = await _models.DeleteUnlessDerivedAsync(model.Id, [model.Id, .. model.Aliases], workspace, CancellationToken.None).ConfigureAwait(false);
        switch (outcome.Status)
        {
            case ModelDeleteStatus.NotFound:
                throw new NotFoundException(kind, model.Id);
            case ModelDeleteStatus.InUse:
                throw ConflictException.DerivedFrom(kind, model.Id, outcome.Derived);
        }
    }

    private Task<bool> ExistsAsync(string id, CancellationToken ct) => _models.ExistsAsync(id, ct);

    [return: System.Diagnostics.CodeAnalysis.NotNullIfNotNull(nameof(record))]
    private static RegisteredModel? ToModel(ModelRecord? record) => record is null ? null : new RegisteredModel
    {
        Id = record.Id,
        WorkspaceId = record.WorkspaceId,
        Kind = record.Type == ModelRecord.BaseType ? ModelKind.Base : ModelKind.FineTuned,
        Name = record.Name,
        Description = record.Description,
        Root = record.Root,
        JobId = record.JobId,
        CreatedAt = record.CreatedAt,
        Archived = record.Archived,
        MaxContextLength = record.MaxContextLength,
        Capabilities = JsonSerializer.Deserialize<ModelCapabilities>(record.CapabilitiesJson, Json) ?? new ModelCapabilities(),
        Policy = record.Policy,
        Artifacts = JsonSerializer.Deserialize<ModelArtifact[]>(record.ArtifactsJson, Json) ?? [],
        Aliases = record.Aliases,
        Lineage = JsonSerializer.Deserialize<ModelLineage>(record.LineageJson, Json) ?? new ModelLineage(),
        OwnedBy = record.OwnedBy,
        CreatedBy = record.CreatedBy,
    };

    private static ModelRecord ToRecord(RegisteredModel m) => new()
    {
        Id = m.Id,
        WorkspaceId = m.WorkspaceId,
        Type = m.Type,
        Name = m.Name,
        Description = m.Description,
        Root = m.Root,
        JobId = m.JobId,
        CreatedAt = m.CreatedAt,
        Archived = m.Archived,
        MaxContextLength = m.MaxContextLength,
        CapabilitiesJson = JsonSerializer.Serialize(m.Capabilities, Json),
        Policy = m.Policy,
        ArtifactsJson = JsonSerializer.Serialize(m.Artifacts, Json),
        Aliases = m.Aliases,
        LineageJson = JsonSerializer.Serialize(m.Lineage, Json),
        OwnedBy = m.OwnedBy,
        CreatedBy = m.CreatedBy,
    };

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
