using Atelier.Core.Errors;
using Microsoft.Data.Sqlite;

namespace Atelier.Catalog.Sqlite;

/// <summary>The dataset versions of the SQLite catalog (table <c>datasets</c>).</summary>
public sealed class SqliteDatasetRepository(CatalogDatabase database, TimeProvider clock) : IDatasetRepository
{
    private const string Columns = "id, workspace_id, name, status, request_json, progress_json, summary_json, error, policy, location_id, created_at, started_at, finished_at, created_by";

    // Read only: a row is inserted without an owner, and the lease columns change through the claim alone.
    private const string ReadColumns = Columns + ", build_owner, build_lease_until";

    /// <inheritdoc />
    public Task InsertAsync(DatasetRecord dataset, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        return database.ExecuteAsync(
            $"INSERT INTO datasets({Columns}) VALUES ($id, $ws, $name, $status, $req, NULL, NULL, NULL, $policy, $loc, $created, NULL, NULL, $by)",
            cancellationToken,
            ("$id", dataset.Id),
            ("$ws", dataset.WorkspaceId),
            ("$name", dataset.Name),
            ("$status", dataset.Status),
            ("$req", dataset.RequestJson),
            ("$policy", dataset.Policy),
            ("$loc", dataset.LocationId),
            ("$created", dataset.CreatedAt),
            ("$by", dataset.CreatedBy));
    }

    /// <inheritdoc />
    public Task<DatasetRecord?> GetAsync(string workspaceId, string id, CancellationToken cancellationToken = default) =>
        QueryOneAsync("workspace_id = $ws AND id = $id", cancellationToken, ("$ws", workspaceId), ("$id", id));

    /// <inheritdoc />
    public Task<DatasetRecord?> GetForBuilderAsync(string id, CancellationToken cancellationToken = default) =>
        QueryOneAsync("id = $id", cancellationToken, ("$id", id));

    /// <inheritdoc />
    public async Task<IReadOnlyList<DatasetRecord>> ListAsync(string workspaceId, int page, int pageSize, CancellationToken cancellationToken = default) =>
        await database.QueryAsync(
            $"SELECT {ReadColumns} FROM datasets WHERE workspace_id = $ws ORDER BY created_at DESC, id DESC LIMIT $limit OFFSET $offset",
            Read,
            cancellationToken,
            ("$ws", workspaceId), ("$limit", pageSize), ("$offset", (long)page * pageSize)).ConfigureAwait(false);

    /// <inheritdoc />
    public async Task<IReadOnlyList<DatasetRecord>> UnfinishedAsync(CancellationToken cancellationToken = default) =>
        await database.QueryAsync($"SELECT {ReadColumns} FROM datasets WHERE status IN ('queued', 'running') ORDER BY created_at, id", Read, cancellationToken).ConfigureAwait(false);

    /// <inheritdoc />
    public Task MarkRunningAsync(string id, CancellationToken cancellationToken = default) =>
        database.ExecuteAsync(
            "UPDATE datasets SET status = 'running', started_at = COALESCE(started_at, $now) WHERE id = $id AND status IN ('queued', 'running')",
            cancellationToken,
            ("$id", id), ("$now", Now()));

    /// <inheritdoc />
    public Task UpdateProgressAsync(string id, string progressJson, CancellationToken cancellationToken = default) =>
        database.ExecuteAsync("UPDATE datasets SET progress_json = $p WHERE id = $id", cancellationToken, ("$id", id), ("$p", progressJson));

    /// <inheritdoc />
    public async Task<bool> TryClaimBuildAsync(string id, string node, long leaseUntil, long now, CancellationToken cancellationToken = default) =>
        // One statement: two nodes claiming at once are serialised on the row, and the second sees
        // the first's owner and lease when its condition is evaluated, so it updates nothing.
        await database.ExecuteAsync(
            """
            UPDATE datasets SET build_owner = $node, build_lease_until = $until
            WHERE id = $id AND status IN ('queued', 'running')
              AND (build_owner IS NULL OR build_owner = $node OR build_lease_until IS NULL OR build_lease_until <= $now)
            """,
            cancellationToken,
            ("$id", id), ("$node", node), ("$until", leaseUntil), ("$now", now)).ConfigureAwait(false) == 1;

    /// <inheritdoc />
    public async Task<bool> RenewBuildLeaseAsync(string id, string node, long leaseUntil, CancellationToken cancellationToken = default) =>
        await database.ExecuteAsync(
            "UPDATE datasets SET build_lease_until = $until WHERE id = $id AND build_owner = $node AND status IN ('queued', 'running')",
            cancellationToken,
            ("$id", id), ("$node", node), ("$until", leaseUntil)).ConfigureAwait(false) == 1;

    /// <inheritdoc />
    public Task FinishAsync(string id, string status, string? summaryJson, string? error, CancellationToken cancellationToken = default) =>
        database.ExecuteAsync(
            "UPDATE datasets SET status = $s, summary_json = $sum, error = $err, finished_at = $now, build_owner = NULL, build_lease_until = NULL WHERE id = $id",
            cancellationToken,
            ("$id", id), ("$s", status), ("$sum", summaryJson), ("$err", error), ("$now", Now()));

    /// <inheritdoc />
    public Task<DatasetRecord?> DeleteAsync(string workspaceId, string id, CancellationToken cancellationToken = default) =>
        database.InWriteTransactionAsync(
            async (connection, transaction) =>
            {
                // The check and the delete share the write transaction, so no use recorded in between is missed.
                await using var command = CatalogDatabase.Command(connection, transaction, $"DELETE FROM datasets WHERE workspace_id = $ws AND id = $id RETURNING {ReadColumns}", ("$ws", workspaceId), ("$id", id));
                var dataset = (await CatalogDatabase.ReadAllAsync(command, Read, cancellationToken).ConfigureAwait(false)).FirstOrDefault();
                if (dataset is null)
                {
                    return null;
                }

                var derived = await SqliteLineageRepository.DerivedFromDatasetAsync(connection, transaction, workspaceId, id, cancellationToken).ConfigureAwait(false);
                return derived.Count > 0 ? throw ConflictException.DerivedFrom("dataset", id, derived) : dataset;
            },
            cancellationToken);

    private long Now() => clock.GetUtcNow().ToUnixTimeSeconds();

    private async Task<DatasetRecord?> QueryOneAsync(string where, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters) =>
        (await database.QueryAsync($"SELECT {ReadColumns} FROM datasets WHERE {where}", Read, cancellationToken, parameters).ConfigureAwait(false)).FirstOrDefault();

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
        BuildOwner = r.IsDBNull(14) ? null : r.GetString(14),
        BuildLeaseUntil = r.IsDBNull(15) ? null : r.GetInt64(15),
    };
}
