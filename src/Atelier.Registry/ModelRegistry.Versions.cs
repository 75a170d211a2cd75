using Atelier.Catalog;
using Atelier.Core.Errors;
using Atelier.Storage.Audit;

namespace Atelier.Registry;

/// <summary>A registered name as a workspace sees it.</summary>
/// <param name="Shared">True for a base model's name, which every workspace sees and only the operator may alias.</param>
/// <param name="Record">Its latest version and aliases.</param>
public sealed record RegisteredName(bool Shared, RegisteredNameRecord Record);

/// <summary>One version of a registered name, with the model it is (null once that model was deleted).</summary>
/// <param name="Shared">True for a base model's name.</param>
/// <param name="Version">The version.</param>
/// <param name="Model">Its model, as the workspace sees it; null when deleted.</param>
public sealed record RegisteredVersion(bool Shared, ModelVersionRecord Version, RegisteredModel? Model);

/// <summary>What a request to set or remove an alias did.</summary>
/// <param name="Changed">False when the alias already pointed there (nothing recorded).</param>
/// <param name="Move">The recorded move, when <paramref name="Changed"/>.</param>
/// <param name="Version">The version the alias points at now; null once removed.</param>
public sealed record AliasChange(bool Changed, ModelAliasMove? Move, int? Version);

public sealed partial class ModelRegistry
{
    /// <summary>The separator of <c>name@alias</c> and <c>name@3</c> wherever a model is named.</summary>
    public const char VersionSeparator = '@';

    /// <summary>The registered name of a fine-tune whose job named none: <c>&lt;base&gt;:&lt;suffix&gt;</c>, or <c>&lt;base&gt;:fine-tuned</c> without a suffix.</summary>
    public static string DefaultFineTunedName(string baseModelId, string? suffix) => $"{baseModelId}:{suffix ?? "fine-tuned"}";

    /// <summary>Whether this registry keeps versions (a host registers the catalog's version repository).</summary>
    public bool KeepsVersions => _versions is not null;

    /// <summary>The registered name and version of <paramref name="modelId"/>; null when this installation keeps no versions or the model has none.</summary>
    public async Task<ModelVersionRecord?> VersionOfAsync(string modelId, CancellationToken ct) =>
        _versions is null ? null : await _versions.FindByModelAsync(modelId, ct).ConfigureAwait(false);

    private IModelVersionRepository Versions => _versions ?? throw new NotFoundException("registered model", "(this installation keeps no versions)");

    /// <summary>
    /// Resolves <c>name@alias</c> or <c>name@N</c> for <paramref name="workspace"/>: the workspace's own
    /// name first, then a base model's (shared) name; null when the name, alias or version is unknown or
    /// its model was deleted.
    /// </summary>
    private async Task<RegisteredModel?> ResolveVersionAsync(string workspace, string reference, int separator, CancellationToken ct)
    {
        if (_versions is null)
        {
            return null;
        }

        var name = reference[..separator];
        var selector = reference[(separator + 1)..];
        if (name.Length == 0 || selector.Length == 0)
        {
            return null;
        }

        var number = RegisteredNames.TryParseVersion(selector);
        foreach (var scope in (string[])[workspace, IModelVersionRepository.SharedScope])
        {
            var version = number is { } n
                ? await _versions.FindVersionAsync(scope, name, n, ct).ConfigureAwait(false)
                : await _versions.FindByAliasAsync(scope, name, selector, ct).ConfigureAwait(false);
            if (version is not null)
            {
                return ToModel(await _models.FindVisibleAsync(workspace, version.ModelId, ct).ConfigureAwait(false));
            }

            // A workspace's name hides a shared one of the same name, whether or not it has the alias.
            if (await _versions.FindNameAsync(scope, name, ct).ConfigureAwait(false) is not null)
            {
                return null;
            }
        }

        return null;
    }

