using Npgsql;

namespace Atelier.Catalog.PostgreSql;

/// <summary>Erasures, model taints and serving overrides in the PostgreSQL catalog (migration 8).</summary>
public sealed class PostgreSqlErasureRepository(PostgreSqlDatabase database) : IErasureRepository
{
    private const string Columns = "id, workspace_id, artifact_kind, artifact_id, content_sha256, status, plan_json, report_json, created_at, finished_at, created_by";

    /// <inheritdoc />
    public Task InsertAsync(ErasureRecord erasure, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(erasure);

        // A second unfinished erasure of one artifact breaks erasures_running: a conflict.
        return database.ExecuteAsync(
            $"INSERT INTO erasures({Columns}) VALUES (@id, @ws, @kind, @aid, @sha, @status, @plan, @report, @created, @finished, @by)",
            cancellationToken,
            ("id", erasure.Id),
            ("ws", erasure.WorkspaceId),
            ("kind", erasure.ArtifactKind),
            ("aid", erasure.ArtifactId),
            ("sha", erasure.ContentSha256),
            ("status", erasure.Status),
            ("plan", erasure.PlanJson),
            ("report", erasure.ReportJson),
            ("created", erasure.CreatedAt),
            ("finished", erasure.FinishedAt),
            ("by", erasure.CreatedBy));
    }

    /// <inheritdoc />
    public async Task<ErasureRecord?> GetAsync(string workspaceId, string id, CancellationToken cancellationToken = default) =>
        (await database.QueryAsync($"SELECT {Columns} FROM erasures WHERE workspace_id = @ws AND id = @id", Read, cancellationToken, ("ws", workspaceId), ("id", id)).ConfigureAwait(false)).FirstOrDefault();

    /// <inheritdoc />
    public async Task<ErasureRecord?> FindUnfinishedAsync(string workspaceId, string artifactKind, string artifactId, CancellationToken cancellationToken = default) =>
        (await database.QueryAsync(
            $"SELECT {Columns} FROM erasures WHERE workspace_id = @ws AND artifact_kind = @kind AND artifact_id = @aid AND status = 'running'",
            Read,
            cancellationToken,
            ("ws", workspaceId),
            ("kind", artifactKind),
            ("aid", artifactId)).ConfigureAwait(false)).FirstOrDefault();

    /// <inheritdoc />
    public Task FinishAsync(string id, string reportJson, long finishedAt, CancellationToken cancellationToken = default) =>
        database.ExecuteAsync(
            "UPDATE erasures SET status = 'succeeded', report_json = @report, finished_at = @at WHERE id = @id",
            cancellationToken,
            ("id", id),
            ("report", reportJson),
            ("at", finishedAt));

    /// <inheritdoc />
    public Task TaintAsync(ModelTaint taint, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(taint);
        return database.ExecuteAsync(
            "INSERT INTO model_taints(model_id, erasure_id, tainted_at) VALUES (@m, @e, @at) ON CONFLICT (model_id) DO NOTHING",
            cancellationToken,
            ("m", taint.ModelId),
            ("e", taint.ErasureId),
            ("at", taint.TaintedAt));
    }

    /// <inheritdoc />
    public async Task<ModelTaint?> TaintOfAsync(string modelId, CancellationToken cancellationToken = default) =>
        (await database.QueryAsync(
            "SELECT model_id, erasure_id, tainted_at FROM model_taints WHERE model_id = @m",
            static r => new ModelTaint(r.GetString(0), r.GetString(1), r.GetInt64(2)),
            cancellationToken,
            ("m", modelId)).ConfigureAwait(false)).FirstOrDefault();

    /// <inheritdoc />
    public Task SetServingOverrideAsync(ServingOverride serving, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(serving);
        return database.ExecuteAsync(
            "INSERT INTO serving_overrides(model_id, reason, actor, created_at) VALUES (@m, @r, @a, @at) " +
            "ON CONFLICT (model_id) DO UPDATE SET reason = excluded.reason, actor = excluded.actor, created_at = excluded.created_at",
            cancellationToken,
            ("m", serving.ModelId),
            ("r", serving.Reason),
            ("a", serving.Actor),
            ("at", serving.CreatedAt));
    }

    /// <inheritdoc />
    public async Task<ServingOverride?> ServingOverrideOfAsync(string modelId, CancellationToken cancellationToken = default) =>
        (await database.QueryAsync(
            "SELECT model_id, reason, actor, created_at FROM serving_overrides WHERE model_id = @m",
            static r => new ServingOverride(r.GetString(0), r.GetString(1), r.GetString(2), r.GetInt64(3)),
            cancellationToken,
            ("m", modelId)).ConfigureAwait(false)).FirstOrDefault();

    /// <inheritdoc />
    public async Task<bool> DeleteErasedFileAsync(string workspaceId, string fileId, CancellationToken cancellationToken = default) =>
        await database.ExecuteAsync("DELETE FROM files WHERE workspace_id = @ws AND id = @id", cancellationToken, ("ws", workspaceId), ("id", fileId)).ConfigureAwait(false) == 1;

    private static ErasureRecord Read(NpgsqlDataReader r) => new()
    {
        Id = r.GetString(0),
        WorkspaceId = r.GetString(1),
        ArtifactKind = r.GetString(2),
        ArtifactId = r.GetString(3),
        ContentSha256 = r.GetString(4),
        Status = r.GetString(5),
        PlanJson = r.GetString(6),
        ReportJson = r.IsDBNull(7) ? null : r.GetString(7),
        CreatedAt = r.GetInt64(8),
        FinishedAt = r.IsDBNull(9) ? null : r.GetInt64(9),
        CreatedBy = r.GetString(10),
    };
}
