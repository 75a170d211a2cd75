using Atelier.Core.Errors;

namespace Atelier.Catalog;

/// <summary>
/// Who derives from an artifact: the dataset versions and fine-tuning jobs whose stored requests
/// name it as an input. Deletions ask the same question inside their own atomic step
/// (<see cref="IFileRepository.DeleteAsync"/>, <see cref="IDatasetRepository.DeleteAsync"/>), so an
/// artifact is removed only when nothing in the catalog still needs it.
/// </summary>
/// <remarks>
/// Inputs are read from the requests as the API stored them (snake_case JSON): a dataset's
/// <c>training_files</c>, <c>validation_files</c> and <c>eval_files</c> (file ids),
/// <c>source_dataset</c> and <c>eval_dataset</c> (dataset ids) and <c>model</c>; a job's
/// <c>training_files[].file_id</c>, <c>validation_files</c> and <c>dataset_id</c>, and its resolved
/// <c>model</c> column.
/// </remarks>
public interface ILineageRepository
{
    /// <summary>The dataset versions and jobs of the workspace that use file <paramref name="fileId"/>, directly or through a dataset; oldest first.</summary>
    Task<IReadOnlyList<DerivedArtifact>> DerivedFromFileAsync(string workspaceId, string fileId, CancellationToken cancellationToken = default);

    /// <summary>The dataset versions (semantic dedup of it) and jobs of the workspace that use dataset <paramref name="datasetId"/>; oldest first.</summary>
    Task<IReadOnlyList<DerivedArtifact>> DerivedFromDatasetAsync(string workspaceId, string datasetId, CancellationToken cancellationToken = default);

    /// <summary>
    /// The jobs of the workspace, not yet finished, that start from checkpoint <paramref name="step"/> of
    /// job <paramref name="jobId"/> (a restore's <c>start_from</c>): deleting the checkpoint would fail
    /// them later. A finished job no longer needs it.
    /// </summary>
    Task<IReadOnlyList<DerivedArtifact>> PendingFromCheckpointAsync(string workspaceId, string jobId, long step, CancellationToken cancellationToken = default);

    /// <summary>
    /// The workspace's own artifacts as lineage nodes: files, dataset versions, jobs, their
    /// checkpoints, vector collections, feature view versions and training sets. Models come from
    /// the registry, which owns their JSON; nothing of another workspace is returned.
    /// </summary>
    Task<IReadOnlyList<LineageNodeRecord>> NodesAsync(string workspaceId, CancellationToken cancellationToken = default);

    /// <summary>
    /// Every derivation recorded in the workspace: which files, datasets and models each dataset
    /// version and job were made from, each job's checkpoints and model, each fine-tuned model's base,
    /// each training set's feature views. Inputs are read from the stored requests (see the remarks).
    /// </summary>
    Task<IReadOnlyList<LineageEdgeRecord>> EdgesAsync(string workspaceId, CancellationToken cancellationToken = default);
}

/// <summary>
/// An artifact of a workspace as the lineage graph shows it: what it is, its state, its residency
/// policy and where its bytes are, as the catalog records them.
/// </summary>
/// <param name="Kind">One of the <see cref="LineageKinds"/>.</param>
/// <param name="Id">Its id.</param>
/// <param name="Name">A display name (a file name, a dataset's name), when it has one.</param>
/// <param name="Status">Its state (a dataset's build status, a job's status, a checkpoint's <c>retained</c> or <c>deleted</c>), when it has one.</param>
/// <param name="CreatedAt">Unix seconds.</param>
/// <param name="Policy">The residency policy of its bytes.</param>
/// <param name="Locations">The locations the catalog says hold its bytes.</param>
/// <param name="Parent">For a checkpoint: the job it belongs to.</param>
public sealed record LineageNodeRecord(string Kind, string Id, string? Name, string? Status, long CreatedAt, string Policy, IReadOnlyList<string> Locations, string? Parent = null);

/// <summary>One derivation: <paramref name="ToKind"/> <paramref name="ToId"/> was made from <paramref name="FromKind"/> <paramref name="FromId"/>.</summary>
/// <param name="FromKind">The input's kind.</param>
/// <param name="FromId">The input's id (for a model, the name the request used: its id or an alias).</param>
/// <param name="ToKind">The derived artifact's kind.</param>
/// <param name="ToId">The derived artifact's id.</param>
/// <param name="Relation">How: <c>training_file</c>, <c>validation_file</c>, <c>source_dataset</c>, <c>dataset</c>, <c>tokenizer</c>, <c>base_model</c>, <c>checkpoint</c>, <c>trained</c>, <c>feature_view</c>.</param>
public sealed record LineageEdgeRecord(string FromKind, string FromId, string ToKind, string ToId, string Relation);

/// <summary>The kinds of artifact the lineage graph knows, as the API names them.</summary>
public static class LineageKinds
{
    /// <summary>An uploaded file.</summary>
    public const string File = "file";

    /// <summary>A dataset version.</summary>
    public const string Dataset = "dataset";

    /// <summary>A fine-tuning job.</summary>
    public const string Job = "job";

    /// <summary>A job's checkpoint.</summary>
    public const string Checkpoint = "checkpoint";

    /// <summary>A base or fine-tuned model.</summary>
    public const string Model = "model";

    /// <summary>A vector collection.</summary>
    public const string Collection = "collection";

    /// <summary>A feature view version.</summary>
    public const string FeatureView = "feature_view";

    /// <summary>A materialised training set.</summary>
    public const string TrainingSet = "training_set";

    /// <summary>A serving replica that may serve a model.</summary>
    public const string Replica = "replica";

    /// <summary>The kinds a lineage query may start from.</summary>
    public static IReadOnlyList<string> Queryable { get; } = [File, Dataset, Job, Checkpoint, Model, Collection, FeatureView, TrainingSet];
}
