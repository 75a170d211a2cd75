using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using Atelier.Catalog;
using Atelier.Features.Schema;
using BitFaster.Caching.Lfu;
using BitFaster.Caching.Scheduler;

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
/// The online store: the latest value per (view version, entity key), kept by an
/// <see cref="IOnlineFeatureRows"/> (a SQLite file in the embedded mode, as Feast's default online
/// store) behind an admission-aware W-TinyLFU cache (BitFaster's <see cref="ConcurrentLfu{K,V}"/>),
/// so that a scan of cold keys cannot flush the hot set.
/// It is a derived index: every row in it came from a committed segment of the view's log, and a
/// per-view watermark says which segments it has applied, so a crash between a segment's commit
/// and its application is repaired by replaying the segments after the watermark.
/// </summary>
public sealed class OnlineStore : IDisposable
{
    /// <summary>The most keys one batch lookup may ask for.</summary>
    public const int MaxBatchKeys = 10_000;

    private readonly IOnlineFeatureRows _rows;
    private readonly ConcurrentLfu<OnlineKey, OnlineEntry> _cache;
    private readonly int _capacity;
    private readonly Meter _meter;
    private readonly Counter<long> _hitCounter;
    private readonly Counter<long> _missCounter;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, StrongBox<long>> _writeEpochs = new(StringComparer.Ordinal);
    private long _hits;
    private long _misses;

    /// <summary>Opens the online store over <paramref name="rows"/>.</summary>
    /// <param name="rows">Where the values and watermarks are kept.</param>
    /// <param name="cacheCapacity">How many (view, key) entries the cache holds.</param>
    /// <param name="scheduler">Runs the cache's maintenance; a foreground one makes eviction deterministic in tests.</param>
    public OnlineStore(IOnlineFeatureRows rows, int cacheCapacity, IScheduler? scheduler = null)
    {
        ArgumentNullException.ThrowIfNull(rows);

        // W-TinyLFU splits the capacity into a 1% window and a main area; below a few dozen entries
        // the split degenerates, so the smallest cache is 16 entries.
        ArgumentOutOfRangeException.ThrowIfLessThan(cacheCapacity, 16);
        _rows = rows;
        _capacity = cacheCapacity;
        _cache = new ConcurrentLfu<OnlineKey, OnlineEntry>(Environment.ProcessorCount, cacheCapacity, scheduler ?? new ThreadPoolScheduler(), EqualityComparer<OnlineKey>.Default);
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
    public ValueTask<long> WatermarkAsync(string viewId, CancellationToken cancellationToken = default) => _rows.WatermarkAsync(viewId, cancellationToken);

    /// <summary>
    /// Applies the rows of committed segment <paramref name="segmentSeq"/>: each key keeps the value
    /// with the latest event time (a backfill of older events never overwrites a newer value; at equal
    /// event times the later write wins). The watermark moves in the same transaction.
    /// </summary>
    public async ValueTask ApplyAsync(FeatureView view, long segmentSeq, IReadOnlyList<FeatureRow> rows, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(view);
        ArgumentNullException.ThrowIfNull(rows);
        var encoded = new OnlineFeatureRow[rows.Count];
        for (var i = 0; i < encoded.Length; i++)
        {
            var row = rows[i];
            encoded[i] = new OnlineFeatureRow(row.EntityKey, row.EventTime, Ordinal(segmentSeq, i), OnlineValueCodec.Encode(view.Fields, row.Values));
        }

        await _rows.ApplyAsync(view.Id, segmentSeq, encoded, cancellationToken).ConfigureAwait(false);

        // The epoch moves after the commit and before the invalidation. A reader that loaded a value
        // before the commit sees a different epoch after caching it and takes its entry back out, so
        // no stale value can outlive this write in the cache (see GetAsync).
        Interlocked.Increment(ref Epoch(view.Id).Value);
        foreach (var row in rows)
        {
            _cache.TryRemove(new OnlineKey(view.Id, row.EntityKey));
        }
    }

    /// <summary>The ordering of a row in a view's log: by segment, then by position in it.</summary>
    public static long Ordinal(long segmentSeq, int row) => (segmentSeq << 32) | (uint)row;

    /// <summary>The latest value of each key, in the order asked; keys with no value come back not found.</summary>
    /// <remarks>Completes synchronously when the cache answers every key.</remarks>
    public ValueTask<OnlineFeatureValue[]> GetAsync(FeatureView view, IReadOnlyList<string> keys, CancellationToken cancellationToken = default)
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
            return ValueTask.FromResult(result);
        }

        Interlocked.Add(ref _misses, missing.Count);
        _missCounter.Add(missing.Count);
        return LoadMissingAsync(view, keys, missing, result, cancellationToken);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private async ValueTask<OnlineFeatureValue[]> LoadMissingAsync(FeatureView view, IReadOnlyList<string> keys, List<int> missing, OnlineFeatureValue[] result, CancellationToken cancellationToken)
    {
        var epoch = Epoch(view.Id);
        var before = Volatile.Read(ref epoch.Value);
        var asked = new string[missing.Count];
        for (var j = 0; j < asked.Length; j++)
        {
            asked[j] = keys[missing[j]];
        }

        var stored = await _rows.GetAsync(view.Id, asked, cancellationToken).ConfigureAwait(false);
        var loaded = new Dictionary<string, OnlineEntry>(stored.Count, StringComparer.Ordinal);
        foreach (var row in stored)
        {
            loaded[row.EntityKey] = new OnlineEntry(row.EventTime.UtcTicks, OnlineValueCodec.Decode(view.Fields, row.Values));
        }

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

    private StrongBox<long> Epoch(string viewId) => _writeEpochs.GetOrAdd(viewId, static _ => new StrongBox<long>());

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
