namespace Atelier.Vectors.Collections.Segments;

/// <summary>
/// The hot full-precision vectors of every <see cref="VectorSegmentFile"/> that shares it, bounded by a
/// memory budget and evicting by S3-FIFO (<see cref="S3FifoCache{TKey, TValue}"/>): a new vector waits in a
/// small queue and reaches the main one only if it is read again there, so a one-off scan of cold vectors
/// does not evict the frequently re-ranked ones as an LRU would.
/// </summary>
/// <remarks>
/// Decision 0022: replayed on recorded re-rank traces, S3-FIFO kept 1.8 to 5.4 points more of the reads in
/// memory than W-TinyLFU (BitFaster's ConcurrentLfu, the policy before it) at every budget from 1% to 25% of
/// the vectors, and adapted faster when the popular topics changed.
/// </remarks>
internal sealed class FullVectorCache
{
    /// <summary>The fewest vectors the cache holds, whatever the budget.</summary>
    public const int MinimumCapacity = 3;

    /// <summary>
    /// What the cache spends per vector beyond its floats: the array's header, the entry, its dictionary node
    /// and queue slot, and the ghost key S3-FIFO may remember for it.
    /// </summary>
    public const int EntryOverheadBytes = 128;

    private readonly S3FifoCache<long, float[]> _policy;
    private int _segments;
    private long _hits;
    private long _misses;

    /// <param name="budgetBytes">Bytes of vectors the cache may hold.</param>
    /// <param name="dimension">The dimension the budget is counted in (the largest the cache will hold).</param>
    /// <param name="foregroundMaintenance">
    /// Kept for callers from before decision 0022: S3-FIFO evicts inline on every insert, so the cache is
    /// always deterministic and there is no maintenance to run elsewhere.
    /// </param>
    public FullVectorCache(long budgetBytes, int dimension, bool foregroundMaintenance = false)
    {
        _ = foregroundMaintenance;
        Dimension = dimension;
        _policy = new S3FifoCache<long, float[]>(CapacityFor(budgetBytes));
    }

    /// <summary>The dimension the budget is counted in.</summary>
    public int Dimension { get; }

    /// <summary>What one cached vector costs, so that a budget in bytes bounds memory, not only vector data.</summary>
    public long EntryBytes => ((long)Math.Max(Dimension, 1) * sizeof(float)) + EntryOverheadBytes;

    /// <summary>Bytes of vectors the cache may hold now.</summary>
    public long BudgetBytes { get; private set; }

    /// <summary>Vectors the cache may hold now.</summary>
    public int Capacity => _policy.Capacity;

    /// <summary>
    /// Changes the budget, keeping the vectors that still fit (a smaller budget evicts by the usual rules). The
    /// memory budget of a collection sets it once its graphs are open, and again as they grow.
    /// </summary>
    public void SetBudget(long budgetBytes) => _policy.Resize(CapacityFor(budgetBytes));

    /// <summary>Whether the cache holds <paramref name="key"/> (no hit or miss counted).</summary>
    public bool Contains(long key) => _policy.Contains(key);

    /// <summary>Records <paramref name="budgetBytes"/> as the budget and returns the vectors it pays for.</summary>
    private int CapacityFor(long budgetBytes)
    {
        BudgetBytes = Math.Max(0, budgetBytes);
        return (int)Math.Clamp(BudgetBytes / EntryBytes, MinimumCapacity, int.MaxValue / 2);
    }

    /// <summary>Hit ratio since the cache was created.</summary>
    public double HitRatio
    {
        get
        {
            long hits = Interlocked.Read(ref _hits);
            long total = hits + Interlocked.Read(ref _misses);
            return total == 0 ? 0 : (double)hits / total;
        }
    }

    /// <summary>Vectors held now.</summary>
    public int Count => _policy.Count;

    /// <summary>
    /// Told the key of every read, in order, hit or miss; null (the default) costs one test per read. The vector
    /// benchmark records real re-rank traces with it to replay them through other eviction policies.
    /// </summary>
    internal Action<long>? ReadObserver { get; set; }

    /// <summary>A number that no other segment of this cache has: the high bits of its cache keys.</summary>
    public int NewSegmentId() => Interlocked.Increment(ref _segments);

    public bool TryGet(long key, out float[] vector)
    {
        ReadObserver?.Invoke(key);
        if (_policy.TryGet(key, out vector))
        {
            Interlocked.Increment(ref _hits);
            return true;
        }

        Interlocked.Increment(ref _misses);
        return false;
    }

    public void Add(long key, float[] vector) => _policy.Add(key, vector);

    /// <summary>Runs pending maintenance now: nothing since decision 0022 (S3-FIFO evicts inline); kept for callers.</summary>
    public void Maintain()
    {
    }
}
