using Microsoft.Data.Sqlite;

namespace Atelier.Catalog;

/// <summary>The catalog row of a fine-tuning job.</summary>
public sealed record JobRecord
{
    /// <summary>Id, a UUID as Mistral's are.</summary>
    public required string Id { get; init; }

    /// <summary>Owning workspace.</summary>
    public required string WorkspaceId { get; init; }

    /// <summary>The base model's id.</summary>
    public required string Model { get; init; }

    /// <summary>Mistral's status name: QUEUED, VALIDATING, VALIDATED, RUNNING, SUCCESS, FAILED, FAILED_VALIDATION, CANCELLATION_REQUESTED, CANCELLED.</summary>
    public required string Status { get; init; }

    /// <summary>Whether the job was started (by <c>auto_start</c> or <c>/start</c>): a QUEUED job that is started waits for a slot.</summary>
    public bool Started { get; init; }

    /// <summary>Whether it starts by itself once validated.</summary>
    public required bool AutoStart { get; init; }

    /// <summary>The create request as the API received it (JSON).</summary>
    public required string RequestJson { get; init; }

    /// <summary>The suffix of the fine-tuned model's name.</summary>
    public string? Suffix { get; init; }

    /// <summary>The id of the model the job produced.</summary>
    public string? FineTunedModel { get; init; }

    /// <summary>Tokens trained on so far.</summary>
    public long? TrainedTokens { get; init; }

    /// <summary>Validation's figures and the job's plan (JSON).</summary>
    public string? MetadataJson { get; init; }

    /// <summary>The residency policy of everything the job writes.</summary>
    public required string Policy { get; init; }

    /// <summary>Where its data and first checkpoint copy go.</summary>
    public required string LocationId { get; init; }

    /// <summary>The node it was placed on.</summary>
    public string? Node { get; init; }

    /// <summary>How many times it was placed on a slot (more than one after a restart).</summary>
    public int Attempt { get; init; }

    /// <summary>Why it failed.</summary>
    public string? Error { get; init; }

    /// <summary>Unix seconds.</summary>
    public required long CreatedAt { get; init; }

    /// <summary>Unix seconds.</summary>
    public required long ModifiedAt { get; init; }

    /// <summary>The key that asked for it.</summary>
    public required string CreatedBy { get; init; }
}

/// <summary>An event in a job's history.</summary>
public sealed record JobEventRecord(long Seq, string Name, string? DataJson, long CreatedAt);

/// <summary>A checkpoint in a job's history, with its metrics; <see cref="Retained"/> is false once retention deleted it.</summary>
public sealed record JobCheckpointRecord(long StepNumber, string CheckpointId, double? TrainLoss, double? ValidLoss, double? ValidAccuracy, long CreatedAt, bool Retained);

/// <summary>Filters of the job list, as Mistral's <c>GET /v1/fine_tuning/jobs</c> takes them.</summary>
public sealed record JobFilter
{
    /// <summary>Only jobs on this base model.</summary>
    public string? Model { get; init; }

    /// <summary>Only jobs created after (Unix seconds).</summary>
    public long? CreatedAfter { get; init; }

    /// <summary>Only jobs created before (Unix seconds).</summary>
    public long? CreatedBefore { get; init; }

    /// <summary>Only jobs created by this key.</summary>
    public string? CreatedBy { get; init; }

    /// <summary>Only jobs in this status.</summary>
    public string? Status { get; init; }

    /// <summary>Only jobs with this suffix.</summary>
    public string? Suffix { get; init; }
}

/// <summary>
/// Fine-tuning jobs in the catalog. Status changes are compare-and-set on the current status, so
/// the API, the job's grain and a worker racing on one job cannot undo each other's transitions.
/// </summary>
public sealed class JobCatalog(CatalogDatabase database, TimeProvider clock)
{
    private const string Columns = "id, workspace_id, model, status, started, auto_start, request_json, suffix, fine_tuned_model, trained_tokens, metadata_json, policy, location_id, node, attempt, error, created_at, modified_at, created_by";

