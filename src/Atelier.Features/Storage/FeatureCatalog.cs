using System.Text.Json;
using System.Text.Json.Serialization;
using Atelier.Catalog;
using Atelier.Features.Materialization;
using Atelier.Features.Schema;

namespace Atelier.Features.Storage;

/// <summary>
/// The feature store's metadata (view versions, the segments of each view's log, materialised
/// training sets) over the catalog's <see cref="IFeatureRepository"/>: maps the domain types to the
/// catalog's records, whose definitions and manifests are this class's JSON.
/// Feature values themselves never live here: they are in Parquet blobs written through the placement guard.
/// </summary>
public sealed class FeatureCatalog
{
    private readonly IFeatureRepository _repository;

    /// <summary>Uses <paramref name="repository"/> for every read and write.</summary>
    public FeatureCatalog(IFeatureRepository repository)
    {
        ArgumentNullException.ThrowIfNull(repository);
        _repository = repository;
    }

    /// <summary>The JSON form of stored definitions and manifests: snake_case, enums as strings.</summary>
    public static JsonSerializerOptions Json { get; } = new(JsonSerializerDefaults.Web)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>Inserts a view version; false when that (workspace, name, version) already exists.</summary>
    public Task<bool> TryInsertViewAsync(FeatureView view, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(view);
        return _repository.TryInsertViewAsync(
            new FeatureViewRecord(view.Id, view.Workspace, view.Name, view.Version, JsonSerializer.Serialize(view, Json), view.CreatedAt),
            cancellationToken);
    }

    /// <summary>The view <paramref name="name"/> at <paramref name="version"/>, or its latest version when null.</summary>
    public async Task<FeatureView?> FindViewAsync(string workspace, string name, int? version, CancellationToken cancellationToken = default) =>
        await _repository.FindViewAsync(workspace, name, version, cancellationToken).ConfigureAwait(false) is { } record ? View(record) : null;

    /// <summary>Every view version of a workspace (all workspaces when null), by name then version.</summary>
    public async Task<List<FeatureView>> ListViewsAsync(string? workspace, CancellationToken cancellationToken = default)
    {
        var records = await _repository.ListViewsAsync(workspace, cancellationToken).ConfigureAwait(false);
        var views = new List<FeatureView>(records.Count);
        foreach (var record in records)
        {
            views.Add(View(record));
        }

        return views;
    }

    /// <summary>The next segment number of a view's log.</summary>
    public Task<long> NextSegmentSeqAsync(string viewId, CancellationToken cancellationToken = default) =>
        _repository.NextSegmentSeqAsync(viewId, cancellationToken);

    /// <summary>Records a committed segment; false when its number is taken. The blob is committed first, the row last, so a crash never leaves a row without bytes.</summary>
    public Task<bool> TryInsertSegmentAsync(FeatureSegment segment, CancellationToken cancellationToken = default) =>
        _repository.TryInsertSegmentAsync(segment, cancellationToken);

    /// <summary>The segments of a view's log in order, optionally only those after <paramref name="afterSeq"/>.</summary>
    public Task<IReadOnlyList<FeatureSegment>> SegmentsAsync(string viewId, long afterSeq = 0, CancellationToken cancellationToken = default) =>
        _repository.ListSegmentsAsync(viewId, afterSeq, cancellationToken);

    /// <summary>The next version number of training set <paramref name="name"/>.</summary>
    public Task<int> NextTrainingSetVersionAsync(string workspace, string name, CancellationToken cancellationToken = default) =>
        _repository.NextTrainingSetVersionAsync(workspace, name, cancellationToken);

    /// <summary>Records a materialised training set, after its blobs are committed; false when its (name, version) is taken.</summary>
    public Task<bool> TryInsertTrainingSetAsync(string workspace, TrainingSetManifest manifest, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        return _repository.TryInsertTrainingSetAsync(
            new TrainingSetRecord(manifest.Id, workspace, manifest.Name, manifest.Version, JsonSerializer.Serialize(manifest, Json), manifest.CreatedAt),
            cancellationToken);
    }

    /// <summary>A training set's manifest, or null.</summary>
    public async Task<TrainingSetManifest?> FindTrainingSetAsync(string workspace, string id, CancellationToken cancellationToken = default) =>
        await _repository.FindTrainingSetAsync(workspace, id, cancellationToken).ConfigureAwait(false) is { } record ? Manifest(record) : null;

    /// <summary>Training sets of a workspace, newest first.</summary>
    public async Task<List<TrainingSetManifest>> ListTrainingSetsAsync(string workspace, CancellationToken cancellationToken = default)
    {
        var records = await _repository.ListTrainingSetsAsync(workspace, cancellationToken).ConfigureAwait(false);
        var manifests = new List<TrainingSetManifest>(records.Count);
        foreach (var record in records)
        {
            manifests.Add(Manifest(record));
        }

        return manifests;
    }

    private static FeatureView View(FeatureViewRecord record) => JsonSerializer.Deserialize<FeatureView>(record.Definition, Json)!;

    private static TrainingSetManifest Manifest(TrainingSetRecord record) => JsonSerializer.Deserialize<TrainingSetManifest>(record.Manifest, Json)!;
}
