namespace Atelier.Catalog;

/// <summary>
/// One version of a registered model name: the model it is, in the order it was registered.
/// </summary>
/// <param name="Scope">The workspace id that owns the name, or <see cref="IModelVersionRepository.SharedScope"/> for a base model's name, which every workspace sees.</param>
/// <param name="Name">The registered name.</param>
/// <param name="Version">1, 2, ... in registration order; never reused, even after its model is deleted.</param>
/// <param name="ModelId">The model this version is.</param>
/// <param name="JobId">The job that trained it; null for a base model.</param>
/// <param name="CreatedAt">Unix seconds.</param>
/// <param name="CreatedBy">The actor that registered it.</param>
/// <param name="Status"><c>ready</c>, <c>archived</c>, or <c>deleted</c> once its model's row is gone.</param>
public sealed record ModelVersionRecord(string Scope, string Name, int Version, string ModelId, string? JobId, long CreatedAt, string CreatedBy, string Status);

/// <summary>An alias of a registered name and the version it points at.</summary>
/// <param name="Alias">The alias.</param>
/// <param name="Version">The version it resolves to.</param>
/// <param name="UpdatedAt">Unix seconds of its last move.</param>
/// <param name="UpdatedBy">Who moved it last.</param>
public sealed record ModelAliasRecord(string Alias, int Version, long UpdatedAt, string UpdatedBy);

/// <summary>A registered name with its latest version and its aliases.</summary>
/// <param name="Scope">See <see cref="ModelVersionRecord.Scope"/>.</param>
/// <param name="Name">The name.</param>
/// <param name="LatestVersion">Its highest version number.</param>
/// <param name="LatestModelId">The model of that version.</param>
/// <param name="Versions">How many versions it has.</param>
/// <param name="UpdatedAt">Unix seconds of its latest version.</param>
/// <param name="Aliases">Its aliases, by name.</param>
public sealed record RegisteredNameRecord(string Scope, string Name, int LatestVersion, string LatestModelId, int Versions, long UpdatedAt, IReadOnlyList<ModelAliasRecord> Aliases);

/// <summary>One move of an alias, as the append-only history keeps it.</summary>
/// <param name="Sequence">1, 2, ... per alias, in the order the moves committed.</param>
/// <param name="Alias">The alias.</param>
/// <param name="FromVersion">The version it pointed at before; null when it was created.</param>
/// <param name="ToVersion">The version it points at after; null when it was removed.</param>
/// <param name="Actor">Who moved it (the key id).</param>
/// <param name="WorkspaceId">The workspace of the key that moved it.</param>
/// <param name="Reason">Why, as the caller said; may be null.</param>
/// <param name="At">Unix seconds.</param>
public sealed record ModelAliasMove(long Sequence, string Alias, int? FromVersion, int? ToVersion, string Actor, string WorkspaceId, string? Reason, long At);

/// <summary>The stored result of evaluating one version on a validation file.</summary>
/// <param name="Id">The evaluation's id.</param>
/// <param name="Scope">See <see cref="ModelVersionRecord.Scope"/>.</param>
/// <param name="Name">The registered name.</param>
/// <param name="Version">The version evaluated.</param>
/// <param name="ModelId">Its model.</param>
/// <param name="FileId">The validation file.</param>
/// <param name="ResultJson">The measured numbers (the registry's JSON: loss and token accuracy of the version and of its base model).</param>
/// <param name="CreatedAt">Unix seconds.</param>
/// <param name="CreatedBy">Who asked for it.</param>
public sealed record ModelEvaluationRecord(string Id, string Scope, string Name, int Version, string ModelId, string FileId, string ResultJson, long CreatedAt, string CreatedBy);

/// <summary>What became of a request to move an alias.</summary>
public enum AliasMoveStatus
{
    /// <summary>The alias moved (or was created, or removed); the move is in the history.</summary>
    Moved,

    /// <summary>The name has no such version.</summary>
    NoSuchVersion,