    /// <summary>Adds a job with its first event.</summary>
    public void Insert(JobRecord job)
    {
        ArgumentNullException.ThrowIfNull(job);
        using var connection = database.Open();
        using var transaction = connection.BeginTransaction();
        using (var command = connection.CreateCommand())
        {
            command.Transaction = transaction;
            command.CommandText = $"""
                INSERT INTO fine_tuning_jobs({Columns})
                VALUES ($id, $ws, $model, $status, 0, $auto, $req, $suffix, NULL, NULL, NULL, $policy, $loc, NULL, 0, NULL, $now, $now, $by)
                """;
            command.Parameters.AddWithValue("$id", job.Id);
            command.Parameters.AddWithValue("$ws", job.WorkspaceId);
            command.Parameters.AddWithValue("$model", job.Model);
            command.Parameters.AddWithValue("$status", job.Status);
            command.Parameters.AddWithValue("$auto", job.AutoStart ? 1 : 0);
            command.Parameters.AddWithValue("$req", job.RequestJson);
            command.Parameters.AddWithValue("$suffix", (object?)job.Suffix ?? DBNull.Value);
            command.Parameters.AddWithValue("$policy", job.Policy);
            command.Parameters.AddWithValue("$loc", job.LocationId);
            command.Parameters.AddWithValue("$now", job.CreatedAt);
            command.Parameters.AddWithValue("$by", job.CreatedBy);
            command.ExecuteNonQuery();
        }

        AddEvent(connection, transaction, job.Id, "status-updated", $$"""{"status":"{{job.Status}}"}""", job.CreatedAt);
        transaction.Commit();
    }

    /// <summary>The job of the workspace, or null.</summary>
    public JobRecord? Get(string workspaceId, string id) => QueryOne("workspace_id = $ws AND id = $id", ("$ws", workspaceId), ("$id", id));

    /// <summary>The job by id alone, for the scheduler and workers.</summary>
    public JobRecord? GetById(string id) => QueryOne("id = $id", ("$id", id));

    /// <summary>A page of the workspace's jobs, newest first, and how many match in all.</summary>
    public (IReadOnlyList<JobRecord> Page, long Total) List(string workspaceId, JobFilter filter, int page, int pageSize)
    {
        ArgumentNullException.ThrowIfNull(filter);
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        var where = "workspace_id = $ws";
        command.Parameters.AddWithValue("$ws", workspaceId);
        Add("model = $model", "$model", filter.Model);
        Add("created_at > $after", "$after", filter.CreatedAfter);
        Add("created_at < $before", "$before", filter.CreatedBefore);
        Add("created_by = $by", "$by", filter.CreatedBy);
        Add("status = $status", "$status", filter.Status);
        Add("suffix = $suffix", "$suffix", filter.Suffix);
        command.CommandText = $"SELECT COUNT(*) FROM fine_tuning_jobs WHERE {where}";
        var total = (long)command.ExecuteScalar()!;
        command.CommandText = $"SELECT {Columns} FROM fine_tuning_jobs WHERE {where} ORDER BY created_at DESC, id DESC LIMIT $limit OFFSET $offset";
        command.Parameters.AddWithValue("$limit", pageSize);
        command.Parameters.AddWithValue("$offset", (long)page * pageSize);
        return (CatalogDatabase.ReadAll(command, Read), total);

        void Add(string clause, string name, object? value)
        {
            if (value is not null)
            {
                where += " AND " + clause;
                command.Parameters.AddWithValue(name, value);
            }
        }
    }

    /// <summary>Jobs that are not in a final status, oldest first: what a restarted server must pick up again.</summary>
    public IReadOnlyList<JobRecord> Unfinished() =>
        database.Query($"SELECT {Columns} FROM fine_tuning_jobs WHERE status IN ('QUEUED', 'VALIDATING', 'VALIDATED', 'RUNNING', 'CANCELLATION_REQUESTED') ORDER BY created_at, id", Read);

