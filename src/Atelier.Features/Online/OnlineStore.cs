using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using System.Text;
using Atelier.Features.Schema;
using BitFaster.Caching.Lfu;
using BitFaster.Caching.Scheduler;
using Microsoft.Data.Sqlite;

namespace Atelier.Features.Online;

/// <summary>The latest value of one entity in a view, as the online store returns it.</summary>
/// <param name="EntityKey">The key asked for.</param>
/// <param name="EventTime">The event time of the value; null when the key has none.</param>
/// <param name="Values">Per field of the view, in schema order; null when the key has none.</param>
public sealed record OnlineFeatureValue(string EntityKey, DateTimeOffset? EventTime, object?[]? Values)
{
    /// <summary>True when the store holds a value for the key.</summary>
    public bool Found => Values is not null;
}

/// <summary>Counts of the online cache since the store was opened.</summary>
/// <param name="Hits">Lookups answered by the cache.</param>
/// <param name="Misses">Lookups that went to the backing store.</param>
/// <param name="Count">Entries cached now.</param>
/// <param name="Capacity">The most entries the cache holds.</param>
/// <param name="Evicted">Entries the cache evicted.</param>
public readonly record struct OnlineCacheStatistics(long Hits, long Misses, int Count, int Capacity, long Evicted)
{
    /// <summary>Hits over lookups; 0 before the first lookup.</summary>
    public double HitRatio => Hits + Misses == 0 ? 0 : (double)Hits / (Hits + Misses);
}

/// <summary>
/// The online store: the latest value per (view version, entity key), kept in a SQLite file (as
/// Feast's default online store) behind an admission-aware W-TinyLFU cache (BitFaster's
/// <see cref="ConcurrentLfu{K,V}"/>), so that a scan of cold keys cannot flush the hot set.
/// It is a derived index: every row in it came from a committed segment of the view's log, and a
/// per-view watermark says which segments it has applied, so a crash between a segment's commit
/// and its application is repaired by replaying the segments after the watermark.
/// </summary>
public sealed class OnlineStore : IDisposable
{
    /// <summary>The most keys one batch lookup may ask for.</summary>
    public const int MaxBatchKeys = 10_000;

    // SQLite's default limit on host parameters is 32766; stay well below it per statement.
    private const int KeysPerStatement = 500;

    private readonly string _connectionString;
    private readonly ConcurrentLfu<OnlineKey, OnlineEntry> _cache;
    private readonly int _capacity;
    private readonly Meter _meter;
    private readonly Counter<long> _hitCounter;
    private readonly Counter<long> _missCounter;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, StrongBox<long>> _writeEpochs = new(StringComparer.Ordinal);
    private long _hits;
    private long _misses;

    /// <summary>Opens (creating if needed) the online store at <paramref name="path"/>.</summary>
    /// <param name="path">The SQLite file.</param>
    /// <param name="cacheCapacity">How many (view, key) entries the cache holds.</param>
    /// <param name="scheduler">Runs the cache's maintenance; a foreground one makes eviction deterministic in tests.</param>
    public OnlineStore(string path, int cacheCapacity, IScheduler? scheduler = null)
    {
        // W-TinyLFU splits the capacity into a 1% window and a main area; below a few dozen entries
        // the split degenerates, so the smallest cache is 16 entries.
        ArgumentOutOfRangeException.ThrowIfLessThan(cacheCapacity, 16);
        _capacity = cacheCapacity;
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = Path.GetFullPath(path),
            Mode = SqliteOpenMode.ReadWriteCreate,
            Pooling = true,
            DefaultTimeout = 30,
        }.ToString();
        _cache = new ConcurrentLfu<OnlineKey, OnlineEntry>(Environment.ProcessorCount, cacheCapacity, scheduler ?? new ThreadPoolScheduler(), EqualityComparer<OnlineKey>.Default);

        using (var connection = Open())
        using (var command = connection.CreateCommand())
        {
            command.CommandText = """
                PRAGMA journal_mode=WAL;
                CREATE TABLE IF NOT EXISTS online_values (
                    view_id    TEXT NOT NULL,
                    entity_key TEXT NOT NULL,
                    event_time INTEGER NOT NULL,
                    ordinal    INTEGER NOT NULL,
                    vals       BLOB NOT NULL,
                    PRIMARY KEY (view_id, entity_key)
                ) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS online_watermarks (
                    view_id TEXT PRIMARY KEY,
                    seq     INTEGER NOT NULL
                );
                """;
            command.ExecuteNonQuery();
        }