    /// <summary>Records <paramref name="model"/> as the next version of <paramref name="name"/> (idempotent: a model keeps its first version).</summary>
    private async Task RecordVersionAsync(RegisteredModel model, string name, string auditWorkspace)
    {
        if (_versions is null || await _versions.FindByModelAsync(model.Id, CancellationToken.None).ConfigureAwait(false) is not null)
        {
            return;
        }

        // Not cancellable: the model's row is committed, and its version goes with it.
        var version = await _versions.AddVersionAsync(model.WorkspaceId ?? IModelVersionRepository.SharedScope, name, model.Id, model.JobId, model.CreatedAt, model.CreatedBy, CancellationToken.None).ConfigureAwait(false);
        await _guard.Audit.AppendAsync(
            new AuditEvent
            {
                Type = "model_version_registered",
                Workspace = auditWorkspace,
                Actor = model.CreatedBy,
                ArtifactKind = "model",
                ArtifactId = model.Id,
                Policy = model.Policy,
                Detail = $"{version.Name} version {version.Version}",
            },
            CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>Every registered name <paramref name="workspace"/> sees (its own and the base models'), by name.</summary>
    public async Task<IReadOnlyList<RegisteredName>> ListNamesAsync(string workspace, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        var names = await Versions.ListNamesAsync([workspace, IModelVersionRepository.SharedScope], ct).ConfigureAwait(false);
        return [.. names.Select(n => new RegisteredName(n.Scope == IModelVersionRepository.SharedScope, n))];
    }

    /// <summary>The registered name as <paramref name="workspace"/> sees it: its own first, then a base model's.</summary>
    /// <exception cref="NotFoundException">No such name in the caller's view (another workspace's names are indistinguishable from missing ones).</exception>
    public async Task<RegisteredName> GetNameAsync(string workspace, string name, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(workspace);
        ArgumentNullException.ThrowIfNull(name);
        foreach (var scope in (string[])[workspace, IModelVersionRepository.SharedScope])
        {
            if (await Versions.FindNameAsync(scope, name, ct).ConfigureAwait(false) is { } found)
            {
                return new RegisteredName(scope == IModelVersionRepository.SharedScope, found);
            }
        }

        throw new NotFoundException("registered model", name);
    }

    /// <summary>Every version of the name, oldest first.</summary>
    public async Task<(RegisteredName Name, IReadOnlyList<ModelVersionRecord> Versions)> ListVersionsAsync(string workspace, string name, CancellationToken ct)
    {
        var found = await GetNameAsync(workspace, name, ct).ConfigureAwait(false);
        return (found, await Versions.ListVersionsAsync(found.Record.Scope, found.Record.Name, ct).ConfigureAwait(false));
    }

    /// <summary>Version <paramref name="version"/> of the name, with its model.</summary>
    /// <exception cref="NotFoundException">No such name or version in the caller's view.</exception>
    public async Task<RegisteredVersion> GetVersionAsync(string workspace, string name, int version, CancellationToken ct)
    {
        var found = await GetNameAsync(workspace, name, ct).ConfigureAwait(false);
        var record = await Versions.FindVersionAsync(found.Record.Scope, found.Record.Name, version, ct).ConfigureAwait(false)
            ?? throw new NotFoundException("model version", $"{name}{VersionSeparator}{version}");
        return new RegisteredVersion(found.Shared, record, ToModel(await _models.FindVisibleAsync(workspace, record.ModelId, ct).ConfigureAwait(false)));
    }

    /// <summary>
    /// Points <paramref name="alias"/> of the name at <paramref name="version"/> (null removes it), appends
    /// the move to the alias's history and audits it. A base model's name is shared by every workspace, so
    /// only the operator may alias it.
    /// </summary>
    /// <param name="workspace">The caller's workspace id.</param>
    /// <param name="actor">The caller (its key), recorded in the history and the audit log.</param>
    /// <param name="isOperator">Whether the caller is the platform operator.</param>
    /// <param name="name">The registered name.</param>
    /// <param name="alias">The alias (validated by <see cref="RegisteredNames.ValidateAlias"/>).</param>
    /// <param name="version">The version to point at; null removes the alias.</param>
    /// <param name="reason">Why, as the caller says (kept in the history).</param>
    /// <param name="ct">Cancellation.</param>
    /// <exception cref="NotFoundException">No such name, version or (for a removal) alias.</exception>
    /// <exception cref="ForbiddenException">A base model's name, and the caller is not the operator.</exception>
    public async Task<AliasChange> MoveAliasAsync(string workspace, string actor, bool isOperator, string name, string alias, int? version, string? reason, CancellationToken ct)
    {
        RegisteredNames.ValidateAlias(alias);
        var found = await GetNameAsync(workspace, name, ct).ConfigureAwait(false);
        if (found.Shared && !isOperator)
        {
            throw new ForbiddenException($"'{found.Record.Name}' is a base model's name, shared by every workspace: only the platform operator may set or move its aliases.");
        }

        var outcome = await Versions.MoveAliasAsync(found.Record.Scope, found.Record.Name, alias, version, actor, workspace, reason, _clock.GetUtcNow().ToUnixTimeSeconds(), CancellationToken.None).ConfigureAwait(false);
        switch (outcome.Status)
        {
            case AliasMoveStatus.NoSuchVersion:
                throw new NotFoundException("model version", $"{name}{VersionSeparator}{version}");
            case AliasMoveStatus.NotFound:
                throw new NotFoundException("alias", $"{name}{VersionSeparator}{alias}");
            case AliasMoveStatus.Unchanged:
                return new AliasChange(false, null, version);
        }

        var move = outcome.Move!;
        var target = version is { } v ? await Versions.FindVersionAsync(found.Record.Scope, found.Record.Name, v, CancellationToken.None).ConfigureAwait(false) : null;
        await _guard.Audit.AppendAsync(
            new AuditEvent
            {
                Type = version is null ? "model_alias_removed" : "model_alias_moved",
                Workspace = workspace,
                Actor = actor,
                ArtifactKind = "model",
                ArtifactId = target?.ModelId ?? $"{found.Record.Name}{VersionSeparator}{alias}",
                Detail = $"{found.Record.Name}{VersionSeparator}{alias}: {Describe(move.FromVersion)} -> {Describe(move.ToVersion)} (history #{move.Sequence})" + (reason is null ? "" : $": {reason}"),
            },
            CancellationToken.None).ConfigureAwait(false);
        return new AliasChange(true, move, version);

        static string Describe(int? v) => v is { } n ? $"version {n}" : "none";
    }

    /// <summary>Every move of the alias, oldest first.</summary>
    /// <exception cref="NotFoundException">No such name in the caller's view.</exception>
    public async Task<IReadOnlyList<ModelAliasMove>> AliasHistoryAsync(string workspace, string name, string alias, CancellationToken ct)
    {
        var found = await GetNameAsync(workspace, name, ct).ConfigureAwait(false);
        return await Versions.AliasHistoryAsync(found.Record.Scope, found.Record.Name, alias, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Stores an evaluation of a version (computed by the caller, e.g. Training's evaluator). It is kept
    /// under the caller's workspace (<see cref="ModelEvaluationRecord.Scope"/>), even for a base model's
    /// shared name: it was measured on that workspace's file, which no other workspace may learn of.
    /// </summary>
    public Task AddEvaluationAsync(ModelEvaluationRecord evaluation, CancellationToken ct) => Versions.AddEvaluationAsync(evaluation, ct);

    /// <summary>The evaluations of a version, oldest first.</summary>
    /// <exception cref="NotFoundException">No such name or version in the caller's view.</exception>
    public async Task<IReadOnlyList<ModelEvaluationRecord>> ListEvaluationsAsync(string workspace, string name, int version, CancellationToken ct)
    {
        var found = await GetVersionAsync(workspace, name, version, ct).ConfigureAwait(false);
        return await Versions.ListEvaluationsAsync(workspace, found.Version.Name, version, ct).ConfigureAwait(false);
    }
}
