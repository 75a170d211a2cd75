using System.Globalization;
using Microsoft.Data.Sqlite;
using System.Text.Json;
using System.Text.Json.Serialization;
using Atelier.Catalog;
using Atelier.Catalog.Sqlite;
using Atelier.Features.Materialization;
using Atelier.Features.Schema;

namespace Atelier.Features.Storage;

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
/// <param name="CreatedAt">When it was committed.</param>
public sealed record FeatureSegment(
    string ViewId, long Seq, string LocationId, string BlobKey, long Rows, long Bytes, string Sha256,
    DateTimeOffset MinEventTime, DateTimeOffset MaxEventTime, string Source, DateTimeOffset CreatedAt);

/// <summary>
/// The feature store's metadata: view versions, the segments of each view's log, and materialised
/// training sets. The tables live in the catalog database and are created by its numbered migration 3.
/// Feature values themselves never live here: they are in Parquet blobs written through the placement guard.
/// </summary>
public sealed class FeatureCatalog
{
    private readonly CatalogDatabase _catalog;

    /// <summary>Uses the feature tables of <paramref name="catalog"/> (already migrated when it was opened).</summary>
    public FeatureCatalog(CatalogDatabase catalog)
    {
        ArgumentNullException.ThrowIfNull(catalog);
        _catalog = catalog;
    }

    /// <summary>The JSON form of stored definitions and manifests: snake_case, enums as strings.</summary>
    public static JsonSerializerOptions Json { get; } = new(JsonSerializerDefaults.Web)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>Inserts a view version; false when that (workspace, name, version) already exists.</summary>
    public bool TryInsertView(FeatureView view)
    {
        ArgumentNullException.ThrowIfNull(view);
        return _catalog.Execute(
            "INSERT OR IGNORE INTO feature_views(id, workspace_id, name, version, definition, created_at) VALUES ($id, $w, $n, $v, $d, $c)",
            ("$id", view.Id), ("$w", view.Workspace), ("$n", view.Name), ("$v", view.Version),
            ("$d", JsonSerializer.Serialize(view, Json)), ("$c", view.CreatedAt.ToUnixTimeMilliseconds())) == 1;
    }

    /// <summary>The view <paramref name="name"/> at <paramref name="version"/>, or its latest version when null.</summary>
    public FeatureView? FindView(string workspace, string name, int? version) => _catalog.Query(
        version is null
            ? "SELECT definition FROM feature_views WHERE workspace_id = $w AND name = $n ORDER BY version DESC LIMIT 1"
            : "SELECT definition FROM feature_views WHERE workspace_id = $w AND name = $n AND version = $v",
        Definition<FeatureView>,
        ("$w", workspace), ("$n", name), ("$v", version ?? 0)).FirstOrDefault();

    /// <summary>Every view version of a workspace (all workspaces when null), by name then version.</summary>
    public List<FeatureView> ListViews(string? workspace) => _catalog.Query(
        workspace is null
            ? "SELECT definition FROM feature_views ORDER BY workspace_id, name, version"
            : "SELECT definition FROM feature_views WHERE workspace_id = $w ORDER BY name, version",
        Definition<FeatureView>,
        ("$w", workspace ?? ""));

    /// <summary>The next segment number of a view's log.</summary>
    public long NextSegmentSeq(string viewId) =>
        _catalog.Query("SELECT COALESCE(MAX(seq), 0) + 1 FROM feature_segments WHERE view_id = $v", r => r.GetInt64(0), ("$v", viewId))[0];

    /// <summary>Records a committed segment. The blob is committed first, the row last, so a crash never leaves a row without bytes.</summary>
    public void InsertSegment(FeatureSegment segment)
    {
        ArgumentNullException.ThrowIfNull(segment);
        _catalog.Execute(
            """
            INSERT INTO feature_segments(view_id, seq, location_id, blob_key, rows, bytes, sha256, min_event, max_event, source, created_at)
            VALUES ($v, $s, $l, $k, $r, $b, $h, $min, $max, $src, $c)
            """,
            ("$v", segment.ViewId), ("$s", segment.Seq), ("$l", segment.LocationId), ("$k", segment.BlobKey), ("$r", segment.Rows),
            ("$b", segment.Bytes), ("$h", segment.Sha256), ("$min", segment.MinEventTime.UtcTicks), ("$max", segment.MaxEventTime.UtcTicks),
            ("$src", segment.Source), ("$c", segment.CreatedAt.ToUnixTimeMilliseconds()));
    }

    /// <summary>The segments of a view's log in order, optionally only those after <paramref name="afterSeq"/>.</summary>
    public List<FeatureSegment> Segments(string viewId, long afterSeq = 0) => _catalog.Query(
        """
        SELECT seq, location_id, blob_key, rows, bytes, sha256, min_event, max_event, source, created_at
        FROM feature_segments WHERE view_id = $v AND seq > $a ORDER BY seq
        """,
        r => new FeatureSegment(
            viewId, r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetInt64(3), r.GetInt64(4), r.GetString(5),
            new DateTimeOffset(r.GetInt64(6), TimeSpan.Zero), new DateTimeOffset(r.GetInt64(7), TimeSpan.Zero),
            r.GetString(8), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(9))),
        ("$v", viewId), ("$a", afterSeq));

    /// <summary>The next version number of training set <paramref name="name"/>.</summary>
    public int NextTrainingSetVersion(string workspace, string name) => _catalog.Query(
        "SELECT COALESCE(MAX(version), 0) + 1 FROM feature_training_sets WHERE workspace_id = $w AND name = $n",
        r => r.GetInt32(0),
        ("$w", workspace), ("$n", name))[0];

    /// <summary>Records a materialised training set, after its blobs are committed.</summary>
    public void InsertTrainingSet(string workspace, TrainingSetManifest manifest)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        _catalog.Execute(
            "INSERT INTO feature_training_sets(id, workspace_id, name, version, manifest, created_at) VALUES ($id, $w, $n, $v, $m, $c)",
            ("$id", manifest.Id), ("$w", workspace), ("$n", manifest.Name), ("$v", manifest.Version),
            ("$m", JsonSerializer.Serialize(manifest, Json)), ("$c", manifest.CreatedAt.ToUnixTimeMilliseconds()));
    }

    /// <summary>A training set's manifest, or null.</summary>
    public TrainingSetManifest? FindTrainingSet(string workspace, string id) => _catalog.Query(
        "SELECT manifest FROM feature_training_sets WHERE workspace_id = $w AND id = $id",
        Definition<TrainingSetManifest>,
        ("$w", workspace), ("$id", id)).FirstOrDefault();

    /// <summary>Training sets of a workspace, newest first.</summary>
    public List<TrainingSetManifest> ListTrainingSets(string workspace) => _catalog.Query(
        "SELECT manifest FROM feature_training_sets WHERE workspace_id = $w ORDER BY created_at DESC, name, version DESC",
        Definition<TrainingSetManifest>,
        ("$w", workspace));

    // Views and training sets are stored as their JSON definition in the first column.
    private static T Definition<T>(SqliteDataReader reader) => JsonSerializer.Deserialize<T>(reader.GetString(0), Json)!;
}
