using System.Text.Json;
using Atelier.Core.Errors;
using Npgsql;

namespace Atelier.Catalog.PostgreSql;

/// <summary>
/// Lineage in the PostgreSQL catalog: which dataset versions and jobs name an artifact as an input,
/// read from their stored requests with <c>jsonb</c> path queries (see <see cref="ILineageRepository"/>
/// for the fields).
/// </summary>
public sealed class PostgreSqlLineageRepository(PostgreSqlDatabase database) : ILineageRepository
{
    // The key of the lineage lock that uses of base models (shared by every workspace) meet on.
    private const string AllWorkspaces = "";

    /// <inheritdoc />
    public Task<IReadOnlyList<DerivedArtifact>> DerivedFromFileAsync(string workspaceId, string fileId, CancellationToken cancellationToken = default) =>
        database.RunAsync(connection => DerivedFromFileAsync(connection, null, workspaceId, fileId, cancellationToken), cancellationToken);

    /// <inheritdoc />
    public Task<IReadOnlyList<DerivedArtifact>> DerivedFromDatasetAsync(string workspaceId, string datasetId, CancellationToken cancellationToken = default) =>
        database.RunAsync(connection => DerivedFromDatasetAsync(connection, null, workspaceId, datasetId, cancellationToken), cancellationToken);

    /// <inheritdoc />
    public async Task<IReadOnlyList<DerivedArtifact>> PendingFromCheckpointAsync(string workspaceId, string jobId, long step, CancellationToken cancellationToken = default) =>
        await database.QueryAsync(LineageSql.PendingFromCheckpoint, LineageSql.Read, cancellationToken, ("ws", workspaceId), ("job", jobId), ("step", step)).ConfigureAwait(false);

    /// <inheritdoc />
    public async Task<IReadOnlyList<LineageNodeRecord>> NodesAsync(string workspaceId, CancellationToken cancellationToken = default) =>
        await database.QueryAsync(LineageSql.Nodes, LineageSql.ReadNode, cancellationToken, ("ws", workspaceId)).ConfigureAwait(false);

    /// <inheritdoc />
    public async Task<IReadOnlyList<LineageEdgeRecord>> EdgesAsync(string workspaceId, CancellationToken cancellationToken = default) =>
        await database.QueryAsync(LineageSql.Edges, LineageSql.ReadEdge, cancellationToken, ("ws", workspaceId)).ConfigureAwait(false);

    /// <summary>The same, inside the caller's transaction (a deletion's).</summary>
    internal static async Task<IReadOnlyList<DerivedArtifact>> DerivedFromFileAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, string workspaceId, string fileId, CancellationToken cancellationToken) =>
        await PostgreSqlDatabase.QueryAsync(connection, transaction, LineageSql.FromFile, LineageSql.Read, cancellationToken, ("ws", workspaceId), ("id", Vars(fileId))).ConfigureAwait(false);

    /// <summary>The same, inside the caller's transaction (a deletion's).</summary>
    internal static async Task<IReadOnlyList<DerivedArtifact>> DerivedFromDatasetAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, string workspaceId, string datasetId, CancellationToken cancellationToken) =>
        await PostgreSqlDatabase.QueryAsync(connection, transaction, LineageSql.FromDataset, LineageSql.Read, cancellationToken, ("ws", workspaceId), ("id", datasetId)).ConfigureAwait(false);

    /// <summary>
    /// The dataset versions and jobs that use the model known by <paramref name="names"/>, in
    /// <paramref name="workspaceId"/> or, when null, in every workspace; inside the caller's transaction.
    /// </summary>
    internal static async Task<IReadOnlyList<DerivedArtifact>> DerivedFromModelAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string? workspaceId, IReadOnlyCollection<string> names, CancellationToken cancellationToken) =>
        await PostgreSqlDatabase.QueryAsync(connection, transaction, LineageSql.FromModel, LineageSql.Read, cancellationToken, ("ws", workspaceId), ("names", names.ToArray())).ConfigureAwait(false);

    /// <summary>
    /// Takes the lineage lock of a writer that records uses (a dataset, a job, a fine-tuned model):
    /// shared on its workspace and on the key of all workspaces, so it runs beside other such writers
    /// but never while a deletion of its workspace, or of a base model, checks for uses.
    /// </summary>
    internal static async Task LockForUseAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string workspaceId, CancellationToken cancellationToken)
    {
        await PostgreSqlDatabase.LockAsync(connection, transaction, CatalogLock.Lineage, AllWorkspaces, shared: true, cancellationToken).ConfigureAwait(false);
        await PostgreSqlDatabase.LockAsync(connection, transaction, CatalogLock.Lineage, workspaceId, shared: true, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Takes the lineage lock of a deletion that checks for uses: exclusive on the workspace, or on
    /// the key of all workspaces when <paramref name="workspaceId"/> is null (a base model).
    /// </summary>
    internal static Task LockForDeleteAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string? workspaceId, CancellationToken cancellationToken) =>
        PostgreSqlDatabase.LockAsync(connection, transaction, CatalogLock.Lineage, workspaceId ?? AllWorkspaces, shared: false, cancellationToken);

    // The id as a jsonpath variable: `@ == $id` compares JSON strings, whatever else the array holds.
    private static string Vars(string id) => JsonSerializer.Serialize(new Dictionary<string, string> { ["id"] = id });
}

