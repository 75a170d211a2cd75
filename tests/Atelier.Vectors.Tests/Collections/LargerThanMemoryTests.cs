using Atelier.Vectors.Collections;
using Atelier.Vectors.Collections.Segments;
using Atelier.Vectors.Kernels;

namespace Atelier.Vectors.Tests.Collections;

/// <summary>
/// Collections larger than memory: walked on product-quantisation codes, re-ranked on full vectors from
/// segment files over two directories, opened from the saved graph and payloads without a rebuild, held to a
/// memory budget, and still taking inserts and deletes.
/// </summary>
public sealed class LargerThanMemoryTests : IDisposable
{
    private const int Dimension = 32;
    private const int Subspaces = 8;
    private readonly CollectionStoreFixture _fixture = new();
    private readonly string _segments = global::Atelier.Testing.TestCleanup.CreateDirectory("atelier-scale");

    public void Dispose()
    {
        _fixture.Dispose();
        if (Directory.Exists(_segments))
        {
            Directory.Delete(_segments, recursive: true);
        }
    }

    private CollectionStoreOptions Options(long memoryBudget = 0) => new()
    {
        VectorSegmentDirectories = [Path.Combine(_segments, "nvme0"), Path.Combine(_segments, "nvme1")],
        MemoryBudgetBytes = memoryBudget,
        ForegroundCacheMaintenance = true,
        MinSnapshotLogBytes = long.MaxValue,
    };

    private static CollectionConfig Config(int productQuantization = Subspaces) => new()
    {
        Dimension = Dimension,
        Metric = DistanceMetric.L2,
        Storage = VectorStorage.Int8,
        ProductQuantization = productQuantization,
        Shards = 2,
        Locations = [CollectionStoreFixture.Location],
        M = 12,
        EfConstruction = 80,
    };

    /// <summary>Every third point has a payload; the others have none (and cost no payload entry).</summary>
    private static Payload PayloadOf(int i) => i % 3 == 0 ? new Payload([new("n", PayloadValue.Of(i))]) : Payload.Empty;

    private static CollectionPoint[] Points(float[] data, int start, int count) =>
    [
        .. Enumerable.Range(start, count).Select(i => new CollectionPoint(i, data.AsSpan(i * Dimension, Dimension).ToArray(), PayloadOf(i))),
    ];

    private async Task<string> CreateCompactedAsync(float[] data, CollectionStoreOptions options)
    {
        using var store = _fixture.OpenStore(options);
        var collection = await store.CreateAsync(CollectionStoreFixture.Workspace, "big", Config(), "default", "test", CancellationToken.None);
        await collection.UpsertAsync(Points(data, 0, data.Length / Dimension), "test", CancellationToken.None);
        await collection.CompactAsync(CancellationToken.None);
        return collection.Record.Id;
    }

    private static double Recall(VectorCollection collection, float[] data, int queries)
    {
        int hits = 0;
        for (int q = 0; q < queries; q++)
        {
            var query = data.AsSpan(q * 37 * Dimension, Dimension).ToArray();
            var exact = Enumerable.Range(0, data.Length / Dimension)
                .OrderBy(i => VectorDistance.L2Squared(query, data.AsSpan(i * Dimension, Dimension)))
                .Take(10)
                .Select(i => (long)i)
                .ToHashSet();
            hits += collection.Search(query, 10, null, 100, withVector: false).Count(p => exact.Contains(p.Id));
        }

        return hits / (queries * 10.0);
    }

    [Fact]
    public async Task Reopen_AfterCompaction_OpensEveryShardFromItsSavedGraphAndPayloads_WithoutARebuild()
    {
        var data = ClusteredData.Generate(2_000, Dimension, clusters: 20, seed: 51);
        await CreateCompactedAsync(data, Options());

        _fixture.Reopen();
        using var store = _fixture.OpenStore(Options());
        var collection = await store.GetAsync(CollectionStoreFixture.Workspace, "big", CancellationToken.None);

        Assert.Equal(2, collection.ShardsOpenedFromSavedGraph);
        Assert.Equal(2_000, collection.Count);
        for (int i = 0; i < 2_000; i += 7)
        {
            Assert.True(collection.TryGet(i, out var vector, out var payload));
            Assert.Equal(data.AsSpan(i * Dimension, Dimension).ToArray(), vector);
            Assert.Equal(PayloadOf(i).ToString(), payload.ToString());
        }

        double recall = Recall(collection, data, queries: 40);
        Assert.True(recall >= 0.9, $"recall@10 {recall:F3}");
    }

