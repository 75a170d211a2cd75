using System.Collections.Concurrent;

namespace Atelier.Vectors.Collections.Segments;

/// <summary>
/// A bounded cache evicting by S3-FIFO (Yang et al., SOSP 2023): a small FIFO queue (10% of the entries) that
/// new keys enter, a main FIFO queue (the rest), and a ghost queue remembering the keys recently evicted from
/// the small one. A key leaving the small queue moves to the main one if it was hit there
/// (<c>moveToMainThreshold</c> times), else it is evicted and remembered as a ghost; a ghost key inserted again
/// goes straight to the main queue. The main queue evicts like a 2-bit CLOCK: an entry's hit count (capped at 3)
/// buys it one more trip round per hit.
/// </summary>
/// <remarks>
/// A hit only bumps a small counter on the entry, without a lock; inserts and evictions take one lock. The
/// small queue is the filter that keeps one-hit wonders (a scan) out of the main queue.
/// </remarks>
internal sealed class S3FifoCache<TKey, TValue> : IVectorCachePolicy<TKey, TValue>
    where TKey : notnull
{
    private const int MaxFrequency = 3;

    private readonly ConcurrentDictionary<TKey, Entry> _map;
    private readonly Lock _lock = new();
    private readonly Queue<Entry> _small = new();
    private readonly Queue<Entry> _main = new();

    // Ghost keys with the insertion number they were remembered at; the queue may hold older numbers of a key
    // that was remembered again or taken back, which are skipped when they reach its end.
    private readonly Dictionary<TKey, long> _ghosts = [];
    private readonly Queue<(TKey Key, long Number)> _ghostQueue = new();
    private int _capacity;
    private int _smallCapacity;
    private int _ghostCapacity;
    private readonly int _moveToMainThreshold;
    private long _ghostNumber;

    // Entries held, changed only under _lock: ConcurrentDictionary.Count would take every bucket lock per insert.
    private int _count;

    /// <param name="capacity">Entries the cache holds at most.</param>
    /// <param name="moveToMainThreshold">
    /// Hits an entry needs while in the small queue to move to the main one (1, the authors' library default;
    /// the paper's pseudo-code uses 2).
    /// </param>
    public S3FifoCache(int capacity, int moveToMainThreshold = 1)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(moveToMainThreshold, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(moveToMainThreshold, MaxFrequency);
        SetCapacity(capacity);
        _moveToMainThreshold = moveToMainThreshold;
        _map = new ConcurrentDictionary<TKey, Entry>(Environment.ProcessorCount, capacity);
    }

    /// <inheritdoc />
    public int Capacity => Volatile.Read(ref _capacity);

    /// <summary>
    /// Changes how many entries the cache holds, keeping what it holds: a smaller capacity evicts by the usual
    /// rules until it fits, a larger one leaves room to grow.
    /// </summary>
    public void Resize(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        lock (_lock)
        {
            SetCapacity(capacity);
            while (_count > _capacity)
            {
                Evict();
            }

            TrimGhosts();
        }
    }

    /// <inheritdoc />
    public int Count => Volatile.Read(ref _count);

    /// <inheritdoc />
    public bool TryGet(TKey key, out TValue value)
    {
        if (_map.TryGetValue(key, out var entry))
        {
            // Racy increment: a lost hit on a contended entry changes when it is evicted, never correctness.
            int frequency = entry.Frequency;
            if (frequency < MaxFrequency)
            {
                entry.Frequency = frequency + 1;
            }

            value = entry.Value;
            return true;
        }

        value = default!;
        return false;
    }

    /// <inheritdoc />
    public void Add(TKey key, TValue value)
    {
        lock (_lock)
        {
            if (_map.TryGetValue(key, out var existing))
            {
                existing.Value = value;
                return;
            }

            while (_count >= _capacity)
            {
                Evict();
            }

            var entry = new Entry(key, value);
            if (_ghosts.Remove(key))
            {
                _main.Enqueue(entry);
            }
            else
            {
                _small.Enqueue(entry);
            }

            _map[key] = entry;
            Volatile.Write(ref _count, _count + 1);
        }
    }

    /// <summary>Whether <paramref name="key"/> is cached, without counting as a hit (tests).</summary>
    internal bool Contains(TKey key) => _map.ContainsKey(key);

    /// <summary>Whether <paramref name="key"/> is cached in the main queue (tests).</summary>
    internal bool IsInMain(TKey key)
    {
        lock (_lock)
        {
            return _map.TryGetValue(key, out var entry) && _main.Contains(entry);
        }
    }

    /// <summary>Whether <paramref name="key"/> is remembered as a ghost (tests).</summary>
    internal bool IsGhost(TKey key)
    {
        lock (_lock)
        {
            return _ghosts.ContainsKey(key);
        }
    }

    private void SetCapacity(int capacity)
    {
        Volatile.Write(ref _capacity, capacity);
        _smallCapacity = Math.Max(1, capacity / 10);
        _ghostCapacity = Math.Max(1, capacity - _smallCapacity);
    }

    /// <summary>Evicts one entry (moving others between queues on the way).</summary>
    private void Evict()
    {
        while (true)
        {
            if (_small.Count >= _smallCapacity || _main.Count == 0)
            {
                var entry = _small.Dequeue();
                if (entry.Frequency >= _moveToMainThreshold)
                {
                    // Hit while on probation: kept, its count cleared so it must be hit again in the main queue.
                    entry.Frequency = 0;
                    _main.Enqueue(entry);
                    continue;
                }

                _map.TryRemove(entry.Key, out _);
                Volatile.Write(ref _count, _count - 1);
                Remember(entry.Key);
                return;
            }

            var candidate = _main.Dequeue();
            if (candidate.Frequency > 0)
            {
                candidate.Frequency--;
                _main.Enqueue(candidate);
                continue;
            }

            _map.TryRemove(candidate.Key, out _);
            Volatile.Write(ref _count, _count - 1);
            return;
        }
    }

    private void Remember(TKey key)
    {
        long number = ++_ghostNumber;
        _ghosts[key] = number;
        _ghostQueue.Enqueue((key, number));
        TrimGhosts();
    }

    private void TrimGhosts()
    {
        while (_ghosts.Count > _ghostCapacity || _ghostQueue.Count > 2 * _ghostCapacity)
        {
            var (oldest, oldestNumber) = _ghostQueue.Dequeue();
            if (_ghosts.TryGetValue(oldest, out long current) && current == oldestNumber)
            {
                _ghosts.Remove(oldest);
            }
        }
    }

    private sealed class Entry(TKey key, TValue value)
    {
        public TKey Key { get; } = key;

        public TValue Value { get; set; } = value;

        public int Frequency { get; set; }
    }
}
