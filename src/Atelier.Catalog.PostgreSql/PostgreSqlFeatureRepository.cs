using Npgsql;

namespace Atelier.Catalog.PostgreSql;

/// <summary>
/// The feature store's metadata in the PostgreSQL catalog: the tables <c>feature_views</c>,
/// <c>feature_segments</c> and <c>feature_training_sets</c> of catalog migration 3. An insert that
/// loses a race on a key (two nodes committing segment 7 of one view) returns false, as a taken key
/// does, so the caller numbers again.
/// </summary>
public sealed class PostgreSqlFeatureRepository(PostgreSqlDatabase database) : IFeatureRepository
{
    private const string ViewColumns = "id, workspace_id, name, version, definition, created_at";
    private const string TrainingSetColumns = "id, workspace_id, name, version, manifest, created_at";

    /// <inheritdoc />
    public async Task<bool> TryInsertViewAsync(FeatureViewRecord view, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(view);
        return await database.ExecuteAsync(
            $"INSERT INTO feature_views({ViewColumns}) VALUES (@id, @w, @n, @v, @d, @c) ON CONFLICT DO NOTHING",
            cancellationToken,
            ("id", view.Id), ("w", view.WorkspaceId), ("n", view.Name), ("v", view.Version),
            ("d", view.Definition), ("c", view.CreatedAt.ToUnixTimeMilliseconds())).ConfigureAwait(false) == 1;
    }

    /// <inheritdoc />
    public async Task<FeatureViewRecord?> FindViewAsync(string workspaceId, string name, int? version, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(workspaceId);
        ArgumentNullException.ThrowIfNull(name);
        return (await database.QueryAsync(
            version is null
                ? $"SELECT {ViewColumns} FROM feature_views WHERE workspace_id = @w AND name = @n ORDER BY version DESC LIMIT 1"
                : $"SELECT {ViewColumns} FROM feature_views WHERE workspace_id = @w AND name = @n AND version = @v",
            ReadView,
            cancellationToken,
            ("w", workspaceId), ("n", name), ("v", version ?? 0)).ConfigureAwait(false)).FirstOrDefault();
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<FeatureViewRecord>> ListViewsAsync(string? workspaceId, CancellationToken cancellationToken = default) =>
        await database.QueryAsync(
            workspaceId is null
                ? $"SELECT {ViewColumns} FROM feature_views ORDER BY workspace_id, name, version"
                : $"SELECT {ViewColumns} FROM feature_views WHERE workspace_id = @w ORDER BY name, version",
            ReadView,
            cancellationToken,
            ("w", workspaceId ?? "")).ConfigureAwait(false);

    /// <inheritdoc />
    public async Task<long> NextSegmentSeqAsync(string viewId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(viewId);
        return (await database.QueryAsync("SELECT COALESCE(MAX(seq), 0) + 1 FROM feature_segments WHERE view_id = @v", static r => r.GetInt64(0), cancellationToken, ("v", viewId)).ConfigureAwait(false))[0];
    }

    /// <inheritdoc />
    public async Task<bool> TryInsertSegmentAsync(FeatureSegment segment, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(segment);
        return await database.ExecuteAsync(
            """
            INSERT INTO feature_segments(view_id, seq, location_id, blob_key, rows, bytes, sha256, min_event, max_event, source, created_at)
            VALUES (@v, @s, @l, @k, @r, @b, @h, @min, @max, @src, @c)
            ON CONFLICT DO NOTHING
            """,
            cancellationToken,
            ("v", segment.ViewId), ("s", segment.Seq), ("l", segment.LocationId), ("k", segment.BlobKey), ("r", segment.Rows),
            ("b", segment.Bytes), ("h", segment.Sha256), ("min", segment.MinEventTime.UtcTicks), ("max", segment.MaxEventTime.UtcTicks),
            ("src", segment.Source), ("c", segment.CreatedAt.ToUnixTimeMilliseconds())).ConfigureAwait(false) == 1;
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<FeatureSegment>> ListSegmentsAsync(string viewId, long afterSeq = 0, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(viewId);
        return await database.QueryAsync(
            """
            SELECT seq, location_id, blob_key, rows, bytes, sha256, min_event, max_event, source, created_at
            FROM feature_segments WHERE view_id = @v AND seq > @a ORDER BY seq
            """,
            r => new FeatureSegment(
                viewId, r.GetInt64(0), r.GetString(1), r.GetString(2), r.GetInt64(3), r.GetInt64(4), r.GetString(5),
                new DateTimeOffset(r.GetInt64(6), TimeSpan.Zero), new DateTimeOffset(r.GetInt64(7), TimeSpan.Zero),
                r.GetString(8), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(9))),
            cancellationToken,
            ("v", viewId), ("a", afterSeq)).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<int> NextTrainingSetVersionAsync(string workspaceId, string name, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(workspaceId);
        ArgumentNullException.ThrowIfNull(name);
        return (await database.QueryAsync(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM feature_training_sets WHERE workspace_id = @w AND name = @n",
            static r => r.GetInt32(0),
            cancellationToken,
            ("w", workspaceId), ("n", name)).ConfigureAwait(false))[0];
    }

    /// <inheritdoc />
    public async Task<bool> TryInsertTrainingSetAsync(TrainingSetRecord trainingSet, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(trainingSet);
        return await database.ExecuteAsync(
            $"INSERT INTO feature_training_sets({TrainingSetColumns}) VALUES (@id, @w, @n, @v, @m, @c) ON CONFLICT DO NOTHING",
            cancellationToken,
            ("id", trainingSet.Id), ("w", trainingSet.WorkspaceId), ("n", trainingSet.Name), ("v", trainingSet.Version),
            ("m", trainingSet.Manifest), ("c", trainingSet.CreatedAt.ToUnixTimeMilliseconds())).ConfigureAwait(false) == 1;
    }

    /// <inheritdoc />
    public async Task<TrainingSetRecord?> FindTrainingSetAsync(string workspaceId, string id, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(workspaceId);
        ArgumentNullException.ThrowIfNull(id);
        return (await database.QueryAsync(
            $"SELECT {TrainingSetColumns} FROM feature_training_sets WHERE workspace_id = @w AND id = @id",
            ReadTrainingSet,
            cancellationToken,
            ("w", workspaceId), ("id", id)).ConfigureAwait(false)).FirstOrDefault();
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<TrainingSetRecord>> ListTrainingSetsAsync(string workspaceId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(workspaceId);
        return await database.QueryAsync(
            $"SELECT {TrainingSetColumns} FROM feature_training_sets WHERE workspace_id = @w ORDER BY created_at DESC, name, version DESC",
            ReadTrainingSet,
            cancellationToken,
            ("w", workspaceId)).ConfigureAwait(false);
    }

    private static FeatureViewRecord ReadView(NpgsqlDataReader r) =>
        new(r.GetString(0), r.GetString(1), r.GetString(2), r.GetInt32(3), r.GetString(4), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(5)));

    private static TrainingSetRecord ReadTrainingSet(NpgsqlDataReader r) =>
        new(r.GetString(0), r.GetString(1), r.GetString(2), r.GetInt32(3), r.GetString(4), DateTimeOffset.FromUnixTimeMilliseconds(r.GetInt64(5)));
}
