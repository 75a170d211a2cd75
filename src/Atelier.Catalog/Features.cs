namespace Atelier.Catalog;

/// <summary>One version of a feature view as the catalog keeps it: its identity and its definition as JSON.</summary>
/// <param name="Id">The view version's id.</param>
/// <param name="WorkspaceId">The owning workspace.</param>
/// <param name="Name">The view name.</param>
/// <param name="Version">The version, from 1; unique per (workspace, name).</param>
/// <param name="Definition">The feature store's JSON form of the whole view (schema, policy, TTL...).</param>
/// <param name="CreatedAt">When it was created (kept to the millisecond).</param>
public sealed record FeatureViewRecord(string Id, string WorkspaceId, string Name, int Version, string Definition, DateTimeOffset CreatedAt);

/// <summary>A committed segment of a view's append-only log: one immutable Parquet blob.</summary>
/// <param name="ViewId">The view version it belongs to.</param>
/// <param name="Seq">Its position in the log, from 1.</param>
/// <param name="LocationId">Where the blob is.</param>
/// <param name="BlobKey">The blob key.</param>
/// <param name="Rows">How many rows.</param>
/// <param name="Bytes">Blob size.</param>
/// <param name="Sha256">Blob hash, as the placement receipt recorded it.</param>
/// <param name="MinEventTime">The earliest event time in it.</param>
/// <param name="MaxEventTime">The latest event time in it.</param>
/// <param name="Source">What it was made from: <c>push</c> or a Parquet file name.</param>
/// <param name="CreatedAt">When it was committed (kept to the millisecond).</param>
public sealed record FeatureSegment(
    string ViewId, long Seq, string LocationId, string BlobKey, long Rows, long Bytes, string Sha256,
    DateTimeOffset MinEventTime, DateTimeOffset MaxEventTime, string Source, DateTimeOffset CreatedAt);

/// <summary>A materialised training set as the catalog keeps it: its identity and its manifest as JSON.</summary>
/// <param name="Id">The training set's id (the id of the dataset version it is).</param>
/// <param name="WorkspaceId">The owning workspace.</param>
/// <param name="Name">Its name.</param>
/// <param name="Version">Its version, from 1; unique per (workspace, name).</param>
/// <param name="Manifest">The feature store's JSON form of its manifest.</param>
/// <param name="CreatedAt">When it was materialised (kept to the millisecond).</param>
public sealed record TrainingSetRecord(string Id, string WorkspaceId, string Name, int Version, string Manifest, DateTimeOffset CreatedAt);

/// <summary>
/// The feature store's metadata: view versions, the segments of each view's log, and materialised
/// training sets. Feature values never live here: they are in Parquet blobs written through the
/// placement guard, and the latest value per key is in the online store (<see cref="IOnlineFeatureRows"/>).
/// </summary>
public interface IFeatureRepository
{
    /// <summary>Inserts a view version; false when its id or its (workspace, name, version) already exists.</summary>
    Task<bool> TryInsertViewAsync(FeatureViewRecord view, CancellationToken cancellationToken = default);

    /// <summary>The view <paramref name="name"/> of the workspace at <paramref name="version"/>, or its latest version when null; null when there is none.</summary>
    Task<FeatureViewRecord?> FindViewAsync(string workspaceId, string name, int? version, CancellationToken cancellationToken = default);

    /// <summary>Every view version of a workspace by name then version; of every workspace (by workspace first) when null.</summary>
    Task<IReadOnlyList<FeatureViewRecord>> ListViewsAsync(string? workspaceId, CancellationToken cancellationToken = default);

    /// <summary>The next segment number of a view's log: one more than its last, 1 for an empty log.</summary>
    Task<long> NextSegmentSeqAsync(string viewId, CancellationToken cancellationToken = default);

    /// <summary>Records a committed segment; false when the view already has a segment with that number.</summary>
    Task<bool> TryInsertSegmentAsync(FeatureSegment segment, CancellationToken cancellationToken = default);

    /// <summary>The segments of a view's log in order of their number, only those after <paramref name="afterSeq"/>.</summary>
    Task<IReadOnlyList<FeatureSegment>> ListSegmentsAsync(string viewId, long afterSeq = 0, CancellationToken cancellationToken = default);

    /// <summary>The next version of training set <paramref name="name"/> in the workspace: 1 when it has none.</summary>
    Task<int> NextTrainingSetVersionAsync(string workspaceId, string name, CancellationToken cancellationToken = default);

    /// <summary>Records a materialised training set; false when its id or its (workspace, name, version) already exists.</summary>
    Task<bool> TryInsertTrainingSetAsync(TrainingSetRecord trainingSet, CancellationToken cancellationToken = default);

    /// <summary>The training set <paramref name="id"/> of the workspace, or null (also when it belongs to another workspace).</summary>
    Task<TrainingSetRecord?> FindTrainingSetAsync(string workspaceId, string id, CancellationToken cancellationToken = default);

    /// <summary>The training sets of a workspace, newest first (then by name, and by version newest first).</summary>
    Task<IReadOnlyList<TrainingSetRecord>> ListTrainingSetsAsync(string workspaceId, CancellationToken cancellationToken = default);
}
