using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Atelier.Catalog;
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
        using var connection = _catalog.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT OR IGNORE INTO feature_views(id, workspace_id, name, version, definition, created_at) VALUES ($id, $w, $n, $v, $d, $c)";
        command.Parameters.AddWithValue("$id", view.Id);
        command.Parameters.AddWithValue("$w", view.Workspace);
        command.Parameters.AddWithValue("$n", view.Name);
        command.Parameters.AddWithValue("$v", view.Version);
        command.Parameters.AddWithValue("$d", JsonSerializer.Serialize(view, Json));
        command.Parameters.AddWithValue("$c", view.CreatedAt.ToUnixTimeMilliseconds());
        return command.ExecuteNonQuery() == 1;
    }

    /// <summary>The view <paramref name="name"/> at <paramref name="version"/>, or its latest version when null.</summary>
    public FeatureView? FindView(string workspace, string name, int? version)
    {
        using var connection = _catalog.Open();
        using var command = connection.CreateCommand();
        command.CommandText = version is null
            ? "SELECT definition FROM feature_views WHERE workspace_id = $w AND name = $n ORDER BY version DESC LIMIT 1"
            : "SELECT definition FROM feature_views WHERE workspace_id = $w AND name = $n AND version = $v";
        command.Parameters.AddWithValue("$w", workspace);
        command.Parameters.AddWithValue("$n", name);
        command.Parameters.AddWithValue("$v", version ?? 0);
        return command.ExecuteScalar() is string json ? JsonSerializer.Deserialize<FeatureView>(json, Json) : null;
    }

    /// <summary>Every view version of a workspace (all workspaces when null), by name then version.</summary>
    public List<FeatureView> ListViews(string? workspace)
    {
        using var connection = _catalog.Open();
        using var command = connection.CreateCommand();
        command.CommandText = workspace is null
            ? "SELECT definition FROM feature_views ORDER BY workspace_id, name, version"
            : "SELECT definition FROM feature_views WHERE workspace_id = $w ORDER BY name, version";
        command.Parameters.AddWithValue("$w", workspace ?? "");
        var result = new List<FeatureView>();
        using var reader = command.ExecuteReader();
        while (reader.Read())
        {
            result.Add(JsonSerializer.Deserialize<FeatureView>(reader.GetString(0), Json)!);
        }

        return result;
    }

    /// <summary>The next segment number of a view's log.</summary>
    public long NextSegmentSeq(string viewId)
    {
        using var connection = _catalog.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT COALESCE(MAX(seq), 0) + 1 FROM feature_segments WHERE view_id = $v";
        command.Parameters.AddWithValue("$v", viewId);
        return Convert.ToInt64(command.ExecuteScalar(), CultureInfo.InvariantCulture);
    }

    /// <summary>Records a committed segment. The blob is committed first, the row last, so a crash never leaves a row without bytes.</summary>
    public void InsertSegment(FeatureSegment segment)
    {
        ArgumentNullException.ThrowIfNull(segment);
        using var connection = _catalog.Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            INSERT INTO feature_segments(view_id, seq, location_id, blob_key, rows, bytes, sha256, min_event, max_event, source, created_at)
            VALUES ($v, $s, $l, $k, $r, $b, $h, $min, $max, $src, $c)
            """;
        command.Parameters.AddWithValue("$v", segment.ViewId);
        command.Parameters.AddWithValue("$s", segment.Seq);
        command.Parameters.AddWithValue("$l", segment.LocationId);
        command.Parameters.AddWithValue("$k", segment.BlobKey);
        command.Parameters.AddWithValue("$r", segment.Rows);
        command.Parameters.AddWithValue("$b", segment.Bytes);
        command.Parameters.AddWithValue("$h", segment.Sha256);
        command.Parameters.AddWithValue("$min", segment.MinEventTime.UtcTicks);
        command.Parameters.AddWithValue("$max", segment.MaxEventTime.UtcTicks);
        command.Parameters.AddWithValue("$src", segment.Source);
        command.Parameters.AddWithValue("$c", segment.CreatedAt.ToUnixTimeMilliseconds());
        command.ExecuteNonQuery();
    }

    /// <summary>The segments of a view's log in order, optionally only those after <paramref name="afterSeq"/>.</summary>
    public List<FeatureSegment> Segments(string viewId, long afterSeq = 0)
    {
        using var connection = _catalog.Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT seq, location_id, blob_key, rows, bytes, sha256, min_event, max_event, source, created_at
            FROM feature_segments WHERE view_id = $v AND seq > $a ORDER BY seq
            """;
        command.Parameters.AddWithValue("$v", viewId);
        command.Parameters.AddWithValue("$a", afterSeq);
        var result = new List<FeatureSegment>();
        using var reader = command.ExecuteReader();
        while (reader.Read())
        {
            result.Add(new FeatureSegment(
                viewId, reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetInt64(3), reader.GetInt64(4), reader.GetString(5),
                new DateTimeOffset(reader.GetInt64(6), TimeSpan.Zero), new DateTimeOffset(reader.GetInt64(7), TimeSpan.Zero),
                reader.GetString(8), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(9))));
        }

        return result;
    }

    /// <summary>The next version number of training set <paramref name="name"/>.</summary>
    public int NextTrainingSetVersion(string workspace, string name)
    {
        using var connection = _catalog.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT COALESCE(MAX(version), 0) + 1 FROM feature_training_sets WHERE workspace_id = $w AND name = $n";
        command.Parameters.AddWithValue("$w", workspace);
        command.Parameters.AddWithValue("$n", name);
        return Convert.ToInt32(command.ExecuteScalar(), CultureInfo.InvariantCulture);
    }

    /// <summary>Records a materialised training set, after its blobs are committed.</summary>
    public void InsertTrainingSet(string workspace, TrainingSetManifest manifest)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        using var connection = _catalog.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "INSERT INTO feature_training_sets(id, workspace_id, name, version, manifest, created_at) VALUES ($id, $w, $n, $v, $m, $c)";
        command.Parameters.AddWithValue("$id", manifest.Id);
        command.Parameters.AddWithValue("$w", workspace);
        command.Parameters.AddWithValue("$n", manifest.Name);
        command.Parameters.AddWithValue("$v", manifest.Version);
        command.Parameters.AddWithValue("$m", JsonSerializer.Serialize(manifest, Json));
        command.Parameters.AddWithValue("$c", manifest.CreatedAt.ToUnixTimeMilliseconds());
        command.ExecuteNonQuery();
    }

    /// <summary>A training set's manifest, or null.</summary>
    public TrainingSetManifest? FindTrainingSet(string workspace, string id)
    {
        using var connection = _catalog.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT manifest FROM feature_training_sets WHERE workspace_id = $w AND id = $id";
        command.Parameters.AddWithValue("$w", workspace);
        command.Parameters.AddWithValue("$id", id);
        return command.ExecuteScalar() is string json ? JsonSerializer.Deserialize<TrainingSetManifest>(json, Json) : null;
    }

    /// <summary>Training sets of a workspace, newest first.</summary>
    public List<TrainingSetManifest> ListTrainingSets(string workspace)
    {
        using var connection = _catalog.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT manifest FROM feature_training_sets WHERE workspace_id = $w ORDER BY created_at DESC, name, version DESC";
        command.Parameters.AddWithValue("$w", workspace);
        var result = new List<TrainingSetManifest>();
        using var reader = command.ExecuteReader();
        while (reader.Read())
        {
            result.Add(JsonSerializer.Deserialize<TrainingSetManifest>(reader.GetString(0), Json)!);
        }

        return result;
    }
}
