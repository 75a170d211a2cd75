using Atelier.Vectors.Collections.Segments;

namespace Atelier.Vectors.Tests.Collections;

/// <summary>What every eviction policy of the full-vector cache promises, whatever it evicts.</summary>
public abstract class EvictionPolicyContractTests
{
    private protected abstract IVectorCachePolicy<long, string> Create(int capacity);

    [Fact]
    public void TryGet_AfterAdd_ReturnsTheValue()
    {
        var cache = Create(4);
        cache.Add(7, "seven");

        Assert.True(cache.TryGet(7, out string value));
        Assert.Equal("seven", value);
        Assert.False(cache.TryGet(8, out _));
    }

    [Fact]
    public void Add_ExistingKey_ReplacesTheValueWithoutEvicting()
    {
        var cache = Create(3);
        cache.Add(1, "a");
        cache.Add(2, "b");
        cache.Add(3, "c");
        cache.Add(2, "B");

        Assert.Equal(3, cache.Count);
        Assert.True(cache.TryGet(1, out _));
        Assert.True(cache.TryGet(2, out string value));
        Assert.Equal("B", value);
        Assert.True(cache.TryGet(3, out _));
    }

    [Fact]
    public void Add_ManyMoreKeysThanCapacity_NeverHoldsMoreThanCapacity()
    {
        var cache = Create(50);
        var random = new Random(5);
        for (int i = 0; i < 20_000; i++)
        {
            long key = random.Next(500);
            if (!cache.TryGet(key, out _))
            {
                cache.Add(key, "v");
            }

            Assert.True(cache.Count <= 50);
        }
    }

    [Fact]
    public async Task ConcurrentReadersAndWriters_KeepTheBoundAndReturnOnlyWhatWasAdded()
    {
        var cache = Create(64);
        var workers = Enumerable.Range(0, 4).Select(w => Task.Run(() =>
        {
            var random = new Random(w);
            for (int i = 0; i < 50_000; i++)
            {
                long key = random.Next(1_000);
                if (cache.TryGet(key, out string value))
                {
                    Assert.Equal(key.ToString(System.Globalization.CultureInfo.InvariantCulture), value);
                }
                else
                {
                    cache.Add(key, key.ToString(System.Globalization.CultureInfo.InvariantCulture));
                }
            }
        }));
        await Task.WhenAll(workers);

        Assert.InRange(cache.Count, 1, 64);
    }

    [Fact]
    public void HotKeys_HitRepeatedly_SurviveAScanOfColdKeysTwiceTheCapacity()
    {
        var cache = Create(100);
        for (long hot = 0; hot < 20; hot++)
        {
            cache.Add(hot, "hot");
        }

        for (long cold = 1_000; cold < 1_200; cold++)
        {
            // The hot set is read between scan reads, as a serving workload keeps reading its popular vectors.
            for (long hot = 0; hot < 20; hot++)
            {
                Assert.True(cache.TryGet(hot, out _), $"hot key {hot} was evicted by the scan at {cold}");
            }

            cache.Add(cold, "cold");
        }
    }
}

/// <summary>SIEVE's eviction rules.</summary>
public sealed class SieveCacheTests : EvictionPolicyContractTests
{
    private protected override IVectorCachePolicy<long, string> Create(int capacity) => new SieveCache<long, string>(capacity);

    [Fact]
    public void Add_WhenFull_SparesTheOldestEntryIfHitAndEvictsTheNextOneNotHit()
    {
        var cache = new SieveCache<long, string>(3);
        cache.Add(1, "a");
        cache.Add(2, "b");
        cache.Add(3, "c");
        cache.TryGet(1, out _);

        cache.Add(4, "d");

        Assert.True(cache.Contains(1));
        Assert.False(cache.Contains(2));
        Assert.True(cache.Contains(3));
        Assert.True(cache.Contains(4));
    }

    [Fact]
    public void Evict_ResumesWhereTheHandStopped_AndWrapsToTheOldestEntry()
    {
        var cache = new SieveCache<long, string>(3);
        cache.Add(1, "a");
        cache.Add(2, "b");
        cache.Add(3, "c");
        cache.TryGet(1, out _);
        cache.Add(4, "d"); // clears 1's bit, evicts 2; the hand stops at 3

        cache.Add(5, "e"); // 3 was not hit: evicted, although 1 is older
        Assert.False(cache.Contains(3));
        Assert.True(cache.Contains(1));

        cache.TryGet(4, out _);
        cache.TryGet(5, out _);
        cache.Add(6, "f"); // 4 and 5 are spared (bits cleared), the hand wraps to 1, whose bit it cleared before
        Assert.False(cache.Contains(1));
        Assert.True(cache.Contains(4));
        Assert.True(cache.Contains(5));
        Assert.True(cache.Contains(6));
    }

