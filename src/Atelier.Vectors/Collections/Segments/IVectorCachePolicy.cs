namespace Atelier.Vectors.Collections.Segments;

/// <summary>
/// A bounded, thread-safe map from a vector's cache key to its full vector, with an eviction policy:
/// <see cref="S3FifoCache{TKey, TValue}"/> (what <see cref="FullVectorCache"/> is built on) and
/// <see cref="SieveCache{TKey, TValue}"/>, replayed with W-TinyLFU and LRU on the same recorded traces by
/// bench/Atelier.Vectors.Bench (part <c>cache</c>; decision 0022).
/// </summary>
internal interface IVectorCachePolicy<TKey, TValue>
    where TKey : notnull
{
    /// <summary>Entries held at most.</summary>
    int Capacity { get; }

    /// <summary>Entries held now.</summary>
    int Count { get; }

    /// <summary>The cached value of <paramref name="key"/>; a hit counts towards keeping it.</summary>
    bool TryGet(TKey key, out TValue value);

    /// <summary>Caches <paramref name="value"/> under <paramref name="key"/>, evicting by the policy when full.</summary>
    void Add(TKey key, TValue value);
}