    /// <summary>
    /// Moves a job from one of <paramref name="from"/> to <paramref name="to"/>, recording a
    /// <c>status-updated</c> event; false (and nothing written) when the job was not in one of them.
    /// </summary>
    public bool Transition(string id, IReadOnlyCollection<string> from, string to, string? error = null)
    {
        ArgumentNullException.ThrowIfNull(from);
        using var connection = database.Open();
        using var transaction = connection.BeginTransaction(deferred: false);
        var now = clock.GetUtcNow().ToUnixTimeSeconds();
        using (var command = connection.CreateCommand())
        {
            command.Transaction = transaction;
            var names = from.Select((_, i) => "$f" + i).ToArray();
            command.CommandText = $"UPDATE fine_tuning_jobs SET status = $to, modified_at = $now, error = COALESCE($err, error) WHERE id = $id AND status IN ({string.Join(", ", names)})";
            command.Parameters.AddWithValue("$to", to);
            command.Parameters.AddWithValue("$now", now);
            command.Parameters.AddWithValue("$err", (object?)error ?? DBNull.Value);
            command.Parameters.AddWithValue("$id", id);
            var i = 0;
            foreach (var status in from)
            {
                command.Parameters.AddWithValue(names[i++], status);
            }

            if (command.ExecuteNonQuery() == 0)
            {
                return false;
            }
        }

        var data = error is null
            ? $$"""{"status":"{{to}}"}"""
            : System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, string> { ["status"] = to, ["error"] = error });
        AddEvent(connection, transaction, id, "status-updated", data, now);
        transaction.Commit();
        return true;
    }

    /// <summary>Marks a job started (by <c>auto_start</c> or <c>/start</c>).</summary>
    public void MarkStarted(string id) => Update(id, "started = 1");

    /// <summary>Records the slot a job was placed on and counts the attempt.</summary>
    public void MarkPlaced(string id, string node) => Update(id, "node = $v, attempt = attempt + 1", node);

    /// <summary>Stores validation's figures and the job's plan (JSON).</summary>
    public void SetMetadata(string id, string metadataJson) => Update(id, "metadata_json = $v", metadataJson);

    /// <summary>Records a committed checkpoint, the tokens trained so far and a <c>checkpoint</c> event, in one transaction.</summary>
    public void AddCheckpoint(string id, JobCheckpointRecord checkpoint, long trainedTokens)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        using var connection = database.Open();
        using var transaction = connection.BeginTransaction();
        using (var command = connection.CreateCommand())
        {
            command.Transaction = transaction;
            command.CommandText = """
                INSERT OR REPLACE INTO fine_tuning_job_checkpoints(job_id, step_number, checkpoint_id, train_loss, valid_loss, valid_accuracy, created_at, retained)
                VALUES ($id, $step, $ckpt, $tl, $vl, $va, $at, 1);
                UPDATE fine_tuning_jobs SET trained_tokens = $tokens, modified_at = $at WHERE id = $id;
                """;
            command.Parameters.AddWithValue("$id", id);
            command.Parameters.AddWithValue("$step", checkpoint.StepNumber);
            command.Parameters.AddWithValue("$ckpt", checkpoint.CheckpointId);
            command.Parameters.AddWithValue("$tl", (object?)checkpoint.TrainLoss ?? DBNull.Value);
            command.Parameters.AddWithValue("$vl", (object?)checkpoint.ValidLoss ?? DBNull.Value);
            command.Parameters.AddWithValue("$va", (object?)checkpoint.ValidAccuracy ?? DBNull.Value);
            command.Parameters.AddWithValue("$at", checkpoint.CreatedAt);
            command.Parameters.AddWithValue("$tokens", trainedTokens);
            command.ExecuteNonQuery();
        }

        transaction.Commit();
    }

    /// <summary>Marks checkpoints that retention deleted.</summary>
    public void MarkCheckpointsDeleted(string id, IEnumerable<long> steps)
    {
        ArgumentNullException.ThrowIfNull(steps);
        using var connection = database.Open();
        using var transaction = connection.BeginTransaction();
        foreach (var step in steps)
        {
            using var command = connection.CreateCommand();
            command.Transaction = transaction;
            command.CommandText = "UPDATE fine_tuning_job_checkpoints SET retained = 0 WHERE job_id = $id AND step_number = $step";
            command.Parameters.AddWithValue("$id", id);
            command.Parameters.AddWithValue("$step", step);
            command.ExecuteNonQuery();
        }

        transaction.Commit();
    }

    /// <summary>A job's checkpoints, newest first.</summary>
    public IReadOnlyList<JobCheckpointRecord> Checkpoints(string id) => database.Query(
        "SELECT step_number, checkpoint_id, train_loss, valid_loss, valid_accuracy, created_at, retained FROM fine_tuning_job_checkpoints WHERE job_id = $id ORDER BY step_number DESC",
        r => new JobCheckpointRecord(
            r.GetInt64(0), r.GetString(1),
            r.IsDBNull(2) ? null : r.GetDouble(2),
            r.IsDBNull(3) ? null : r.GetDouble(3),
            r.IsDBNull(4) ? null : r.GetDouble(4),
            r.GetInt64(5), r.GetInt64(6) != 0),
        ("$id", id));

    /// <summary>Appends an event (not a status change) to a job's history.</summary>
    public void AddEvent(string id, string name, string? dataJson)
    {
        using var connection = database.Open();
        using var transaction = connection.BeginTransaction();
        AddEvent(connection, transaction, id, name, dataJson, clock.GetUtcNow().ToUnixTimeSeconds());
        transaction.Commit();
    }

    /// <summary>A job's events, oldest first.</summary>
    public IReadOnlyList<JobEventRecord> Events(string id) => database.Query(
        "SELECT seq, name, data_json, created_at FROM fine_tuning_job_events WHERE job_id = $id ORDER BY seq",
        r => new JobEventRecord(r.GetInt64(0), r.GetString(1), r.IsDBNull(2) ? null : r.GetString(2), r.GetInt64(3)),
        ("$id", id));

    /// <summary>Sets the fine-tuned model's id and the tokens trained, as the job succeeds.</summary>
    public void SetResult(string id, string fineTunedModel, long trainedTokens) =>
        Update(id, "fine_tuned_model = $v, trained_tokens = $t", fineTunedModel, ("$t", trainedTokens));

    private static void AddEvent(SqliteConnection connection, SqliteTransaction transaction, string id, string name, string? dataJson, long at)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = """
            INSERT INTO fine_tuning_job_events(job_id, seq, name, data_json, created_at)
            VALUES ($id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM fine_tuning_job_events WHERE job_id = $id), $name, $data, $at)
            """;
        command.Parameters.AddWithValue("$id", id);
        command.Parameters.AddWithValue("$name", name);
        command.Parameters.AddWithValue("$data", (object?)dataJson ?? DBNull.Value);
        command.Parameters.AddWithValue("$at", at);
        command.ExecuteNonQuery();
    }

    /// <summary>Sets <paramref name="assignments"/> (which may use <c>$v</c> for <paramref name="value"/>) and the modification time.</summary>
    private void Update(string id, string assignments, object? value = null, (string Name, object? Value)? extra = null) =>
        database.Execute(
            $"UPDATE fine_tuning_jobs SET {assignments}, modified_at = $now WHERE id = $id",
            [("$id", id), ("$v", value), ("$now", clock.GetUtcNow().ToUnixTimeSeconds()), .. extra is { } e ? [e] : Array.Empty<(string, object?)>()]);

    private JobRecord? QueryOne(string where, params (string Name, object? Value)[] parameters) =>
        database.Query($"SELECT {Columns} FROM fine_tuning_jobs WHERE {where}", Read, parameters).FirstOrDefault();

    private static JobRecord Read(SqliteDataReader reader) => new()
    {
        Id = reader.GetString(0),
        WorkspaceId = reader.GetString(1),
        Model = reader.GetString(2),
        Status = reader.GetString(3),
        Started = reader.GetInt64(4) != 0,
        AutoStart = reader.GetInt64(5) != 0,
        RequestJson = reader.GetString(6),
        Suffix = reader.IsDBNull(7) ? null : reader.GetString(7),
        FineTunedModel = reader.IsDBNull(8) ? null : reader.GetString(8),
        TrainedTokens = reader.IsDBNull(9) ? null : reader.GetInt64(9),
        MetadataJson = reader.IsDBNull(10) ? null : reader.GetString(10),
        Policy = reader.GetString(11),
        LocationId = reader.GetString(12),
        Node = reader.IsDBNull(13) ? null : reader.GetString(13),
        Attempt = (int)reader.GetInt64(14),
        Error = reader.IsDBNull(15) ? null : reader.GetString(15),
        CreatedAt = reader.GetInt64(16),
        ModifiedAt = reader.GetInt64(17),
        CreatedBy = reader.GetString(18),
    };
}
