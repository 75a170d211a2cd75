using Atelier.Core.Errors;
using Microsoft.Data.Sqlite;

namespace Atelier.Catalog.Sqlite;

/// <summary>
/// Lineage in the SQLite catalog: which dataset versions and jobs name an artifact as an input,
/// read from their stored requests with <c>json_each</c>/<c>json_extract</c> (see
/// <see cref="ILineageRepository"/> for the fields).
/// </summary>
public sealed class SqliteLineageRepository(CatalogDatabase database) : ILineageRepository
{
    /// <inheritdoc />
    public Task<IReadOnlyList<DerivedArtifact>> DerivedFromFileAsync(string workspaceId, string fileId, CancellationToken cancellationToken = default) =>
        database.RunAsync(connection => DerivedFromFileAsync(connection, null, workspaceId, fileId, cancellationToken), cancellationToken);

    /// <inheritdoc />
    public Task<IReadOnlyList<DerivedArtifact>> DerivedFromDatasetAsync(string workspaceId, string datasetId, CancellationToken cancellationToken = default) =>
        database.RunAsync(connection => DerivedFromDatasetAsync(connection, null, workspaceId, datasetId, cancellationToken), cancellationToken);

    /// <inheritdoc />
    public async Task<IReadOnlyList<DerivedArtifact>> PendingFromCheckpointAsync(string workspaceId, string jobId, long step, CancellationToken cancellationToken = default) =>
        await database.QueryAsync(LineageSql.PendingFromCheckpoint, LineageSql.Read, cancellationToken, ("$ws", workspaceId), ("$job", jobId), ("$step", step)).ConfigureAwait(false);

    /// <inheritdoc />
    public async Task<IReadOnlyList<LineageNodeRecord>> NodesAsync(string workspaceId, CancellationToken cancellationToken = default) =>
        await database.QueryAsync(LineageSql.Nodes, LineageSql.ReadNode, cancellationToken, ("$ws", workspaceId)).ConfigureAwait(false);

    /// <inheritdoc />
    public async Task<IReadOnlyList<LineageEdgeRecord>> EdgesAsync(string workspaceId, CancellationToken cancellationToken = default) =>
        await database.QueryAsync(LineageSql.Edges, LineageSql.ReadEdge, cancellationToken, ("$ws", workspaceId)).ConfigureAwait(false);

    /// <summary>The same, inside the caller's transaction (a deletion's).</summary>
    internal static async Task<IReadOnlyList<DerivedArtifact>> DerivedFromFileAsync(SqliteConnection connection, SqliteTransaction? transaction, string workspaceId, string fileId, CancellationToken cancellationToken)
    {
        await using var command = CatalogDatabase.Command(connection, transaction, LineageSql.FromFile, ("$ws", workspaceId), ("$id", fileId));
        return await CatalogDatabase.ReadAllAsync(command, LineageSql.Read, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The same, inside the caller's transaction (a deletion's).</summary>
    internal static async Task<IReadOnlyList<DerivedArtifact>> DerivedFromDatasetAsync(SqliteConnection connection, SqliteTransaction? transaction, string workspaceId, string datasetId, CancellationToken cancellationToken)
    {
        await using var command = CatalogDatabase.Command(connection, transaction, LineageSql.FromDataset, ("$ws", workspaceId), ("$id", datasetId));
        return await CatalogDatabase.ReadAllAsync(command, LineageSql.Read, cancellationToken).ConfigureAwait(false);
    }
}

/// <summary>
/// Lineage queries for code that runs its own SQLite statements in a transaction of its own (the
/// model registry's deletion), until it moves behind a repository.
/// </summary>
public static class LineageCatalog
{
    /// <summary>
    /// The dataset versions (built with its tokeniser or embeddings) and jobs (trained on it) that use
    /// the model known by <paramref name="names"/> (its id and aliases), in <paramref name="workspaceId"/>
    /// or, when null, in every workspace (a base model is shared by all).
    /// </summary>
    public static IReadOnlyList<DerivedArtifact> DerivedFromModel(SqliteConnection connection, SqliteTransaction? transaction, string? workspaceId, IReadOnlyCollection<string> names)
    {
        ArgumentNullException.ThrowIfNull(connection);
        using var command = CatalogDatabase.Command(connection, transaction, LineageSql.FromModel, ("$ws", workspaceId), ("$names", System.Text.Json.JsonSerializer.Serialize(names)));
        return CatalogDatabase.ReadAll(command, LineageSql.Read);
    }
}

/// <summary>The SQL of lineage, in one place.</summary>
internal static class LineageSql
{
    // A dataset whose request names file $id as an input.
    private const string DatasetUsesFile = """
        EXISTS (SELECT 1 FROM json_each(d.request_json, '$.training_files') f WHERE f.value = $id)
        OR EXISTS (SELECT 1 FROM json_each(d.request_json, '$.validation_files') f WHERE f.value = $id)
        OR EXISTS (SELECT 1 FROM json_each(d.request_json, '$.eval_files') f WHERE f.value = $id)
        """;