/// <summary>The SQL of lineage for PostgreSQL, in one place; the same questions as the SQLite catalog's <c>LineageSql</c>.</summary>
/// <remarks>
/// A jsonpath in lax mode, as these are, reads a missing or mistyped field as nothing rather than an
/// error, as SQLite's <c>json_each</c>/<c>json_extract</c> do: <c>$.training_files[*]</c> yields no
/// element when the field is absent or null.
/// </remarks>
internal static class LineageSql
{
    // A dataset whose request names file @id (a jsonpath variable) as an input.
    private const string DatasetUsesFile = """
        jsonb_path_exists(d.request_json::jsonb, '$.training_files[*] ? (@ == $id)', @id::jsonb)
        OR jsonb_path_exists(d.request_json::jsonb, '$.validation_files[*] ? (@ == $id)', @id::jsonb)
        OR jsonb_path_exists(d.request_json::jsonb, '$.eval_files[*] ? (@ == $id)', @id::jsonb)
        """;

    // Jobs name training files as objects ({"file_id", "weight"}): `.file_id` of a bare string is nothing.
    public const string FromFile = $"""
        SELECT 'dataset', d.id, d.created_at FROM datasets d
        WHERE d.workspace_id = @ws AND ({DatasetUsesFile})
        UNION ALL
        SELECT 'fine_tuning_job', j.id, j.created_at FROM fine_tuning_jobs j
        WHERE j.workspace_id = @ws AND (
            jsonb_path_exists(j.request_json::jsonb, '$.training_files[*] ? (@.type() == "object").file_id ? (@ == $id)', @id::jsonb)
            OR jsonb_path_exists(j.request_json::jsonb, '$.validation_files[*] ? (@ == $id)', @id::jsonb)
            OR j.request_json::jsonb ->> 'dataset_id' IN (SELECT d.id FROM datasets d WHERE d.workspace_id = @ws AND ({DatasetUsesFile})))
        ORDER BY 3, 2
        """;

    public const string FromDataset = """
        SELECT 'dataset', d.id, d.created_at FROM datasets d
        WHERE d.workspace_id = @ws AND d.id <> @id
          AND (d.request_json::jsonb ->> 'source_dataset' = @id OR d.request_json::jsonb ->> 'eval_dataset' = @id)
        UNION ALL
        SELECT 'fine_tuning_job', j.id, j.created_at FROM fine_tuning_jobs j
        WHERE j.workspace_id = @ws AND j.request_json::jsonb ->> 'dataset_id' = @id
        ORDER BY 3, 2
        """;

    // @names holds the model's id and aliases, since a dataset stores the name it was asked with.
    public const string FromModel = """
        SELECT 'dataset', d.id, d.created_at FROM datasets d
        WHERE (@ws::text IS NULL OR d.workspace_id = @ws::text) AND d.request_json::jsonb ->> 'model' = ANY(@names)
        UNION ALL
        SELECT 'fine_tuning_job', j.id, j.created_at FROM fine_tuning_jobs j
        WHERE (@ws::text IS NULL OR j.workspace_id = @ws::text) AND j.model = ANY(@names)
        ORDER BY 3, 2
        """;