    [Fact]
    public void Add_WhenEveryEntryWasHit_ClearsThemAllAndEvictsTheOldest()
    {
        var cache = new SieveCache<long, string>(3);
        cache.Add(1, "a");
        cache.Add(2, "b");
        cache.Add(3, "c");
        cache.TryGet(1, out _);
        cache.TryGet(2, out _);
        cache.TryGet(3, out _);

        cache.Add(4, "d");

        Assert.False(cache.Contains(1));
        Assert.True(cache.Contains(2));
        Assert.True(cache.Contains(3));
    }
}

/// <summary>S3-FIFO's eviction rules: small queue, main queue, ghost queue.</summary>
public sealed class S3FifoCacheTests : EvictionPolicyContractTests
{
    private protected override IVectorCachePolicy<long, string> Create(int capacity) => new S3FifoCache<long, string>(capacity);

    private static S3FifoCache<long, string> Full(int capacity)
    {
        var cache = new S3FifoCache<long, string>(capacity);
        for (long key = 0; key < capacity; key++)
        {
            cache.Add(key, "v");
        }

        return cache;
    }

    [Fact]
    public void NewKeyNeverHit_IsEvictedFromTheSmallQueueIntoTheGhosts()
    {
        var cache = Full(10);

        cache.Add(10, "v");

        Assert.False(cache.Contains(0));
        Assert.True(cache.IsGhost(0));
        Assert.True(cache.Contains(10));
    }

    [Fact]
    public void KeyHitInTheSmallQueue_MovesToTheMainQueueInsteadOfBeingEvicted()
    {
        var cache = Full(10);
        cache.TryGet(0, out _);

        cache.Add(10, "v");

        Assert.True(cache.IsInMain(0));
        Assert.False(cache.Contains(1));
        Assert.True(cache.IsGhost(1));
    }

    [Fact]
    public void GhostKey_AddedAgain_GoesStraightToTheMainQueue()
    {
        var cache = Full(10);
        cache.Add(10, "v"); // 0 becomes a ghost

        cache.Add(0, "v");

        Assert.True(cache.IsInMain(0));
        Assert.False(cache.IsGhost(0));
    }

    [Fact]
    public void MainQueue_SparesAnEntryOncePerHit_AndEvictsOneNotHitWithoutRememberingIt()
    {
        var cache = Full(20); // small queue: 2 entries
        for (long key = 0; key < 20; key++)
        {
            cache.TryGet(key, out _);
        }

        cache.Add(20, "v"); // 0..18 move to main with their counts cleared, leaving 19 in small; main evicts 0
        Assert.False(cache.Contains(0));
        Assert.False(cache.IsGhost(0));
        Assert.True(cache.IsInMain(1));

        cache.TryGet(1, out _);
        cache.TryGet(1, out _);
        cache.Add(21, "v"); // 19 (hit) moves to main, leaving small under its share: main spares 1, evicts 2

        Assert.True(cache.IsInMain(1));
        Assert.False(cache.Contains(2));
        Assert.False(cache.IsGhost(2));
    }

    [Fact]
    public void MoveToMainThreshold_OfTwo_EvictsAKeyHitOnlyOnceInTheSmallQueue()
    {
        var cache = new S3FifoCache<long, string>(10, moveToMainThreshold: 2);
        for (long key = 0; key < 10; key++)
        {
            cache.Add(key, "v");
        }

        cache.TryGet(0, out _);
        cache.TryGet(1, out _);
        cache.TryGet(1, out _);

        cache.Add(10, "v"); // 0, hit once, is evicted
        cache.Add(11, "v"); // 1, hit twice, moves to main; 2 is evicted

        Assert.False(cache.Contains(0));
        Assert.True(cache.IsGhost(0));
        Assert.True(cache.IsInMain(1));
    }

    [Fact]
    public void Resize_Smaller_KeepsTheHitKeysThatFit_AndLarger_KeepsEverything()
    {
        var cache = Full(20);
        for (long key = 0; key < 5; key++)
        {
            cache.TryGet(key, out _);
        }

        cache.Resize(8);

        Assert.Equal(8, cache.Capacity);
        Assert.Equal(8, cache.Count);
        for (long key = 0; key < 5; key++)
        {
            Assert.True(cache.Contains(key), $"hit key {key} was evicted by the shrink");
        }

        cache.Resize(30);
        for (long key = 100; key < 122; key++)
        {
            cache.Add(key, "v");
        }

        Assert.Equal(30, cache.Count);
        for (long key = 0; key < 5; key++)
        {
            Assert.True(cache.Contains(key), $"hit key {key} was lost when the cache grew");
        }
    }
}
