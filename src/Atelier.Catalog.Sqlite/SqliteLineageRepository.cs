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

    public static DerivedArtifact Read(SqliteDataReader r) => new(r.GetString(0), r.GetString(1));
}
