using Atelier.Catalog;
using Microsoft.Data.Sqlite;

namespace Atelier.Catalog.Sqlite;

/// <summary>
/// The feature store's metadata in the SQLite catalog: the tables <c>feature_views</c>,
/// <c>feature_segments</c> and <c>feature_training_sets</c> of catalog migration 3.
/// </summary>
public sealed class SqliteFeatureRepository : IFeatureRepository
{
    private const string ViewColumns = "id, workspace_id, name, version, definition, created_at";
    private const string TrainingSetColumns = "id, workspace_id, name, version, manifest, created_at";

    private readonly CatalogDatabase _catalog;

    /// <summary>Uses the feature tables of <paramref name="catalog"/> (already migrated when it was opened).</summary>
    public SqliteFeatureRepository(CatalogDatabase catalog)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        _catalog = catalog;
    }

    /// <inheritdoc />
    public Task<bool> TryInsertViewAsync(FeatureViewRecord view, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(view);
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult(_catalog.Execute(
            $"INSERT OR IGNORE INTO feature_views({ViewColumns}) VALUES ($id, $w, $n, $v, $d, $c)",
            ("$id", view.Id), ("$w", view.WorkspaceId), ("$n", view.Name), ("$v", view.Version),
            ("$d", view.Definition), ("$c", view.CreatedAt.ToUnixTimeMilliseconds())) == 1);
    }

    /// <inheritdoc />
    public Task<FeatureViewRecord?> FindViewAsync(string workspaceId, string name, int? version, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(workspaceId);
        ArgumentNullException.ThrowIfNull(name);
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult(_catalog.Query(
            version is null
                ? $"SELECT {ViewColumns} FROM feature_views WHERE workspace_id = $w AND name = $n ORDER BY version DESC LIMIT 1"
                : $"SELECT {ViewColumns} FROM feature_views WHERE workspace_id = $w AND name = $n AND version = $v",
            ReadView,
            ("$w", workspaceId), ("$n", name), ("$v", version ?? 0)).FirstOrDefault());
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<FeatureViewRecord>> ListViewsAsync(string? workspaceId, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult<IReadOnlyList<FeatureViewRecord>>(_catalog.Query(
            workspaceId is null
                ? $"SELECT {ViewColumns} FROM feature_views ORDER BY workspace_id, name, version"
                : $"SELECT {ViewColumns} FROM feature_views WHERE workspace_id = $w ORDER BY name, version",
            ReadView,
            ("$w", workspaceId ?? "")));
    }

    /// <inheritdoc />
    public Task<long> NextSegmentSeqAsync(string viewId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(viewId);
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult(_catalog.Query("SELECT COALESCE(MAX(seq), 0) + 1 FROM feature_segments WHERE view_id = $v", r => r.GetInt64(0), ("$v", viewId))[0]);
    }

    /// <inheritdoc />
    public Task<bool> TryInsertSegmentAsync(FeatureSegment segment, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(segment);
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult(_catalog.Execute(
            """
            INSERT OR IGNORE INTO feature_segments(view_id, seq, location_id, blob_key, rows, bytes, sha256, min_event, max_event, source, created_at)
            VALUES ($v, $s, $l, $k, $r, $b, $h, $min, $max, $src, $c)
            """,
            ("$v", segment.ViewId), ("$s", segment.Seq), ("$l", segment.LocationId), ("$k", segment.BlobKey), ("$r", segment.Rows),
            ("$b", segment.Bytes), ("$h", segment.Sha256), ("$min", segment.MinEventTime.UtcTicks), ("$max", segment.MaxEventTime.UtcTicks),
            ("$src", segment.Source), ("$c", segment.CreatedAt.ToUnixTimeMilliseconds())) == 1);
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<FeatureSegment>> ListSegmentsAsync(string viewId, long afterSeq = 0, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(viewId);
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult<IReadOnlyList<FeatureSegment>>(_catalog.Query(
            """
            SELECT seq, location_id, blob_key, rows, bytes, sha256, min_event, max_event, source, created_at
            FROM feature_segments WHERE view_id = $v AND seq > $a ORDER BY seq
            """,
            r => new FeatureSegment(
                viewId, r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetInt64(3), r.GetInt64(4), r.GetString(5),
                new DateTimeOffset(r.GetInt64(6), TimeSpan.Zero), new DateTimeOffset(r.GetInt64(7), TimeSpan.Zero),
                r.GetString(8), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(9))),
            ("$v", viewId), ("$a", afterSeq)));
    }

    /// <inheritdoc />
    public Task<int> NextTrainingSetVersionAsync(string workspaceId, string name, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(workspaceId);
        ArgumentNullException.ThrowIfNull(name);
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult(_catalog.Query(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM feature_training_sets WHERE workspace_id = $w AND name = $n",
            r => r.GetInt32(0),
            ("$w", workspaceId), ("$n", name))[0]);
    }

    /// <inheritdoc />
    public Task<bool> TryInsertTrainingSetAsync(TrainingSetRecord trainingSet, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(trainingSet);
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult(_catalog.Execute(
            $"INSERT OR IGNORE INTO feature_training_sets({TrainingSetColumns}) VALUES ($id, $w, $n, $v, $m, $c)",
            ("$id", trainingSet.Id), ("$w", trainingSet.WorkspaceId), ("$n", trainingSet.Name), ("$v", trainingSet.Version),
            ("$m", trainingSet.Manifest), ("$c", trainingSet.CreatedAt.ToUnixTimeMilliseconds())) == 1);
    }

    /// <inheritdoc />
    public Task<TrainingSetRecord?> FindTrainingSetAsync(string workspaceId, string id, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(workspaceId);
        ArgumentNullException.ThrowIfNull(id);
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult(_catalog.Query(
            $"SELECT {TrainingSetColumns} FROM feature_training_sets WHERE workspace_id = $w AND id = $id",
            ReadTrainingSet,
            ("$w", workspaceId), ("$id", id)).FirstOrDefault());
    }

    /// <inheritdoc />
    public Task<IReadOnlyList<TrainingSetRecord>> ListTrainingSetsAsync(string workspaceId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(workspaceId);
        cancellationToken.ThrowIfCancellationRequested();
        return Task.FromResult<IReadOnlyList<TrainingSetRecord>>(_catalog.Query(
            $"SELECT {TrainingSetColumns} FROM feature_training_sets WHERE workspace_id = $w ORDER BY created_at DESC, name, version DESC",
            ReadTrainingSet,
            ("$w", workspaceId)));
    }

    private static FeatureViewRecord ReadView(SqliteDataReader r) =>
        new(r.GetString(0), r.GetString(1), r.GetString(2), r.GetInt32(3), r.GetString(4), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(5)));

    private static TrainingSetRecord ReadTrainingSet(SqliteDataReader r) =>
        new(r.GetString(0), r.GetString(1), r.GetString(2), r.GetInt32(3), r.GetString(4), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(5)));
}
