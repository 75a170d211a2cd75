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
    /// <summary>The fewest vectors the cache holds, whatever the budget.</summary>
    public const int MinimumCapacity = 3;

    private readonly IScheduler _scheduler;
    private ConcurrentLfu<long, float[]> _lfu;
    private int _segments;

    /// <param name="budgetBytes">Bytes of vectors the cache may hold.</param>
    /// <param name="dimension">The dimension the budget is counted in (the largest the cache will hold).</param>
    /// <param name="foregroundMaintenance">Runs eviction inline, so that it is deterministic (tests).</param>
    public FullVectorCache(long budgetBytes, int dimension, bool foregroundMaintenance = false)
    {
        Dimension = dimension;
        _scheduler = foregroundMaintenance ? new ForegroundScheduler() : new ThreadPoolScheduler();
        _lfu = Create(budgetBytes);
    }

    /// <summary>The dimension the budget is counted in.</summary>
    public int Dimension { get; }

    /// <summary>
    /// What one cached vector costs: its floats, the array's header and the cache's node for it (about 64
    /// bytes together), so a budget in bytes is a bound on memory, not only on vector data.
    /// </summary>
    public long EntryBytes => ((long)Math.Max(Dimension, 1) * sizeof(float)) + 64;

    /// <summary>Bytes of vectors the cache may hold now.</summary>
    public long BudgetBytes { get; private set; }

    /// <summary>Vectors the cache may hold now.</summary>
    public int Capacity => _lfu.Capacity;

    /// <summary>
    /// Replaces the budget, dropping what the cache holds (it is filled again by the next reads). The memory
    /// budget of a collection sets it once its graphs are open, to what they leave.
    /// </summary>
    public void SetBudget(long budgetBytes) => Volatile.Write(ref _lfu, Create(budgetBytes));

    /// <summary>Whether the cache holds <paramref name="key"/> (no hit or miss counted).</summary>
    public bool Contains(long key) => _lfu.TryGet(key, out _);

    private ConcurrentLfu<long, float[]> Create(long budgetBytes)
    {
        // A budget below three vectors still holds three: the least W-TinyLFU takes (a window, a probation
        // and a protected segment), a few kilobytes against a budget of gigabytes.
        BudgetBytes = Math.Max(0, budgetBytes);
        int capacity = (int)Math.Clamp(BudgetBytes / EntryBytes, MinimumCapacity, int.MaxValue / 2);
        return new ConcurrentLfu<long, float[]>(Environment.ProcessorCount, capacity, _scheduler, EqualityComparer<long>.Default);
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
