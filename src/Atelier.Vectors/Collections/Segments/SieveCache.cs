using System.Collections.Concurrent;

namespace Atelier.Vectors.Collections.Segments;

/// <summary>
/// A bounded cache evicting by SIEVE (Zhang et al., NSDI 2024): one FIFO queue, new entries at its head, and
/// a hand that walks from the tail towards the head. An entry hit since the hand last passed it is spared
/// (its bit cleared, it stays where it is); the first entry not hit is evicted and the hand stops there.
/// </summary>
/// <remarks>
/// A hit only sets a flag on the entry, without a lock, so readers never contend; inserts and evictions take
/// one lock. Unlike CLOCK's reinsertion, a spared entry is not moved to the head, so new entries that are
/// never hit again leave quickly (the "lazy promotion, quick demotion" the paper names).
/// </remarks>
internal sealed class SieveCache<TKey, TValue> : IVectorCachePolicy<TKey, TValue>
    where TKey : notnull
{
    private readonly ConcurrentDictionary<TKey, Node> _map;
    private readonly Lock _lock = new();
    private readonly int _capacity;

    // The queue runs from _head (newest) to _tail (oldest); Older points towards the tail.
    private Node? _head;
    private Node? _tail;
    private Node? _hand;

    // Entries held, changed only under _lock: ConcurrentDictionary.Count would take every bucket lock per insert.
    private int _count;

    /// <param name="capacity">Entries the cache holds at most.</param>
    public SieveCache(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _capacity = capacity;
        _map = new ConcurrentDictionary<TKey, Node>(Environment.ProcessorCount, capacity);
    }

    /// <inheritdoc />
    public int Capacity => _capacity;

    /// <inheritdoc />
    public int Count => Volatile.Read(ref _count);

    /// <inheritdoc />
    public bool TryGet(TKey key, out TValue value)
    {
        if (_map.TryGetValue(key, out var node))
        {
            // Written only when clear, so a hot entry's cache line is not dirtied on every hit.
            if (!node.Visited)
            {
                node.Visited = true;
            }

            value = node.Value;
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

            if (_count >= _capacity)
            {
                Evict();
            }

            var node = new Node(key, value) { Older = _head };
            if (_head is not null)
            {
                _head.Newer = node;
            }

            _head = node;
            _tail ??= node;
            _map[key] = node;
            Volatile.Write(ref _count, _count + 1);
        }
    }

    /// <summary>Whether <paramref name="key"/> is cached, without counting as a hit (tests).</summary>
    internal bool Contains(TKey key) => _map.ContainsKey(key);

    private void Evict()
    {
        var hand = _hand ?? _tail!;
        while (hand.Visited)
        {
            hand.Visited = false;
            hand = hand.Newer ?? _tail!;
        }

        _hand = hand.Newer;
        Unlink(hand);
        _map.TryRemove(hand.Key, out _);
        Volatile.Write(ref _count, _count - 1);
    }

    private void Unlink(Node node)
    {
        if (node.Newer is null)
        {
            _head = node.Older;
        }
        else
        {
            node.Newer.Older = node.Older;
        }

        if (node.Older is null)
        {
            _tail = node.Newer;
        }
        else
        {
            node.Older.Newer = node.Newer;
        }
    }

    private sealed class Node(TKey key, TValue value)
    {
        public TKey Key { get; } = key;

        public TValue Value { get; set; } = value;

        public Node? Older { get; set; }

        public Node? Newer { get; set; }

        // Racy by design: a lost update only spares or evicts one entry one pass early or late.
        public volatile bool Visited;
    }
}