        _meter = new Meter(FeatureMetrics.MeterName);

        // The Prometheus exporter appends _total to counters: these read atelier_feature_cache_hits_total and _misses_total.
        _hitCounter = _meter.CreateCounter<long>("atelier_feature_cache_hits", description: "Online feature lookups answered by the cache.");
        _missCounter = _meter.CreateCounter<long>("atelier_feature_cache_misses", description: "Online feature lookups that went to the online store.");
        _meter.CreateObservableGauge("atelier_feature_cache_hit_ratio", () => Statistics.HitRatio, description: "Hit ratio of the online feature cache since the store was opened.");
        _meter.CreateObservableGauge("atelier_feature_cache_entries", () => _cache.Count, description: "Entries in the online feature cache.");
    }

    /// <summary>The cache's counts so far.</summary>
    public OnlineCacheStatistics Statistics =>
        new(Interlocked.Read(ref _hits), Interlocked.Read(ref _misses), _cache.Count, _capacity, _cache.Metrics.HasValue ? _cache.Metrics.Value!.Evicted : 0);

    /// <summary>Runs pending cache maintenance now (admission and eviction); for tests and benchmarks.</summary>
    public void DoCacheMaintenance() => _cache.DoMaintenance();

    /// <summary>True when (view, key) is in the cache now; for tests.</summary>
    public bool IsCached(string viewId, string entityKey) => _cache.TryGet(new OnlineKey(viewId, entityKey), out _);

    /// <summary>The last segment of <paramref name="viewId"/>'s log applied to the store; 0 when none.</summary>
    public long Watermark(string viewId)
    {
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT seq FROM online_watermarks WHERE view_id = $v";
        command.Parameters.AddWithValue("$v", viewId);
        return command.ExecuteScalar() is long seq ? seq : 0;
    }

    /// <summary>
    /// Applies the rows of committed segment <paramref name="segmentSeq"/>: each key keeps the value
    /// with the latest event time (a backfill of older events never overwrites a newer value; at equal
    /// event times the later write wins). The watermark moves in the same transaction.
    /// </summary>
    public void Apply(FeatureView view, long segmentSeq, IReadOnlyList<FeatureRow> rows)
    {
        ArgumentNullException.ThrowIfNull(view);
        ArgumentNullException.ThrowIfNull(rows);
        using (var connection = Open())
        using (var transaction = connection.BeginTransaction())
        {
            using (var upsert = connection.CreateCommand())
            {
                upsert.Transaction = transaction;
                upsert.CommandText = """
                    INSERT INTO online_values(view_id, entity_key, event_time, ordinal, vals) VALUES ($v, $k, $t, $o, $x)
                    ON CONFLICT(view_id, entity_key) DO UPDATE SET event_time = excluded.event_time, ordinal = excluded.ordinal, vals = excluded.vals
                    WHERE excluded.event_time > online_values.event_time
                       OR (excluded.event_time = online_values.event_time AND excluded.ordinal > online_values.ordinal)
                    """;
                var v = upsert.Parameters.AddWithValue("$v", view.Id);
                var k = upsert.Parameters.Add("$k", SqliteType.Text);
                var t = upsert.Parameters.Add("$t", SqliteType.Integer);
                var o = upsert.Parameters.Add("$o", SqliteType.Integer);
                var x = upsert.Parameters.Add("$x", SqliteType.Blob);
                upsert.Prepare();
                for (var i = 0; i < rows.Count; i++)
                {
                    var row = rows[i];
                    k.Value = row.EntityKey;
                    t.Value = row.EventTime.UtcTicks;
                    o.Value = Ordinal(segmentSeq, i);
                    x.Value = OnlineValueCodec.Encode(view.Fields, row.Values);
                    upsert.ExecuteNonQuery();
                }
            }

            using (var mark = connection.CreateCommand())
            {
                mark.Transaction = transaction;
                mark.CommandText = "INSERT INTO online_watermarks(view_id, seq) VALUES ($v, $s) ON CONFLICT(view_id) DO UPDATE SET seq = MAX(seq, excluded.seq)";
                mark.Parameters.AddWithValue("$v", view.Id);
                mark.Parameters.AddWithValue("$s", segmentSeq);
                mark.ExecuteNonQuery();
            }

            transaction.Commit();
        }

        // The epoch moves after the commit and before the invalidation. A reader that loaded a value
        // before the commit sees a different epoch after caching it and takes its entry back out, so
        // no stale value can outlive this write in the cache (see Get).
        Interlocked.Increment(ref Epoch(view.Id).Value);
        foreach (var row in rows)
        {
            _cache.TryRemove(new OnlineKey(view.Id, row.EntityKey));
        }
    }

    /// <summary>The ordering of a row in a view's log: by segment, then by position in it.</summary>
    public static long Ordinal(long segmentSeq, int row) => (segmentSeq << 32) | (uint)row;

    /// <summary>The latest value of each key, in the order asked; keys with no value come back not found.</summary>
    public OnlineFeatureValue[] Get(FeatureView view, IReadOnlyList<string> keys)
    {
        ArgumentNullException.ThrowIfNull(view);
        ArgumentNullException.ThrowIfNull(keys);
        var result = new OnlineFeatureValue[keys.Count];
        List<int>? missing = null;
        for (var i = 0; i < keys.Count; i++)
        {
            if (_cache.TryGet(new OnlineKey(view.Id, keys[i]), out var entry))
            {
                result[i] = entry.ToValue(keys[i]);
            }
            else
            {
                (missing ??= []).Add(i);
            }
        }

        var hits = keys.Count - (missing?.Count ?? 0);
        Interlocked.Add(ref _hits, hits);
        _hitCounter.Add(hits);
        if (missing is null)
        {
            return result;
        }

        Interlocked.Add(ref _misses, missing.Count);
        _missCounter.Add(missing.Count);
        var epoch = Epoch(view.Id);
        var before = Volatile.Read(ref epoch.Value);
        var loaded = Load(view, keys, missing);
        foreach (var i in missing)
        {
            var key = new OnlineKey(view.Id, keys[i]);
            var entry = loaded.TryGetValue(keys[i], out var e) ? e : OnlineEntry.Absent;
            result[i] = entry.ToValue(keys[i]);
            _cache.AddOrUpdate(key, entry);
        }

        if (Volatile.Read(ref epoch.Value) != before)
        {
            // A write landed while we were reading: what we cached may predate it.
            foreach (var i in missing)
            {
                _cache.TryRemove(new OnlineKey(view.Id, keys[i]));
            }
        }

        return result;
    }

    private Dictionary<string, OnlineEntry> Load(FeatureView view, IReadOnlyList<string> keys, List<int> missing)
    {
        var found = new Dictionary<string, OnlineEntry>(missing.Count, StringComparer.Ordinal);
        using var connection = Open();
        for (var start = 0; start < missing.Count; start += KeysPerStatement)
        {
            var count = Math.Min(KeysPerStatement, missing.Count - start);
            using var command = connection.CreateCommand();
            var sql = new StringBuilder("SELECT entity_key, event_time, vals FROM online_values WHERE view_id = $v AND entity_key IN (");
            command.Parameters.AddWithValue("$v", view.Id);
            for (var j = 0; j < count; j++)
            {
                var name = "$k" + j.ToString(System.Globalization.CultureInfo.InvariantCulture);
                sql.Append(j == 0 ? name : "," + name);
                command.Parameters.AddWithValue(name, keys[missing[start + j]]);
            }

            command.CommandText = sql.Append(')').ToString();
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                var blob = (byte[])reader.GetValue(2);
                found[reader.GetString(0)] = new OnlineEntry(reader.GetInt64(1), OnlineValueCodec.Decode(view.Fields, blob));
            }
        }

        return found;
    }

    private StrongBox<long> Epoch(string viewId) => _writeEpochs.GetOrAdd(viewId, static _ => new StrongBox<long>());

    private SqliteConnection Open()
    {
        var connection = new SqliteConnection(_connectionString);
        connection.Open();
        return connection;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        // The cache is left to the collector: ConcurrentLfu.Clear trims through maintenance, which
        // buys nothing at shutdown.
        _meter.Dispose();
    }

    private readonly record struct OnlineKey(string ViewId, string EntityKey);

    /// <summary>A cached answer, including "no value" so that repeated misses stay off the store.</summary>
    private sealed class OnlineEntry(long eventTicks, object?[]? values)
    {
        public static readonly OnlineEntry Absent = new(0, null);

        public OnlineFeatureValue ToValue(string key) =>
            values is null ? new OnlineFeatureValue(key, null, null) : new OnlineFeatureValue(key, new DateTimeOffset(eventTicks, TimeSpan.Zero), values);
    }
}

/// <summary>Names of the feature store's metrics.</summary>
public static class FeatureMetrics
{
    /// <summary>The meter the feature store publishes on (the server exports it to Prometheus).</summary>
    public const string MeterName = "Atelier";
}
