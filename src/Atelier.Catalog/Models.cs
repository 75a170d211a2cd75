using Atelier.Core.Errors;

namespace Atelier.Catalog;

/// <summary>
/// A model's row as the catalog keeps it. The registry owns the meaning of the JSON columns
/// (capabilities, artifacts, lineage); the catalog reads only <see cref="Aliases"/>, to resolve names.
/// </summary>
public sealed record ModelRecord
{
    /// <summary>The model id; unique among ids and aliases of every model.</summary>
    public required string Id { get; init; }

    /// <summary>The owning workspace; null for a base model, which every workspace sees.</summary>
    public string? WorkspaceId { get; init; }

    /// <summary><see cref="BaseType"/> or <see cref="FineTunedType"/>; a base model has no workspace, a fine-tuned one has one.</summary>
    public required string Type { get; init; }

    /// <summary>A display name.</summary>
    public string? Name { get; init; }

    /// <summary>A description.</summary>
    public string? Description { get; init; }

    /// <summary>For a fine-tuned model: the id of its base model.</summary>
    public string? Root { get; init; }

    /// <summary>For a fine-tuned model: the job that trained it; at most one model per job.</summary>
    public string? JobId { get; init; }

    /// <summary>Unix seconds.</summary>
    public required long CreatedAt { get; init; }

    /// <summary>Whether it is archived.</summary>
    public bool Archived { get; init; }

    /// <summary>The longest context it takes, in tokens.</summary>
    public required int MaxContextLength { get; init; }

    /// <summary>Its capabilities, as the registry's JSON.</summary>
    public required string CapabilitiesJson { get; init; }

    /// <summary>The residency policy of its bytes.</summary>
    public required string Policy { get; init; }

    /// <summary>Its committed blobs, as the registry's JSON.</summary>
    public required string ArtifactsJson { get; init; }

    /// <summary>Other names that resolve to it.</summary>
    public IReadOnlyList<string> Aliases { get; init; } = [];

    /// <summary>Where it came from, as the registry's JSON.</summary>
    public string LineageJson { get; init; } = "{}";

    /// <summary>Mistral's <c>owned_by</c>.</summary>
    public required string OwnedBy { get; init; }

    /// <summary>The actor that registered it.</summary>
    public required string CreatedBy { get; init; }

    /// <summary>The <see cref="Type"/> of a base model.</summary>
    public const string BaseType = "base";

    /// <summary>The <see cref="Type"/> of a fine-tuned model.</summary>
    public const string FineTunedType = "fine-tuned";
}

/// <summary>What became of a request to delete a model's row.</summary>
public enum ModelDeleteStatus
{
    /// <summary>The row is gone.</summary>
    Deleted,

    /// <summary>There was no such row.</summary>
    NotFound,

    /// <summary>Something derives from the model; nothing was deleted.</summary>
    InUse,
}

/// <summary>The outcome of <see cref="IModelRepository.DeleteUnlessDerivedAsync"/>.</summary>
/// <param name="Status">What happened.</param>
/// <param name="Derived">When <see cref="ModelDeleteStatus.InUse"/>: what uses the model, oldest first; empty otherwise.</param>
public readonly record struct ModelDeleteOutcome(ModelDeleteStatus Status, IReadOnlyList<DerivedArtifact> Derived);

/// <summary>
/// The rows of the model registry: base models (no workspace, visible to all) and fine-tuned models
/// (owned by one workspace). A model is found by its id or by one of its aliases.
/// </summary>
public interface IModelRepository
{
    /// <summary>
    /// The model <paramref name="idOrAlias"/> as <paramref name="workspaceId"/> sees it (any base model and
    /// the workspace's fine-tuned models), by id first, then by alias (the workspace's own models before
    /// base models, newest first); null otherwise.
    /// </summary>
    Task<ModelRecord?> FindVisibleAsync(string workspaceId, string idOrAlias, CancellationToken cancellationToken = default);

    /// <summary>The base model with id <paramref name="id"/>, or null.</summary>
    Task<ModelRecord?> FindBaseAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>The model registered by job <paramref name="jobId"/>, in any workspace, or null.</summary>
    Task<ModelRecord?> FindByJobAsync(string jobId, CancellationToken cancellationToken = default);

    /// <summary>Every model the workspace sees: base models by id, then its fine-tuned models newest first.</summary>
    Task<IReadOnlyList<ModelRecord>> ListVisibleAsync(string workspaceId, CancellationToken cancellationToken = default);

    /// <summary>True when a model has <paramref name="idOrAlias"/> as its id or as one of its aliases.</summary>
    Task<bool> ExistsAsync(string idOrAlias, CancellationToken cancellationToken = default);

    /// <summary>Inserts a model; false when its id, or a model of the same job, already exists.</summary>
    Task<bool> TryInsertAsync(ModelRecord model, CancellationToken cancellationToken = default);

    /// <summary>Sets the name (when <paramref name="setName"/>) and the description (when <paramref name="setDescription"/>); false when there is no such model.</summary>
    Task<bool> UpdateTextAsync(string id, string? name, bool setName, string? description, bool setDescription, CancellationToken cancellationToken = default);

    /// <summary>Sets the archived flag; false when there is no such model.</summary>
    Task<bool> SetArchivedAsync(string id, bool archived, CancellationToken cancellationToken = default);

    /// <summary>
    /// Deletes model <paramref name="id"/> unless fine-tuned models of it, or dataset versions or jobs
    /// (of <paramref name="workspaceId"/>, of every workspace when null) that name it by one of
    /// <paramref name="names"/>, exist. The check and the delete are atomic, so no use recorded in
    /// between is missed.
    /// </summary>
    Task<ModelDeleteOutcome> DeleteUnlessDerivedAsync(string id, IReadOnlyCollection<string> names, string? workspaceId, CancellationToken cancellationToken = default);

    /// <summary>
    /// The name of workspace <paramref name="workspaceId"/> (a fine-tuned model records it as its owner), or null.
    /// </summary>
    Task<string?> WorkspaceNameAsync(string workspaceId, CancellationToken cancellationToken = default);
}