    // A policy stored as a name, or as a policy object with its name (a training set's manifest).
    private const string ManifestPolicy = """
        COALESCE(CASE jsonb_typeof(t.manifest::jsonb -> 'policy') WHEN 'object' THEN t.manifest::jsonb -> 'policy' ->> 'name' ELSE t.manifest::jsonb ->> 'policy' END, 'default')
        """;

    // Feature views and training sets keep their times in milliseconds; the graph shows seconds.
    // Locations come back as a JSON array of strings, as the SQLite catalog returns them.
    public const string Nodes = $$"""
        SELECT 'file', f.id, f.filename, NULL, f.created_at, f.policy, jsonb_build_array(f.location_id)::text, NULL
        FROM files f WHERE f.workspace_id = @ws
        UNION ALL
        SELECT 'dataset', d.id, d.name, d.status, d.created_at, d.policy, jsonb_build_array(d.location_id)::text, NULL
        FROM datasets d WHERE d.workspace_id = @ws
        UNION ALL
        SELECT 'job', j.id, j.suffix, j.status, j.created_at, j.policy, jsonb_build_array(j.location_id)::text, NULL
        FROM fine_tuning_jobs j WHERE j.workspace_id = @ws
        UNION ALL
        SELECT 'checkpoint', c.checkpoint_id, 'step ' || c.step_number, CASE WHEN c.retained THEN 'retained' ELSE 'deleted' END,
               c.created_at, j.policy, '[]', j.id
        FROM fine_tuning_job_checkpoints c JOIN fine_tuning_jobs j ON j.id = c.job_id WHERE j.workspace_id = @ws
        UNION ALL
        SELECT 'collection', v.id, v.name, NULL, v.created_at, v.policy, COALESCE((v.config_json::jsonb -> 'locations')::text, '[]'), NULL
        FROM vector_collections v WHERE v.workspace_id = @ws
        UNION ALL
        SELECT 'feature_view', fv.id, fv.name || ' v' || fv.version, NULL, fv.created_at / 1000,
               COALESCE(fv.definition::jsonb ->> 'policy', 'default'),
               (SELECT COALESCE(jsonb_agg(DISTINCT s.location_id), '[]'::jsonb)::text FROM feature_segments s WHERE s.view_id = fv.id), NULL
        FROM feature_views fv WHERE fv.workspace_id = @ws
        UNION ALL
        SELECT 'training_set', t.id, t.name || ' v' || t.version, NULL, t.created_at / 1000, {{ManifestPolicy}},
               CASE WHEN t.manifest::jsonb ->> 'location' IS NULL THEN '[]' ELSE jsonb_build_array(t.manifest::jsonb ->> 'location')::text END, NULL
        FROM feature_training_sets t WHERE t.workspace_id = @ws
        """;

