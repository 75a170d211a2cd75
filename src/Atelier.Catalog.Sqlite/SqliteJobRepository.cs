using System.Text.Json;
using Microsoft.Data.Sqlite;

namespace Atelier.Catalog.Sqlite;

/// <summary>The fine-tuning jobs of the SQLite catalog, with their events and checkpoints.</summary>
public sealed class SqliteJobRepository(CatalogDatabase database, TimeProvider clock) : IJobRepository
{
    private const string Columns = "id, workspace_id, model, status, started, auto_start, request_json, suffix, fine_tuned_model, trained_tokens, metadata_json, policy, location_id, node, attempt, error, created_at, modified_at, created_by";

    /// <inheritdoc />
    public Task InsertAsync(JobRecord job, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(job);
        return database.InWriteTransactionAsync(
            async (connection, transaction) =>
            {
                await using (var command = CatalogDatabase.Command(
                    connection,
                    transaction,
                    $"""
                    INSERT INTO fine_tuning_jobs({Columns})
                    VALUES ($id, $ws, $model, $status, 0, $auto, $req, $suffix, NULL, NULL, NULL, $policy, $loc, NULL, 0, NULL, $now, $now, $by)
                    """,
                    ("$id", job.Id),
                    ("$ws", job.WorkspaceId),
                    ("$model", job.Model),
                    ("$status", job.Status),
                    ("$auto", job.AutoStart ? 1 : 0),
                    ("$req", job.RequestJson),
                    ("$suffix", job.Suffix),
                    ("$policy", job.Policy),
                    ("$loc", job.LocationId),
                    ("$now", job.CreatedAt),
                    ("$by", job.CreatedBy)))
                {
                    await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }

                await AddEventAsync(connection, transaction, job.Id, "status-updated", $$"""{"status":"{{job.Status}}"}""", job.CreatedAt, cancellationToken).ConfigureAwait(false);
                return true;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<JobRecord?> GetAsync(string workspaceId, string id, CancellationToken cancellationToken = default) =>
        QueryOneAsync("workspace_id = $ws AND id = $id", cancellationToken, ("$ws", workspaceId), ("$id", id));

    /// <inheritdoc />
    public Task<JobRecord?> GetByIdAsync(string id, CancellationToken cancellationToken = default) =>
        QueryOneAsync("id = $id", cancellationToken, ("$id", id));

    /// <inheritdoc />
    public Task<JobPage> ListAsync(string workspaceId, JobFilter filter, int page, int pageSize, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(filter);
        return database.RunAsync(
            async connection =>
            {
                await using var command = connection.CreateCommand();
                var where = "workspace_id = $ws";
                command.Parameters.AddWithValue("$ws", workspaceId);
                Add("model = $model", "$model", filter.Model);
                Add("created_at > $after", "$after", filter.CreatedAfter);
                Add("created_at < $before", "$before", filter.CreatedBefore);
                Add("created_by = $by", "$by", filter.CreatedBy);
                Add("status = $status", "$status", filter.Status);
                Add("suffix = $suffix", "$suffix", filter.Suffix);
                command.CommandText = $"SELECT COUNT(*) FROM fine_tuning_jobs WHERE {where}";
                var total = (long)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
                command.CommandText = $"SELECT {Columns} FROM fine_tuning_jobs WHERE {where} ORDER BY created_at DESC, id DESC LIMIT $limit OFFSET $offset";
                command.Parameters.AddWithValue("$limit", pageSize);
                command.Parameters.AddWithValue("$offset", (long)page * pageSize);
                return new JobPage(await CatalogDatabase.ReadAllAsync(command, Read, cancellationToken).ConfigureAwait(false), total);

                void Add(string clause, string name, object? value)
                {
                    if (value is not null)
                    {
                        where += " AND " + clause;
                        command.Parameters.AddWithValue(name, value);
                    }
                }
            },
            cancellationToken);
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
        return database.InWriteTransactionAsync(
            async (connection, transaction) =>
            {
                var now = Now();
                await using (var command = CatalogDatabase.Command(connection, transaction, ""))
                {
                    // The status check is in the UPDATE itself, under the write lock: of two racing
                    // transitions from one status, the second finds the status changed and writes nothing.
                    var names = from.Select((_, i) => "$f" + i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
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

                    if (await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false) == 0)
                    {
                        return false;
                    }
                }

                var data = error is null
                    ? $$"""{"status":"{{to}}"}"""
                    : JsonSerializer.Serialize(new Dictionary<string, string> { ["status"] = to, ["error"] = error });
                await AddEventAsync(connection, transaction, id, "status-updated", data, now, cancellationToken).ConfigureAwait(false);
                return true;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task MarkStartedAsync(string id, CancellationToken cancellationToken = default) => UpdateAsync(id, "started = 1", cancellationToken);

    /// <inheritdoc />
    public Task MarkPlacedAsync(string id, string node, CancellationToken cancellationToken = default) =>
        UpdateAsync(id, "node = $v, attempt = attempt + 1", cancellationToken, node);

    /// <inheritdoc />
    public Task SetMetadataAsync(string id, string metadataJson, CancellationToken cancellationToken = default) =>
        UpdateAsync(id, "metadata_json = $v", cancellationToken, metadataJson);

    /// <inheritdoc />
    public Task AddCheckpointAsync(string id, JobCheckpointRecord checkpoint, long trainedTokens, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(checkpoint);
        return database.InWriteTransactionAsync(
            async (connection, transaction) =>
            {
                await using var command = CatalogDatabase.Command(
                    connection,
                    transaction,
                    """
                    INSERT OR REPLACE INTO fine_tuning_job_checkpoints(job_id, step_number, checkpoint_id, train_loss, valid_loss, valid_accuracy, created_at, retained)
                    VALUES ($id, $step, $ckpt, $tl, $vl, $va, $at, 1);
                    UPDATE fine_tuning_jobs SET trained_tokens = $tokens, modified_at = $at WHERE id = $id;
                    """,
                    ("$id", id),
                    ("$step", checkpoint.StepNumber),
                    ("$ckpt", checkpoint.CheckpointId),
                    ("$tl", checkpoint.TrainLoss),
                    ("$vl", checkpoint.ValidLoss),
                    ("$va", checkpoint.ValidAccuracy),
                    ("$at", checkpoint.CreatedAt),
                    ("$tokens", trainedTokens));
                return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task MarkCheckpointsDeletedAsync(string id, IEnumerable<long> steps, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(steps);
        return database.InWriteTransactionAsync(
            async (connection, transaction) =>
            {
                foreach (var step in steps)
                {
                    await using var command = CatalogDatabase.Command(
                        connection,
                        transaction,
                        "UPDATE fine_tuning_job_checkpoints SET retained = 0 WHERE job_id = $id AND step_number = $step",
                        ("$id", id),
                        ("$step", step));
                    await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }

                return true;
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<JobCheckpointRecord>> CheckpointsAsync(string id, CancellationToken cancellationToken = default) =>
        await database.QueryAsync(
            "SELECT step_number, checkpoint_id, train_loss, valid_loss, valid_accuracy, created_at, retained FROM fine_tuning_job_checkpoints WHERE job_id = $id ORDER BY step_number DESC",
            static r => new JobCheckpointRecord(
                r.GetInt64(0),
                r.GetString(1),
                r.IsDBNull(2) ? null : r.GetDouble(2),
                r.IsDBNull(3) ? null : r.GetDouble(3),
                r.IsDBNull(4) ? null : r.GetDouble(4),
                r.GetInt64(5),
                r.GetInt64(6) != 0),
            cancellationToken,
            ("$id", id)).ConfigureAwait(false);

    /// <inheritdoc />
    public Task AddEventAsync(string id, string name, string? dataJson, CancellationToken cancellationToken = default) =>
        database.InWriteTransactionAsync(
            async (connection, transaction) =>
            {
                await AddEventAsync(connection, transaction, id, name, dataJson, Now(), cancellationToken).ConfigureAwait(false);
                return true;
            },
            cancellationToken);

    /// <inheritdoc />
    public async Task<IReadOnlyList<JobEventRecord>> EventsAsync(string id, CancellationToken cancellationToken = default) =>
        await database.QueryAsync(
            "SELECT seq, name, data_json, created_at FROM fine_tuning_job_events WHERE job_id = $id ORDER BY seq",
            static r => new JobEventRecord(r.GetInt64(0), r.GetString(1), r.IsDBNull(2) ? null : r.GetString(2), r.GetInt64(3)),
            cancellationToken,
            ("$id", id)).ConfigureAwait(false);

    /// <inheritdoc />
    public Task SetResultAsync(string id, string fineTunedModel, long trainedTokens, CancellationToken cancellationToken = default) =>
        UpdateAsync(id, "fine_tuned_model = $v, trained_tokens = $t", cancellationToken, fineTunedModel, ("$t", trainedTokens));

    private long Now() => clock.GetUtcNow().ToUnixTimeSeconds();

    private static async Task AddEventAsync(SqliteConnection connection, SqliteTransaction transaction, string id, string name, string? dataJson, long at, CancellationToken cancellationToken)
    {
        // The next number is read under the transaction's write lock, so two events never share one.
        await using var command = CatalogDatabase.Command(
            connection,
            transaction,
            """
            INSERT INTO fine_tuning_job_events(job_id, seq, name, data_json, created_at)
            VALUES ($id, (SELECT COALESCE(MAX(seq), 0) + 1 FROM fine_tuning_job_events WHERE job_id = $id), $name, $data, $at)
            """,
            ("$id", id),
            ("$name", name),
            ("$data", dataJson),
            ("$at", at));
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Sets <paramref name="assignments"/> (which may use <c>$v</c> for <paramref name="value"/>) and the modification time.</summary>
    private Task<int> UpdateAsync(string id, string assignments, CancellationToken cancellationToken, object? value = null, (string Name, object? Value)? extra = null) =>
        database.ExecuteAsync(
            $"UPDATE fine_tuning_jobs SET {assignments}, modified_at = $now WHERE id = $id",
            cancellationToken,
            [("$id", id), ("$v", value), ("$now", Now()), .. extra is { } e ? [e] : Array.Empty<(string, object?)>()]);

    private async Task<JobRecord?> QueryOneAsync(string where, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters) =>
        (await database.QueryAsync($"SELECT {Columns} FROM fine_tuning_jobs WHERE {where}", Read, cancellationToken, parameters).ConfigureAwait(false)).FirstOrDefault();

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
