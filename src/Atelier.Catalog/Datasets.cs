using Atelier.Core.Errors;
using Microsoft.Data.Sqlite;

namespace Atelier.Catalog;

/// <summary>The catalog row of a dataset version and its build.</summary>
public sealed record DatasetRecord
{
    /// <summary>Id, <c>ds-</c> followed by a UUID.</summary>
    public required string Id { get; init; }

    /// <summary>Owning workspace.</summary>
    public required string WorkspaceId { get; init; }

    /// <summary>A display name.</summary>
    public required string Name { get; init; }

    /// <summary><c>queued</c>, <c>running</c>, <c>succeeded</c>, <c>failed</c> or <c>cancelled</c>.</summary>
    public required string Status { get; init; }

    /// <summary>What to build, as the API received it (JSON).</summary>
    public required string RequestJson { get; init; }

    /// <summary>The latest progress (JSON), while it builds.</summary>
    public string? ProgressJson { get; init; }

    /// <summary>Counters, shards and report of a finished build (JSON).</summary>
    public string? SummaryJson { get; init; }

    /// <summary>Why a build failed.</summary>
    public string? Error { get; init; }

    /// <summary>The residency policy (at least as strict as each source file's).</summary>
    public required string Policy { get; init; }

    /// <summary>Where its bytes are placed.</summary>
    public required string LocationId { get; init; }

    /// <summary>Unix seconds.</summary>
    public required long CreatedAt { get; init; }

    /// <summary>Unix seconds.</summary>
    public long? StartedAt { get; init; }

    /// <summary>Unix seconds.</summary>
    public long? FinishedAt { get; init; }

    /// <summary>The key that asked for it.</summary>
    public required string CreatedBy { get; init; }
}

/// <summary>Dataset versions in the catalog; every query but the builder's is scoped to a workspace.</summary>
public sealed class DatasetCatalog(CatalogDatabase database, TimeProvider clock)
{
    private const string Columns = "id, workspace_id, name, status, request_json, progress_json, summary_json, error, policy, location_id, created_at, started_at, finished_at, created_by";

    /// <summary>Adds a queued dataset.</summary>
    public void Insert(DatasetRecord d)
    {
        ArgumentNullException.ThrowIfNull(d);
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = $"INSERT INTO datasets({Columns}) VALUES ($id, $ws, $name, $status, $req, NULL, NULL, NULL, $policy, $loc, $created, NULL, NULL, $by)";
        command.Parameters.AddWithValue("$id", d.Id);
        command.Parameters.AddWithValue("$ws", d.WorkspaceId);
        command.Parameters.AddWithValue("$name", d.Name);
        command.Parameters.AddWithValue("$status", d.Status);
        command.Parameters.AddWithValue("$req", d.RequestJson);
        command.Parameters.AddWithValue("$policy", d.Policy);
        command.Parameters.AddWithValue("$loc", d.LocationId);
        command.Parameters.AddWithValue("$created", d.CreatedAt);
        command.Parameters.AddWithValue("$by", d.CreatedBy);
        command.ExecuteNonQuery();
    }

    /// <summary>The dataset of the workspace, or null.</summary>
    public DatasetRecord? Get(string workspaceId, string id) => QueryOne("workspace_id = $ws AND id = $id", ("$ws", workspaceId), ("$id", id));

    /// <summary>The dataset by id alone, for the builder.</summary>
    public DatasetRecord? GetForBuilder(string id) => QueryOne("id = $id", ("$id", id));

    /// <summary>A page of the workspace's datasets, newest first.</summary>
    public IReadOnlyList<DatasetRecord> List(string workspaceId, int page, int pageSize) => database.Query(
        $"SELECT {Columns} FROM datasets WHERE workspace_id = $ws ORDER BY created_at DESC, id DESC LIMIT $limit OFFSET $offset",
        Read,
        ("$ws", workspaceId), ("$limit", pageSize), ("$offset", (long)page * pageSize));

    /// <summary>Builds that must run (again): queued, or running when the process stopped.</summary>
    public IReadOnlyList<DatasetRecord> Unfinished() =>
        database.Query($"SELECT {Columns} FROM datasets WHERE status IN ('queued', 'running') ORDER BY created_at, id", Read);

    /// <summary>Marks a build started.</summary>
    public void MarkRunning(string id) =>
        Execute("UPDATE datasets SET status = 'running', started_at = COALESCE(started_at, $now) WHERE id = $id AND status IN ('queued', 'running')", id);

    /// <summary>Records progress (JSON).</summary>
    public void UpdateProgress(string id, string progressJson) =>
        database.Execute("UPDATE datasets SET progress_json = $p WHERE id = $id", ("$id", id), ("$p", progressJson));

    /// <summary>Ends a build: succeeded with a summary, or failed/cancelled with an error.</summary>
    public void Finish(string id, string status, string? summaryJson, string? error) => database.Execute(
        "UPDATE datasets SET status = $s, summary_json = $sum, error = $err, finished_at = $now WHERE id = $id",
        ("$id", id), ("$s", status), ("$sum", summaryJson), ("$err", error), ("$now", clock.GetUtcNow().ToUnixTimeSeconds()));

    /// <summary>
    /// Removes the row unless a fine-tuning job or another dataset version of the workspace uses the
    /// dataset; returns it, or null when there was none in the workspace.
    /// </summary>
    /// <exception cref="ConflictException">Something derives from the dataset (named in <see cref="ConflictException.Derived"/>); nothing was removed.</exception>
    public DatasetRecord? Delete(string workspaceId, string id)
    {
        using var connection = database.Open();

        // One write transaction for the check and the delete, so no use recorded in between is missed.
        using var transaction = connection.BeginTransaction(deferred: false);
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = $"DELETE FROM datasets WHERE workspace_id = $ws AND id = $id RETURNING {Columns}";
        command.Parameters.AddWithValue("$ws", workspaceId);
        command.Parameters.AddWithValue("$id", id);
        var dataset = CatalogDatabase.ReadAll(command, Read).FirstOrDefault();
        if (dataset is null)
        {
            return null;
        }

        var derived = LineageCatalog.DerivedFromDataset(connection, transaction, workspaceId, id);
        if (derived.Count > 0)
        {
            transaction.Rollback();
            throw ConflictException.DerivedFrom("dataset", id, derived);
        }

        transaction.Commit();
        return dataset;
    }

    private void Execute(string sql, string id) =>
        database.Execute(sql, ("$id", id), ("$now", clock.GetUtcNow().ToUnixTimeSeconds()));

    private DatasetRecord? QueryOne(string where, params (string Name, object? Value)[] parameters) =>
        database.Query($"SELECT {Columns} FROM datasets WHERE {where}", Read, parameters).FirstOrDefault();

    private static DatasetRecord Read(SqliteDataReader r) => new()
    {
        Id = r.GetString(0),
        WorkspaceId = r.GetString(1),
        Name = r.GetString(2),
        Status = r.GetString(3),
        RequestJson = r.GetString(4),
        ProgressJson = r.IsDBNull(5) ? null : r.GetString(5),
        SummaryJson = r.IsDBNull(6) ? null : r.GetString(6),
        Error = r.IsDBNull(7) ? null : r.GetString(7),
        Policy = r.GetString(8),
        LocationId = r.GetString(9),
        CreatedAt = r.GetInt64(10),
        StartedAt = r.IsDBNull(11) ? null : r.GetInt64(11),
        FinishedAt = r.IsDBNull(12) ? null : r.GetInt64(12),
        CreatedBy = r.GetString(13),
    };
}
