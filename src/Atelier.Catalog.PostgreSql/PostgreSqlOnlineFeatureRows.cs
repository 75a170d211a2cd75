using Npgsql;

namespace Atelier.Catalog.PostgreSql;

/// <summary>
/// The online feature store in the catalog's PostgreSQL database, in <c>UNLOGGED</c> tables of its
/// own (not a numbered migration: as the SQLite online store's file, they are created when opened).
/// It is a derived index, rebuilt from the views' logs when lost: unlogged tables skip the WAL, and
/// after a crash PostgreSQL empties them, values and watermarks together, so the store restarts from
/// segment 0 and replays the logs rather than trusting a watermark whose rows are gone.
/// </summary>
public sealed class PostgreSqlOnlineFeatureRows : IOnlineFeatureRows
{
    // Within one batch a key may come more than once (two events of one entity): PostgreSQL refuses
    // to upsert one row twice in a statement, so the batch keeps each key's latest (time, ordinal)
    // first. Rows are then applied in key order, so two nodes applying batches of one view lock
    // their rows in the same order and cannot deadlock.
    private const string UpsertSql = """
        INSERT INTO online_values(view_id, entity_key, event_time, ordinal, vals)
        SELECT DISTINCT ON (b.k) @v, b.k, b.t, b.o, b.x
        FROM unnest(@keys, @times, @ordinals, @vals) AS b(k, t, o, x)
        ORDER BY b.k, b.t DESC, b.o DESC
        ON CONFLICT (view_id, entity_key) DO UPDATE SET event_time = excluded.event_time, ordinal = excluded.ordinal, vals = excluded.vals
        WHERE excluded.event_time > online_values.event_time
           OR (excluded.event_time = online_values.event_time AND excluded.ordinal > online_values.ordinal)
        """;

    private readonly PostgreSqlDatabase _database;

    private PostgreSqlOnlineFeatureRows(PostgreSqlDatabase database) => _database = database;

    /// <summary>Opens the online store in <paramref name="database"/>, creating its tables if needed.</summary>
    public static async Task<PostgreSqlOnlineFeatureRows> OpenAsync(PostgreSqlDatabase database, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(database);
        await database.InTransactionAsync(
            async (connection, transaction) =>
            {
                // Under a lock: CREATE TABLE IF NOT EXISTS racing on two nodes can fail on PostgreSQL's own catalog.
                await PostgreSqlDatabase.LockAsync(connection, transaction, CatalogLock.OnlineStore, "create", shared: false, cancellationToken).ConfigureAwait(false);
                return await PostgreSqlDatabase.ExecuteAsync(
                    connection,
                    transaction,
                    """
                    CREATE UNLOGGED TABLE IF NOT EXISTS online_values (
                        view_id    TEXT COLLATE "C" NOT NULL,
                        entity_key TEXT COLLATE "C" NOT NULL,
                        event_time BIGINT NOT NULL,
                        ordinal    BIGINT NOT NULL,
                        vals       BYTEA NOT NULL,
                        PRIMARY KEY (view_id, entity_key)
                    );
                    CREATE UNLOGGED TABLE IF NOT EXISTS online_watermarks (
                        view_id TEXT COLLATE "C" PRIMARY KEY,
                        seq     BIGINT NOT NULL
                    );
                    """,
                    cancellationToken).ConfigureAwait(false);
            },
            cancellationToken).ConfigureAwait(false);
        return new PostgreSqlOnlineFeatureRows(database);
    }

    /// <inheritdoc />
    public async ValueTask<long> WatermarkAsync(string viewId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(viewId);
        var rows = await _database.QueryAsync("SELECT seq FROM online_watermarks WHERE view_id = @v", static r => r.GetInt64(0), cancellationToken, ("v", viewId)).ConfigureAwait(false);
        return rows.Count == 0 ? 0 : rows[0];
    }

    /// <inheritdoc />
    public async ValueTask ApplyAsync(string viewId, long segmentSeq, IReadOnlyList<OnlineFeatureRow> rows, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(viewId);
        ArgumentNullException.ThrowIfNull(rows);
        var keys = new string[rows.Count];
        var times = new long[rows.Count];
        var ordinals = new long[rows.Count];
        var values = new byte[rows.Count][];
        for (var i = 0; i < rows.Count; i++)
        {
            keys[i] = rows[i].EntityKey;
            times[i] = rows[i].EventTime.UtcTicks;
            ordinals[i] = rows[i].Ordinal;
            values[i] = rows[i].Values;
        }

        // One transaction and one statement for the whole segment: the rows travel as four arrays.
        await _database.InTransactionAsync(
            async (connection, transaction) =>
            {
                if (rows.Count > 0)
                {
                    await PostgreSqlDatabase.ExecuteAsync(connection, transaction, UpsertSql, cancellationToken, ("v", viewId), ("keys", keys), ("times", times), ("ordinals", ordinals), ("vals", values)).ConfigureAwait(false);
                }

                return await PostgreSqlDatabase.ExecuteAsync(
                    connection,
                    transaction,
                    "INSERT INTO online_watermarks(view_id, seq) VALUES (@v, @s) ON CONFLICT (view_id) DO UPDATE SET seq = GREATEST(online_watermarks.seq, excluded.seq)",
                    cancellationToken,
                    ("v", viewId),
                    ("s", segmentSeq)).ConfigureAwait(false);
            },
            cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async ValueTask<IReadOnlyList<OnlineFeatureRow>> GetAsync(string viewId, IReadOnlyList<string> entityKeys, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(viewId);
        ArgumentNullException.ThrowIfNull(entityKeys);
        if (entityKeys.Count == 0)
        {
            return [];
        }

        return await _database.QueryAsync(
            "SELECT entity_key, event_time, ordinal, vals FROM online_values WHERE view_id = @v AND entity_key = ANY(@keys)",
            static r => new OnlineFeatureRow(r.GetString(0), new DateTimeOffset(r.GetInt64(1), TimeSpan.Zero), r.GetInt64(2), r.GetFieldValue<byte[]>(3)),
            cancellationToken,
            ("v", viewId),
            ("keys", entityKeys as string[] ?? [.. entityKeys])).ConfigureAwait(false);
    }
}
