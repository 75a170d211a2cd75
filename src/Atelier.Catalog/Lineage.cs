using Atelier.Core.Errors;
using Microsoft.Data.Sqlite;

namespace Atelier.Catalog;

/// <summary>
/// Who derives from an artifact: the dataset versions and fine-tuning jobs whose stored requests
/// name it as an input. A deletion asks this inside its own transaction, so an artifact is removed
/// only when nothing in the catalog still needs it (a job's checkpoint restore re-reads its files,
/// a job trained on a dataset re-reads the dataset's shards).
/// </summary>
/// <remarks>
/// Inputs are read from the requests as the API stored them (snake_case JSON): a dataset's
/// <c>training_files</c>, <c>validation_files</c> and <c>eval_files</c> (file ids),
/// <c>source_dataset</c> and <c>eval_dataset</c> (dataset ids) and <c>model</c>; a job's
/// <c>training_files[].file_id</c>, <c>validation_files</c> and <c>dataset_id</c>, and its resolved
/// <c>model</c> column.
/// </remarks>
public sealed class LineageCatalog(CatalogDatabase database)
{
    // A dataset whose request names file $id as an input.
    private const string DatasetUsesFile = """
        EXISTS (SELECT 1 FROM json_each(d.request_json, '$.training_files') f WHERE f.value = $id)
        OR EXISTS (SELECT 1 FROM json_each(d.request_json, '$.validation_files') f WHERE f.value = $id)
        OR EXISTS (SELECT 1 FROM json_each(d.request_json, '$.eval_files') f WHERE f.value = $id)
        """;

    // Jobs name training files as objects ({"file_id", "weight"}); the CASE keeps json_extract off
    // anything that is not an object.
    private const string FromFileSql = $"""
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

    private const string FromDatasetSql = """
        SELECT 'dataset', d.id, d.created_at FROM datasets d
        WHERE d.workspace_id = $ws AND d.id <> $id
          AND (json_extract(d.request_json, '$.source_dataset') = $id OR json_extract(d.request_json, '$.eval_dataset') = $id)
        UNION ALL
        SELECT 'fine_tuning_job', j.id, j.created_at FROM fine_tuning_jobs j
        WHERE j.workspace_id = $ws AND json_extract(j.request_json, '$.dataset_id') = $id
        ORDER BY 3, 2
        """;

    // $names is a JSON array of the model's id and aliases, since a dataset stores the name it was asked with.
    private const string FromModelSql = """
        SELECT 'dataset', d.id, d.created_at FROM datasets d
        WHERE ($ws IS NULL OR d.workspace_id = $ws) AND json_extract(d.request_json, '$.model') IN (SELECT value FROM json_each($names))
        UNION ALL
        SELECT 'fine_tuning_job', j.id, j.created_at FROM fine_tuning_jobs j
        WHERE ($ws IS NULL OR j.workspace_id = $ws) AND j.model IN (SELECT value FROM json_each($names))
        ORDER BY 3, 2
        """;

    /// <summary>The dataset versions and jobs of the workspace that use file <paramref name="fileId"/>, directly or through a dataset.</summary>
    public IReadOnlyList<DerivedArtifact> DerivedFromFile(string workspaceId, string fileId)
    {
        using var connection = database.Open();
        return DerivedFromFile(connection, null, workspaceId, fileId);
    }

    /// <summary>The same, inside the caller's transaction.</summary>
    public static IReadOnlyList<DerivedArtifact> DerivedFromFile(SqliteConnection connection, SqliteTransaction? transaction, string workspaceId, string fileId) =>
        Read(connection, transaction, FromFileSql, ("$ws", workspaceId), ("$id", fileId));

    /// <summary>The dataset versions (semantic dedup of it) and jobs of the workspace that use dataset <paramref name="datasetId"/>.</summary>
    public IReadOnlyList<DerivedArtifact> DerivedFromDataset(string workspaceId, string datasetId)
    {
        using var connection = database.Open();
        return DerivedFromDataset(connection, null, workspaceId, datasetId);
    }

    /// <summary>The same, inside the caller's transaction.</summary>
    public static IReadOnlyList<DerivedArtifact> DerivedFromDataset(SqliteConnection connection, SqliteTransaction? transaction, string workspaceId, string datasetId) =>
        Read(connection, transaction, FromDatasetSql, ("$ws", workspaceId), ("$id", datasetId));

    /// <summary>
    /// The dataset versions (built with its tokeniser or embeddings) and jobs (trained on it) that use
    /// the model known by <paramref name="names"/> (its id and aliases), in <paramref name="workspaceId"/>
    /// or, when null, in every workspace (a base model is shared by all).
    /// </summary>
    public static IReadOnlyList<DerivedArtifact> DerivedFromModel(SqliteConnection connection, SqliteTransaction? transaction, string? workspaceId, IReadOnlyCollection<string> names) =>
        Read(connection, transaction, FromModelSql, ("$ws", workspaceId), ("$names", System.Text.Json.JsonSerializer.Serialize(names)));

    private static List<DerivedArtifact> Read(SqliteConnection connection, SqliteTransaction? transaction, string sql, params (string Name, object? Value)[] parameters)
    {
        ArgumentNullException.ThrowIfNull(connection);
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        }

        return CatalogDatabase.ReadAll(command, r => new DerivedArtifact(r.GetString(0), r.GetString(1)));
    }
}