    [Fact]
    public async Task Reopened_Collection_KeepsTakingInsertsAndDeletes_AndTheNextOpenSeesThem()
    {
        var data = ClusteredData.Generate(2_400, Dimension, clusters: 20, seed: 52);
        var head = data[..(2_000 * Dimension)];
        await CreateCompactedAsync(head, Options());

        _fixture.Reopen();
        using (var store = _fixture.OpenStore(Options()))
        {
            var collection = await store.GetAsync(CollectionStoreFixture.Workspace, "big", CancellationToken.None);
            Assert.Equal(2, collection.ShardsOpenedFromSavedGraph);
            await collection.UpsertAsync(Points(data, 2_000, 400), "test", CancellationToken.None);
            Assert.Equal(2, await collection.DeleteAsync([3, 2_003], "test", CancellationToken.None));

            var query = data.AsSpan(2_100 * Dimension, Dimension).ToArray();
            Assert.Equal(2_100, collection.Search(query, 1, null, null, withVector: false)[0].Id);
            Assert.DoesNotContain(collection.Search(data.AsSpan(3 * Dimension, Dimension).ToArray(), 10, null, 100, withVector: false), p => p.Id == 3);
            await collection.CompactAsync(CancellationToken.None);
        }

        _fixture.Reopen();
        using (var store = _fixture.OpenStore(Options()))
        {
            var collection = await store.GetAsync(CollectionStoreFixture.Workspace, "big", CancellationToken.None);
            Assert.Equal(2, collection.ShardsOpenedFromSavedGraph);
            Assert.Equal(2_398, collection.Count);
            Assert.False(collection.TryGet(2_003, out _, out _));
            Assert.True(collection.TryGet(2_001, out var vector, out var payload));
            Assert.Equal(data.AsSpan(2_001 * Dimension, Dimension).ToArray(), vector);
            Assert.Equal(PayloadOf(2_001).ToString(), payload.ToString());
        }
    }

    [Theory]
    [InlineData("torn")]
    [InlineData("other snapshot")]
    [InlineData("missing")]
    public async Task Reopen_WithADamagedPayloadFile_ReadsThePayloadsFromTheSnapshot(string damage)
    {
        var data = ClusteredData.Generate(1_000, Dimension, clusters: 10, seed: 53);
        string id = await CreateCompactedAsync(data, Options());
        foreach (var directory in Directory.GetDirectories(Path.Combine(_segments, "nvme0", id)).Concat(Directory.GetDirectories(Path.Combine(_segments, "nvme1", id))))
        {
            string path = Path.Combine(directory, SavedPayloads.FileName);
            Assert.True(File.Exists(path));
            if (damage == "torn")
            {
                using var stream = new FileStream(path, FileMode.Open);
                stream.SetLength(stream.Length - 3);
            }
            else if (damage == "other snapshot")
            {
                var bytes = File.ReadAllBytes(path);
                bytes[8]++;
                File.WriteAllBytes(path, bytes);
            }
            else
            {
                File.Delete(path);
            }
        }

        _fixture.Reopen();
        using var store = _fixture.OpenStore(Options());
        var collection = await store.GetAsync(CollectionStoreFixture.Workspace, "big", CancellationToken.None);
        Assert.Equal(2, collection.ShardsOpenedFromSavedGraph);
        for (int i = 0; i < 1_000; i += 3)
        {
            Assert.True(collection.TryGet(i, out _, out var payload));
            Assert.Equal(PayloadOf(i).ToString(), payload.ToString());
        }
    }