    // Every input each derived artifact of the workspace names: the same rows as the SQLite
    // catalog's Edges. `#>> '{}'` is a JSON scalar's text; jsonpath's [*] yields nothing for a
    // missing or null field.
    public const string Edges = """
        SELECT 'file', f #>> '{}', 'dataset', d.id, 'training_file' FROM datasets d, jsonb_path_query(d.request_json::jsonb, '$.training_files[*]') f WHERE d.workspace_id = @ws
        UNION ALL
        SELECT 'file', f #>> '{}', 'dataset', d.id, 'validation_file' FROM datasets d, jsonb_path_query(d.request_json::jsonb, '$.validation_files[*]') f WHERE d.workspace_id = @ws
        UNION ALL
        SELECT 'file', f #>> '{}', 'dataset', d.id, 'eval_file' FROM datasets d, jsonb_path_query(d.request_json::jsonb, '$.eval_files[*]') f WHERE d.workspace_id = @ws
        UNION ALL
        SELECT 'dataset', d.request_json::jsonb ->> 'source_dataset', 'dataset', d.id, 'source_dataset' FROM datasets d
        WHERE d.workspace_id = @ws AND d.request_json::jsonb ->> 'source_dataset' IS NOT NULL
        UNION ALL
        SELECT 'dataset', d.request_json::jsonb ->> 'eval_dataset', 'dataset', d.id, 'eval_dataset' FROM datasets d
        WHERE d.workspace_id = @ws AND d.request_json::jsonb ->> 'eval_dataset' IS NOT NULL
        UNION ALL
        SELECT 'model', d.request_json::jsonb ->> 'model', 'dataset', d.id, 'tokenizer' FROM datasets d
        WHERE d.workspace_id = @ws AND d.request_json::jsonb ->> 'model' IS NOT NULL
        UNION ALL
        SELECT 'file', f #>> '{}', 'job', j.id, 'training_file' FROM fine_tuning_jobs j, jsonb_path_query(j.request_json::jsonb, '$.training_files[*] ? (@.type() == "object").file_id') f
        WHERE j.workspace_id = @ws AND f #>> '{}' IS NOT NULL
        UNION ALL
        SELECT 'file', f #>> '{}', 'job', j.id, 'validation_file' FROM fine_tuning_jobs j, jsonb_path_query(j.request_json::jsonb, '$.validation_files[*] ? (@.type() == "string")') f
        WHERE j.workspace_id = @ws
        UNION ALL
        SELECT 'dataset', j.request_json::jsonb ->> 'dataset_id', 'job', j.id, 'dataset' FROM fine_tuning_jobs j
        WHERE j.workspace_id = @ws AND j.request_json::jsonb ->> 'dataset_id' IS NOT NULL
        UNION ALL
        SELECT 'model', j.model, 'job', j.id, 'base_model' FROM fine_tuning_jobs j WHERE j.workspace_id = @ws
        UNION ALL
        SELECT 'job', c.job_id, 'checkpoint', c.checkpoint_id, 'checkpoint' FROM fine_tuning_job_checkpoints c JOIN fine_tuning_jobs j ON j.id = c.job_id
        WHERE j.workspace_id = @ws
        UNION ALL
        SELECT 'job', m.job_id, 'model', m.id, 'trained' FROM models m WHERE m.workspace_id = @ws AND m.job_id IS NOT NULL
        UNION ALL
        SELECT 'checkpoint', m.lineage_json::jsonb ->> 'checkpoint_id', 'model', m.id, 'final_checkpoint' FROM models m
        WHERE m.workspace_id = @ws AND m.lineage_json::jsonb ->> 'checkpoint_id' IS NOT NULL
        UNION ALL
        SELECT 'model', m.root, 'model', m.id, 'base_model' FROM models m WHERE m.workspace_id = @ws AND m.root IS NOT NULL
        UNION ALL
        SELECT 'feature_view', s #>> '{}', 'training_set', t.id, 'feature_view' FROM feature_training_sets t, jsonb_path_query(t.manifest::jsonb, '$.sources[*].view_id') s
        WHERE t.workspace_id = @ws AND s #>> '{}' IS NOT NULL
        """;

    // A restore's start_from ({"job_id", "step"}) in a job that has not finished.
    public const string PendingFromCheckpoint = """
        SELECT 'fine_tuning_job', j.id, j.created_at FROM fine_tuning_jobs j
        WHERE j.workspace_id = @ws AND j.request_json::jsonb #>> '{start_from,job_id}' = @job
          AND (j.request_json::jsonb #> '{start_from,step}') = to_jsonb(@step::bigint)
          AND j.status NOT IN ('SUCCESS', 'FAILED', 'FAILED_VALIDATION', 'CANCELLED')
        ORDER BY 3, 2
        """;

    public static DerivedArtifact Read(NpgsqlDataReader r) => new(r.GetString(0), r.GetString(1));

    public static LineageNodeRecord ReadNode(NpgsqlDataReader r) => new(
        r.GetString(0),
        r.GetString(1),
        r.IsDBNull(2) ? null : r.GetString(2),
        r.IsDBNull(3) ? null : r.GetString(3),
        r.GetInt64(4),
        r.GetString(5),
        r.IsDBNull(6) ? [] : [.. (JsonSerializer.Deserialize<string?[]>(r.GetString(6)) ?? []).OfType<string>()],
        r.IsDBNull(7) ? null : r.GetString(7));

    public static LineageEdgeRecord ReadEdge(NpgsqlDataReader r) => new(r.GetString(0), r.GetString(1), r.GetString(2), r.GetString(3), r.GetString(4));
}