    // Jobs name training files as objects ({"file_id", "weight"}); the CASE keeps json_extract off
    // anything that is not an object.
    public const string FromFile = $"""
        SELECT 'dataset', d.id, d.created_at FROM datasets d
        WHERE d.workspace_id = $ws AND ({DatasetUsesFile})
        UNION ALL
        SELECT 'fine_tuning_job', j.id, j.created_at FROM fine_tuning_jobs j
        WHERE j.workspace_id = $ws AND (
            EXISTS (SELECT 1 FROM json_each(j.request_json, '$.training_files') f
                    WHERE CASE WHEN f.type = 'object' THEN json_extract(f.value, '$.file_id') END = $id)
            OR EXISTS (SELECT 1 FROM json_each(j.request_json, '$.validation_files') f WHERE f.value = $id)
            OR json_extract(j.request_json, '$.dataset_id') IN (SELECT d.id FROM datasets d WHERE d.workspace_id = $ws AND ({DatasetUsesFile})))
        ORDER BY 3, 2
        """;

    public const string FromDataset = """
        SELECT 'dataset', d.id, d.created_at FROM datasets d
        WHERE d.workspace_id = $ws AND d.id <> $id
          AND (json_extract(d.request_json, '$.source_dataset') = $id OR json_extract(d.request_json, '$.eval_dataset') = $id)
        UNION ALL
        SELECT 'fine_tuning_job', j.id, j.created_at FROM fine_tuning_jobs j
        WHERE j.workspace_id = $ws AND json_extract(j.request_json, '$.dataset_id') = $id
        ORDER BY 3, 2
        """;

    // $names is a JSON array of the model's id and aliases, since a dataset stores the name it was asked with.
    public const string FromModel = """
        SELECT 'dataset', d.id, d.created_at FROM datasets d
        WHERE ($ws IS NULL OR d.workspace_id = $ws) AND json_extract(d.request_json, '$.model') IN (SELECT value FROM json_each($names))
        UNION ALL
        SELECT 'fine_tuning_job', j.id, j.created_at FROM fine_tuning_jobs j
        WHERE ($ws IS NULL OR j.workspace_id = $ws) AND j.model IN (SELECT value FROM json_each($names))
        ORDER BY 3, 2
        """;

    // A policy stored as a name, or as a policy object with its name (a training set's manifest).
    private const string ManifestPolicy = "COALESCE(CASE json_type(t.manifest, '$.policy') WHEN 'object' THEN json_extract(t.manifest, '$.policy.name') ELSE json_extract(t.manifest, '$.policy') END, 'default')";

    // Feature views and training sets keep their times in milliseconds; the graph shows seconds.
    public const string Nodes = $$"""
        SELECT 'file', f.id, f.filename, NULL, f.created_at, f.policy, json_array(f.location_id), NULL
        FROM files f WHERE f.workspace_id = $ws
        UNION ALL
        SELECT 'dataset', d.id, d.name, d.status, d.created_at, d.policy, json_array(d.location_id), NULL
        FROM datasets d WHERE d.workspace_id = $ws
        UNION ALL
        SELECT 'job', j.id, j.suffix, j.status, j.created_at, j.policy, json_array(j.location_id), NULL
        FROM fine_tuning_jobs j WHERE j.workspace_id = $ws
        UNION ALL
        SELECT 'checkpoint', c.checkpoint_id, 'step ' || c.step_number, CASE WHEN c.retained THEN 'retained' ELSE 'deleted' END,
               c.created_at, j.policy, '[]', j.id
        FROM fine_tuning_job_checkpoints c JOIN fine_tuning_jobs j ON j.id = c.job_id WHERE j.workspace_id = $ws
        UNION ALL
        SELECT 'collection', v.id, v.name, NULL, v.created_at, v.policy, COALESCE(json_extract(v.config_json, '$.locations'), '[]'), NULL
        FROM vector_collections v WHERE v.workspace_id = $ws
        UNION ALL
        SELECT 'feature_view', fv.id, fv.name || ' v' || fv.version, NULL, fv.created_at / 1000,
               COALESCE(json_extract(fv.definition, '$.policy'), 'default'),
               (SELECT json_group_array(DISTINCT s.location_id) FROM feature_segments s WHERE s.view_id = fv.id), NULL
        FROM feature_views fv WHERE fv.workspace_id = $ws
        UNION ALL
        SELECT 'training_set', t.id, t.name || ' v' || t.version, NULL, t.created_at / 1000, {{ManifestPolicy}},
               CASE WHEN json_extract(t.manifest, '$.location') IS NULL THEN '[]' ELSE json_array(json_extract(t.manifest, '$.location')) END, NULL
        FROM feature_training_sets t WHERE t.workspace_id = $ws
        """;