    [Fact]
    public void SavedPayloads_AfterAWriteThatFailedPartWay_KeepsThePreviousFile()
    {
        string directory = Path.Combine(_segments, "payloads");
        Directory.CreateDirectory(directory);
        var first = new Dictionary<long, Payload> { [1] = PayloadOf(3) };
        SavedPayloads.Write(directory, covered: 5, snapshotBytes: 100, first);

        // A writer that dies mid-stream (as a crash would) leaves the committed file as it was and no temporary.
        var failing = new FailingCollection();
        Assert.Throws<InvalidOperationException>(() => SavedPayloads.Write(directory, covered: 6, snapshotBytes: 200, failing));
        var read = SavedPayloads.TryRead(directory, covered: 5);
        Assert.NotNull(read);
        Assert.Equal(100, read.Value.SnapshotBytes);
        Assert.Equal(1, Assert.Single(read.Value.Payloads).Key);
        Assert.Null(SavedPayloads.TryRead(directory, covered: 6));
        Assert.Equal([SavedPayloads.FileName], Directory.GetFiles(directory).Select(Path.GetFileName));
    }

    [Fact]
    public async Task MemoryBudget_GivesTheCacheWhatTheGraphsLeave_AndTheCacheNeverHoldsMore()
    {
        var data = ClusteredData.Generate(2_000, Dimension, clusters: 20, seed: 54);
        await CreateCompactedAsync(data, Options());

        _fixture.Reopen();
        const long Budget = 1L << 20;
        using var store = _fixture.OpenStore(Options(memoryBudget: Budget));
        var collection = await store.GetAsync(CollectionStoreFixture.Workspace, "big", CancellationToken.None);
        var cache = collection.VectorCache!;
        Assert.False(collection.OverMemoryBudget);
        Assert.Equal(Budget - collection.ResidentIndexBytes, cache.BudgetBytes);
        int capacity = (int)(cache.BudgetBytes / ((Dimension * sizeof(float)) + FullVectorCache.EntryOverheadBytes));
        Assert.Equal(capacity, cache.Capacity);

        for (int q = 0; q < 2_000; q += 3)
        {
            collection.Search(data.AsSpan(q * Dimension, Dimension).ToArray(), 10, null, 64, withVector: false);
            cache.Maintain();
            Assert.True(cache.Count <= capacity, $"{cache.Count} vectors cached, capacity {capacity}");
        }
    }

    [Fact]
    public async Task MemoryBudget_BelowWhatTheGraphsNeed_IsReportedAndLeavesTheCacheItsMinimum()
    {
        var data = ClusteredData.Generate(1_000, Dimension, clusters: 10, seed: 55);
        await CreateCompactedAsync(data, Options());

        _fixture.Reopen();
        using var store = _fixture.OpenStore(Options(memoryBudget: 4_096));
        var collection = await store.GetAsync(CollectionStoreFixture.Workspace, "big", CancellationToken.None);
        Assert.True(collection.OverMemoryBudget);
        Assert.Equal(FullVectorCache.MinimumCapacity, collection.VectorCache!.Capacity);
        var query = data.AsSpan(10 * Dimension, Dimension).ToArray();
        Assert.Equal(10, collection.Search(query, 1, null, null, withVector: false)[0].Id);
    }

    [Theory]
    [InlineData(VectorStorage.Float32, 8)]
    [InlineData(VectorStorage.Int8, 5)]
    public async Task Create_WithProductQuantizationItCannotUse_IsRefusedAndLeavesNothing(VectorStorage storage, int subspaces)
    {
        using var store = _fixture.OpenStore(Options());
        await Assert.ThrowsAsync<Atelier.Core.Errors.BadRequestException>(() =>
            store.CreateAsync(CollectionStoreFixture.Workspace, "big", Config(subspaces) with { Storage = storage }, "default", "test", CancellationToken.None));
        Assert.Empty(await store.ListAsync(CollectionStoreFixture.Workspace, CancellationToken.None));
    }

    /// <summary>A payload collection whose enumeration fails after the first record, as a write cut short would.</summary>
    private sealed class FailingCollection : IReadOnlyCollection<KeyValuePair<long, Payload>>
    {
        public int Count => 2;

        public IEnumerator<KeyValuePair<long, Payload>> GetEnumerator()
        {
            yield return new(1, PayloadOf(3));
            throw new InvalidOperationException("the writer died");
        }

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }
}