    /// <summary>The alias did not exist (a removal), or the name has no versions.</summary>
    NotFound,

    /// <summary>The alias already pointed at that version: nothing changed and nothing was recorded.</summary>
    Unchanged,
}

/// <summary>The outcome of <see cref="IModelVersionRepository.MoveAliasAsync"/>.</summary>
/// <param name="Status">What happened.</param>
/// <param name="Move">The recorded move when <see cref="AliasMoveStatus.Moved"/>; null otherwise.</param>
public readonly record struct AliasMoveOutcome(AliasMoveStatus Status, ModelAliasMove? Move);

/// <summary>
/// Registered model names: their versions in order, their aliases with the append-only history of
/// every move, and the evaluations stored with each version. A name belongs to one workspace (a
/// fine-tune's) or is shared (a base model's id, <see cref="SharedScope"/>).
/// </summary>
/// <remarks>
/// Version numbers and alias moves are decided inside the store's own atomic step, so two
/// registrations never get the same number and two moves of one alias are ordered, each recorded
/// with the version it actually moved from.
/// </remarks>
public interface IModelVersionRepository
{
    /// <summary>The scope of the names every workspace sees (base models' ids).</summary>
    public const string SharedScope = "";

    /// <summary>
    /// Makes model <paramref name="modelId"/> the next version of <paramref name="name"/> in
    /// <paramref name="scope"/>, atomically; when the model already has a version (a registration
    /// repeated after a crash), returns that one unchanged.
    /// </summary>
    Task<ModelVersionRecord> AddVersionAsync(string scope, string name, string modelId, string? jobId, long createdAt, string createdBy, CancellationToken cancellationToken = default);

    /// <summary>The version of model <paramref name="modelId"/>, or null.</summary>
    Task<ModelVersionRecord?> FindByModelAsync(string modelId, CancellationToken cancellationToken = default);

    /// <summary>Version <paramref name="version"/> of the name, or null.</summary>
    Task<ModelVersionRecord?> FindVersionAsync(string scope, string name, int version, CancellationToken cancellationToken = default);

    /// <summary>The version alias <paramref name="alias"/> of the name points at, or null.</summary>
    Task<ModelVersionRecord?> FindByAliasAsync(string scope, string name, string alias, CancellationToken cancellationToken = default);

    /// <summary>Every name of the scopes given (a workspace's and the shared one), by name.</summary>
    Task<IReadOnlyList<RegisteredNameRecord>> ListNamesAsync(IReadOnlyList<string> scopes, CancellationToken cancellationToken = default);

    /// <summary>The name in <paramref name="scope"/>, or null when it has no version.</summary>
    Task<RegisteredNameRecord?> FindNameAsync(string scope, string name, CancellationToken cancellationToken = default);

    /// <summary>Every version of the name, oldest first.</summary>
    Task<IReadOnlyList<ModelVersionRecord>> ListVersionsAsync(string scope, string name, CancellationToken cancellationToken = default);

    /// <summary>
    /// Points <paramref name="alias"/> of the name at <paramref name="toVersion"/> (null removes it) and
    /// appends the move to its history, in one atomic step that reads the version it moves from.
    /// </summary>
    Task<AliasMoveOutcome> MoveAliasAsync(string scope, string name, string alias, int? toVersion, string actor, string workspaceId, string? reason, long at, CancellationToken cancellationToken = default);

    /// <summary>Every move of the alias, oldest first (also those of an alias removed since).</summary>
    Task<IReadOnlyList<ModelAliasMove>> AliasHistoryAsync(string scope, string name, string alias, CancellationToken cancellationToken = default);

    /// <summary>Stores an evaluation of a version.</summary>
    Task AddEvaluationAsync(ModelEvaluationRecord evaluation, CancellationToken cancellationToken = default);

    /// <summary>The evaluations of a version, oldest first.</summary>
    Task<IReadOnlyList<ModelEvaluationRecord>> ListEvaluationsAsync(string scope, string name, int version, CancellationToken cancellationToken = default);
}