    // Every input each derived artifact of the workspace names: the same fields as FromFile,
    // FromDataset and FromModel read, plus each job's checkpoints and model, each fine-tuned model's
    // base and final checkpoint, and each training set's feature views.
    public const string Edges = """
        SELECT 'file', f.value, 'dataset', d.id, 'training_file' FROM datasets d, json_each(d.request_json, '$.training_files') f WHERE d.workspace_id = $ws
        UNION ALL
        SELECT 'file', f.value, 'dataset', d.id, 'validation_file' FROM datasets d, json_each(d.request_json, '$.validation_files') f WHERE d.workspace_id = $ws
        UNION ALL
        SELECT 'file', f.value, 'dataset', d.id, 'eval_file' FROM datasets d, json_each(d.request_json, '$.eval_files') f WHERE d.workspace_id = $ws
        UNION ALL
        SELECT 'dataset', json_extract(d.request_json, '$.source_dataset'), 'dataset', d.id, 'source_dataset' FROM datasets d
        WHERE d.workspace_id = $ws AND json_extract(d.request_json, '$.source_dataset') IS NOT NULL
        UNION ALL
        SELECT 'dataset', json_extract(d.request_json, '$.eval_dataset'), 'dataset', d.id, 'eval_dataset' FROM datasets d
        WHERE d.workspace_id = $ws AND json_extract(d.request_json, '$.eval_dataset') IS NOT NULL
        UNION ALL
        SELECT 'model', json_extract(d.request_json, '$.model'), 'dataset', d.id, 'tokenizer' FROM datasets d
        WHERE d.workspace_id = $ws AND json_extract(d.request_json, '$.model') IS NOT NULL
        UNION ALL
        SELECT 'file', json_extract(f.value, '$.file_id'), 'job', j.id, 'training_file' FROM fine_tuning_jobs j, json_each(j.request_json, '$.training_files') f
        WHERE j.workspace_id = $ws AND f.type = 'object' AND json_extract(f.value, '$.file_id') IS NOT NULL
        UNION ALL
        SELECT 'file', f.value, 'job', j.id, 'validation_file' FROM fine_tuning_jobs j, json_each(j.request_json, '$.validation_files') f
        WHERE j.workspace_id = $ws AND f.type = 'text'
        UNION ALL
        SELECT 'dataset', json_extract(j.request_json, '$.dataset_id'), 'job', j.id, 'dataset' FROM fine_tuning_jobs j
        WHERE j.workspace_id = $ws AND json_extract(j.request_json, '$.dataset_id') IS NOT NULL
        UNION ALL
        SELECT 'model', j.model, 'job', j.id, 'base_model' FROM fine_tuning_jobs j WHERE j.workspace_id = $ws
        UNION ALL
        SELECT 'job', c.job_id, 'checkpoint', c.checkpoint_id, 'checkpoint' FROM fine_tuning_job_checkpoints c JOIN fine_tuning_jobs j ON j.id = c.job_id
        WHERE j.workspace_id = $ws
        UNION ALL
        SELECT 'job', m.job_id, 'model', m.id, 'trained' FROM models m WHERE m.workspace_id = $ws AND m.job_id IS NOT NULL
        UNION ALL
        SELECT 'checkpoint', json_extract(m.lineage_json, '$.checkpoint_id'), 'model', m.id, 'final_checkpoint' FROM models m
        WHERE m.workspace_id = $ws AND json_extract(m.lineage_json, '$.checkpoint_id') IS NOT NULL
        UNION ALL
        SELECT 'model', m.root, 'model', m.id, 'base_model' FROM models m WHERE m.workspace_id = $ws AND m.root IS NOT NULL
        UNION ALL
        SELECT 'feature_view', json_extract(s.value, '$.view_id'), 'training_set', t.id, 'feature_view' FROM feature_training_sets t, json_each(t.manifest, '$.sources') s
        WHERE t.workspace_id = $ws AND json_extract(s.value, '$.view_id') IS NOT NULL
        """;

    // A restore's start_from ({"job_id", "step"}) in a job that has not finished.
    public const string PendingFromCheckpoint = """
        SELECT 'fine_tuning_job', j.id, j.created_at FROM fine_tuning_jobs j
        WHERE j.workspace_id = $ws AND json_extract(j.request_json, '$.start_from.job_id') = $job
          AND json_extract(j.request_json, '$.start_from.step') = $step
          AND j.status NOT IN ('SUCCESS', 'FAILED', 'FAILED_VALIDATION', 'CANCELLED')
        ORDER BY 3, 2
        """;

    public static DerivedArtifact Read(SqliteDataReader r) => new(r.GetString(0), r.GetString(1));

    public static LineageNodeRecord ReadNode(SqliteDataReader r) => new(
        r.GetString(0),
        r.GetString(1),
        r.IsDBNull(2) ? null : r.GetString(2),
        r.IsDBNull(3) ? null : r.GetString(3),
        r.GetInt64(4),
        r.GetString(5),
        r.IsDBNull(6) ? [] : [.. (System.Text.Json.JsonSerializer.Deserialize<string?[]>(r.GetString(6)) ?? []).OfType<string>()],
        r.IsDBNull(7) ? null : r.GetString(7));

    public static LineageEdgeRecord ReadEdge(SqliteDataReader r) => new(r.GetString(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetString(4));
}
