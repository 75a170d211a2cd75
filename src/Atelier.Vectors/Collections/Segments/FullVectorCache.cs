using BitFaster.Caching.Lfu;
using BitFaster.Caching.Scheduler;

namespace Atelier.Vectors.Collections.Segments;

/// <summary>
/// The hot full-precision vectors of every <see cref="VectorSegmentFile"/> that shares it, bounded by a
/// memory budget: a W-TinyLFU cache (BitFaster's <see cref="ConcurrentLfu{K,V}"/>), so a one-off scan of cold
/// vectors does not evict the frequently re-ranked ones as an LRU would.
/// </summary>
internal sealed class FullVectorCache
{
    private readonly ConcurrentLfu<long, float[]> _lfu;
    private int _segments;

    /// <param name="budgetBytes">Bytes of vectors the cache may hold.</param>
    /// <param name="dimension">The dimension the budget is counted in (the largest the cache will hold).</param>
    /// <param name="foregroundMaintenance">Runs eviction inline, so that it is deterministic (tests).</param>
    public FullVectorCache(long budgetBytes, int dimension, bool foregroundMaintenance = false)
    {
        int capacity = (int)Math.Clamp(budgetBytes / ((long)Math.Max(dimension, 1) * sizeof(float)), 1, int.MaxValue / 2);
        IScheduler scheduler = foregroundMaintenance ? new ForegroundScheduler() : new ThreadPoolScheduler();
        _lfu = new ConcurrentLfu<long, float[]>(Environment.ProcessorCount, capacity, scheduler, EqualityComparer<long>.Default);
    }

    /// <summary>Hit ratio since the cache was created.</summary>
    public double HitRatio => _lfu.Metrics.Value?.HitRatio ?? 0;

    /// <summary>Vectors held now.</summary>
    public int Count => _lfu.Count;

    /// <summary>A number that no other segment of this cache has: the high bits of its cache keys.</summary>
    public int NewSegmentId() => Interlocked.Increment(ref _segments);

    public bool TryGet(long key, out float[] vector) => _lfu.TryGet(key, out vector!);

    public void Add(long key, float[] vector) => _lfu.AddOrUpdate(key, vector);

    /// <summary>Runs pending maintenance (eviction, frequency sketch updates) now.</summary>
    public void Maintain() => _lfu.DoMaintenance();
}
