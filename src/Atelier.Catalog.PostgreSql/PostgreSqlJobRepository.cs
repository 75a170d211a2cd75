using System.Text;
using System.Text.Json;
using Npgsql;

namespace Atelier.Catalog.PostgreSql;

/// <summary>
/// The fine-tuning jobs of the PostgreSQL catalog, with their events and checkpoints. A transition
/// is one conditional <c>UPDATE</c>: of two nodes moving a job from the same status, the second
/// waits for the first's row lock, finds the status changed and writes nothing. An event takes the
/// job's row lock before it numbers itself, so events of one job never share a number.
/// </summary>
public sealed class PostgreSqlJobRepository(PostgreSqlDatabase database, TimeProvider clock) : IJobRepository
{
    private const string Columns = "id, workspace_id, model, status, started, auto_start, request_json, suffix, fine_tuned_model, trained_tokens, metadata_json, policy, location_id, node, attempt, error, created_at, modified_at, created_by";

    /// <inheritdoc />
    public Task InsertAsync(JobRecord job, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(job);
        return database.InTransactionAsync(
            async (connection, transaction) =>
            {
                // A job records uses of files, datasets and a model: deletions checking for uses wait for it.
                await PostgreSqlLineageRepository.LockForUseAsync(connection, transaction, job.WorkspaceId, cancellationToken).ConfigureAwait(false);
                await PostgreSqlDatabase.ExecuteAsync(
                    connection,
                    transaction,
                    $"""
                    INSERT INTO fine_tuning_jobs({Columns})
                    VALUES (@id, @ws, @model, @status, FALSE, @auto, @req, @suffix, NULL, NULL, NULL, @policy, @loc, NULL, 0, NULL, @now, @now, @by)
                    """,
                    cancellationToken,
                    ("id", job.Id),
                    ("ws", job.WorkspaceId),
                    ("model", job.Model),
                    ("status", job.Status),
                    ("auto", job.AutoStart),
                    ("req", job.RequestJson),
                    ("suffix", job.Suffix),
                    ("policy", job.Policy),
                    ("loc", job.LocationId),
                    ("now", job.CreatedAt),
                    ("by", job.CreatedBy)).ConfigureAwait(false);

                // The row was inserted by this transaction, so no other can hold its lock: number 1.
                await InsertEventAsync(connection, transaction, job.Id, "status-updated", $$"""{"status":"{{job.Status}}"}""", job.CreatedAt, cancellationToken).ConfigureAwait(false);
                return true;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<JobRecord?> GetAsync(string workspaceId, string id, CancellationToken cancellationToken = default) =>
        QueryOneAsync("workspace_id = @ws AND id = @id", cancellationToken, ("ws", workspaceId), ("id", id));

    /// <inheritdoc />
    public Task<JobRecord?> GetByIdAsync(string id, CancellationToken cancellationToken = default) =>
        QueryOneAsync("id = @id", cancellationToken, ("id", id));

    /// <inheritdoc />
    public Task<JobPage> ListAsync(string workspaceId, JobFilter filter, int page, int pageSize, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(filter);
        var where = new StringBuilder("workspace_id = @ws");
        var parameters = new List<(string, object?)> { ("ws", workspaceId) };
        Add("model = @model", "model", filter.Model);
        Add("created_at > @after", "after", filter.CreatedAfter);
        Add("created_at < @before", "before", filter.CreatedBefore);
        Add("created_by = @by", "by", filter.CreatedBy);
        Add("status = @status", "status", filter.Status);
        Add("suffix = @suffix", "suffix", filter.Suffix);
        return database.RunAsync(
            async connection =>
            {
                var total = (await PostgreSqlDatabase.QueryAsync(connection, null, $"SELECT COUNT(*) FROM fine_tuning_jobs WHERE {where}", static r => r.GetInt64(0), cancellationToken, [.. parameters]).ConfigureAwait(false))[0];
                var jobs = await PostgreSqlDatabase.QueryAsync(
                    connection,
                    null,
                    $"SELECT {Columns} FROM fine_tuning_jobs WHERE {where} ORDER BY created_at DESC, id DESC LIMIT @limit OFFSET @offset",
                    Read,
                    cancellationToken,
                    [.. parameters, ("limit", (long)pageSize), ("offset", (long)page * pageSize)]).ConfigureAwait(false);
                return new JobPage(jobs, total);
            },
            cancellationToken);

        void Add(string clause, string name, object? value)
        {
            if (value is not null)
            {
                where.Append(" AND ").Append(clause);
                parameters.Add((name, value));
            }
        }
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<JobRecord>> UnfinishedAsync(CancellationToken cancellationToken = default) =>
        await database.QueryAsync(
            $"SELECT {Columns} FROM fine_tuning_jobs WHERE status IN ('QUEUED', 'VALIDATING', 'VALIDATED', 'RUNNING', 'CANCELLATION_REQUESTED') ORDER BY created_at, id",
            Read,
            cancellationToken).ConfigureAwait(false);

    /// <inheritdoc />
    public Task<bool> TransitionAsync(string id, IReadOnlyCollection<string> from, string to, string? error = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(from);
        var allowed = from.ToArray();
        return database.InTransactionAsync(
            async (connection, transaction) =>
            {
                var now = Now();

                // The status check is in the UPDATE itself. A racing transition holds the row lock
                // until it commits; this one then re-reads the row, finds the status changed, and
                // changes nothing.
                var changed = await PostgreSqlDatabase.ExecuteAsync(
                    connection,
                    transaction,
                    "UPDATE fine_tuning_jobs SET status = @to, modified_at = @now, error = COALESCE(@err::text, error) WHERE id = @id AND status = ANY(@from)",
                    cancellationToken,
                    ("to", to),
                    ("now", now),
                    ("err", error),
                    ("id", id),
                    ("from", allowed)).ConfigureAwait(false);
                if (changed == 0)
                {
                    return false;
                }

                var data = error is null
                    ? $$"""{"status":"{{to}}"}"""
                    : JsonSerializer.Serialize(new Dictionary<string, string> { ["status"] = to, ["error"] = error });

                // The UPDATE holds the job's row lock: the event's number is this transaction's to take.
                await InsertEventAsync(connection, transaction, id, "status-updated", data, now, cancellationToken).ConfigureAwait(false);
                return true;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task MarkStartedAsync(string id, CancellationToken cancellationToken = default) => UpdateAsync(id, "started = TRUE", cancellationToken);

    /// <inheritdoc />
    public Task MarkPlacedAsync(string id, string node, CancellationToken cancellationToken = default) =>
        UpdateAsync(id, "node = @v, attempt = attempt + 1", cancellationToken, node);

    /// <inheritdoc />
    public Task SetMetadataAsync(string id, string metadataJson, CancellationToken cancellationToken = default) =>
        UpdateAsync(id, "metadata_json = @v", cancellationToken, metadataJson);

    /// <inheritdoc />
    public Task AddCheckpointAsync(string id, JobCheckpointRecord checkpoint, long trainedTokens, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        return database.InTransactionAsync(
            async (connection, transaction) =>
            {
                await PostgreSqlDatabase.ExecuteAsync(
                    connection,
                    transaction,
                    """
                    INSERT INTO fine_tuning_job_checkpoints(job_id, step_number, checkpoint_id, train_loss, valid_loss, valid_accuracy, created_at, retained)
                    VALUES (@id, @step, @ckpt, @tl, @vl, @va, @at, TRUE)
                    ON CONFLICT (job_id, step_number) DO UPDATE SET
                        checkpoint_id = excluded.checkpoint_id, train_loss = excluded.train_loss, valid_loss = excluded.valid_loss,
                        valid_accuracy = excluded.valid_accuracy, created_at = excluded.created_at, retained = TRUE
                    """,
                    cancellationToken,
                    ("id", id),
                    ("step", checkpoint.StepNumber),
                    ("ckpt", checkpoint.CheckpointId),
                    ("tl", checkpoint.TrainLoss),
                    ("vl", checkpoint.ValidLoss),
                    ("va", checkpoint.ValidAccuracy),
                    ("at", checkpoint.CreatedAt)).ConfigureAwait(false);
                return await PostgreSqlDatabase.ExecuteAsync(
                    connection,
                    transaction,
                    "UPDATE fine_tuning_jobs SET trained_tokens = @tokens, modified_at = @at WHERE id = @id",
                    cancellationToken,
                    ("id", id),
                    ("tokens", trainedTokens),
                    ("at", checkpoint.CreatedAt)).ConfigureAwait(false);
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task MarkCheckpointsDeletedAsync(string id, IEnumerable<long> steps, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(steps);
        return database.ExecuteAsync(
            "UPDATE fine_tuning_job_checkpoints SET retained = FALSE WHERE job_id = @id AND step_number = ANY(@steps)",
            cancellationToken,
            ("id", id),
            ("steps", steps.ToArray()));
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<JobCheckpointRecord>> CheckpointsAsync(string id, CancellationToken cancellationToken = default) =>
        await database.QueryAsync(
            "SELECT step_number, checkpoint_id, train_loss, valid_loss, valid_accuracy, created_at, retained FROM fine_tuning_job_checkpoints WHERE job_id = @id ORDER BY step_number DESC",
            static r => new JobCheckpointRecord(
                r.GetInt64(0),
                r.GetString(1),
                r.IsDBNull(2) ? null : r.GetDouble(2),
                r.IsDBNull(3) ? null : r.GetDouble(3),
                r.IsDBNull(4) ? null : r.GetDouble(4),
                r.GetInt64(5),
                r.GetBoolean(6)),
            cancellationToken,
            ("id", id)).ConfigureAwait(false);

    /// <inheritdoc />
    public Task AddEventAsync(string id, string name, string? dataJson, CancellationToken cancellationToken = default) =>
        database.InTransactionAsync(
            async (connection, transaction) =>
            {
                // The job's row lock orders the events of one job across nodes; without it two
                // would read the same highest number and one would fail on the primary key. A job
                // that does not exist takes no lock, and its event fails on the foreign key.
                await PostgreSqlDatabase.ExecuteAsync(connection, transaction, "SELECT 1 FROM fine_tuning_jobs WHERE id = @id FOR NO KEY UPDATE", cancellationToken, ("id", id)).ConfigureAwait(false);
                await InsertEventAsync(connection, transaction, id, name, dataJson, Now(), cancellationToken).ConfigureAwait(false);
                return true;
            },
            cancellationToken);

    /// <inheritdoc />
    public async Task<IReadOnlyList<JobEventRecord>> EventsAsync(string id, CancellationToken cancellationToken = default) =>
        await database.QueryAsync(
            "SELECT seq, name, data_json, created_at FROM fine_tuning_job_events WHERE job_id = @id ORDER BY seq",
            static r => new JobEventRecord(r.GetInt64(0), r.GetString(1), r.IsDBNull(2) ? null : r.GetString(2), r.GetInt64(3)),
            cancellationToken,
            ("id", id)).ConfigureAwait(false);

    /// <inheritdoc />
    public Task SetResultAsync(string id, string fineTunedModel, long trainedTokens, CancellationToken cancellationToken = default) =>
        UpdateAsync(id, "fine_tuned_model = @v, trained_tokens = @t", cancellationToken, fineTunedModel, ("t", trainedTokens));

    private long Now() => clock.GetUtcNow().ToUnixTimeSeconds();

    /// <summary>Appends an event; the caller holds the job's row lock (or inserted the row in this transaction).</summary>
    private static Task<int> InsertEventAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string id, string name, string? dataJson, long at, CancellationToken cancellationToken) =>
        PostgreSqlDatabase.ExecuteAsync(
            connection,
            transaction,
            """
            INSERT INTO fine_tuning_job_events(job_id, seq, name, data_json, created_at)
            VALUES (@id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM fine_tuning_job_events WHERE job_id = @id), @name, @data, @at)
            """,
            cancellationToken,
            ("id", id),
            ("name", name),
            ("data", dataJson),
            ("at", at));

    /// <summary>Sets <paramref name="assignments"/> (which may use <c>@v</c> for <paramref name="value"/>) and the modification time.</summary>
    private Task<int> UpdateAsync(string id, string assignments, CancellationToken cancellationToken, object? value = null, (string Name, object? Value)? extra = null) =>
        database.ExecuteAsync(
            $"UPDATE fine_tuning_jobs SET {assignments}, modified_at = @now WHERE id = @id",
            cancellationToken,
            [("id", id), ("v", value), ("now", Now()), .. extra is { } e ? [e] : Array.Empty<(string, object?)>()]);

    private async Task<JobRecord?> QueryOneAsync(string where, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters) =>
        (await database.QueryAsync($"SELECT {Columns} FROM fine_tuning_jobs WHERE {where}", Read, cancellationToken, parameters).ConfigureAwait(false)).FirstOrDefault();

    private static JobRecord Read(NpgsqlDataReader reader) => new()
    {
        Id = reader.GetString(0),
        WorkspaceId = reader.GetString(1),
        Model = reader.GetString(2),
        Status = reader.GetString(3),
        Started = reader.GetBoolean(4),
        AutoStart = reader.GetBoolean(5),
        RequestJson = reader.GetString(6),
        Suffix = reader.IsDBNull(7) ? null : reader.GetString(7),
        FineTunedModel = reader.IsDBNull(8) ? null : reader.GetString(8),
        TrainedTokens = reader.IsDBNull(9) ? null : reader.GetInt64(9),
        MetadataJson = reader.IsDBNull(10) ? null : reader.GetString(10),
        Policy = reader.GetString(11),
        LocationId = reader.GetString(12),
        Node = reader.IsDBNull(13) ? null : reader.GetString(13),
        Attempt = reader.GetInt32(14),
        Error = reader.IsDBNull(15) ? null : reader.GetString(15),
        CreatedAt = reader.GetInt64(16),
        ModifiedAt = reader.GetInt64(17),
        CreatedBy = reader.GetString(18),
    };
}
