using Atelier.Vectors.Kernels;
using Atelier.Vectors.Table;

namespace Atelier.Vectors.Tests;

public sealed class EmbeddingTableTests : IDisposable
{
    private const int Dimension = 32;
    private readonly string _root = Path.Combine(Path.GetTempPath(), "atelier-table-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_root))
        {
            Directory.Delete(_root, recursive: true);
        }
    }

    private EmbeddingTableOptions Options(long budgetBytes = 1L << 20, int shards = 4) => new()
    {
        Dimension = Dimension,
        Directories = [Path.Combine(_root, "nvme0"), Path.Combine(_root, "nvme1")],
        ShardCount = shards,
        MemoryBudgetBytes = budgetBytes,
        M = 12,
        EfConstruction = 80,
    };

    private static SearchHit[] BruteForce(float[] data, ReadOnlySpan<float> query, int k, Func<long, bool>? keep = null)
    {
        var hits = new List<SearchHit>();
        for (int i = 0; i < data.Length / Dimension; i++)
        {
            if (keep is null || keep(i))
            {
                hits.Add(new SearchHit(i, VectorDistance.L2Squared(query, data.AsSpan(i * Dimension, Dimension))));
            }
        }

        return [.. hits.OrderBy(h => h.Distance).Take(k)];
    }

    [Fact]
    public void Search_OverShardsOnSeveralDirectories_MatchesBruteForceRecall()
    {
        var data = ClusteredData.Generate(4_000, Dimension, clusters: 30, seed: 31);
        var queries = ClusteredData.Generate(50, Dimension, clusters: 30, seed: 32);
        using var table = EmbeddingTable.Open(Options());
        table.Upsert(ClusteredData.Ids(4_000), data);

        int hits = 0;
        for (int q = 0; q < 50; q++)
        {
            var query = queries.AsSpan(q * Dimension, Dimension);
            var truth = BruteForce(data, query, 10).Select(h => h.Id).ToHashSet();
            hits += table.Search(query, 10, ef: 64).Count(h => truth.Contains(h.Id));
        }

        Assert.True(hits / 500.0 >= 0.95, $"recall {hits / 500.0:F3}");
        Assert.Equal(4_000, table.Count);
        Assert.Equal(2, Directory.GetDirectories(Path.Combine(_root, "nvme0")).Length);
        Assert.Equal(2, Directory.GetDirectories(Path.Combine(_root, "nvme1")).Length);
    }

    [Fact]
    public void Search_WithFilterAndDeletes_NeverReturnsFilteredOrDeletedIds()
    {
        var data = ClusteredData.Generate(2_000, Dimension, clusters: 10, seed: 33);
        using var table = EmbeddingTable.Open(Options());
        table.Upsert(ClusteredData.Ids(2_000), data);
        for (long id = 0; id < 2_000; id += 3)
        {
            Assert.True(table.Delete(id));
        }

        var filter = new PredicateFilter(id => id % 2 == 0);
        var queries = ClusteredData.Generate(30, Dimension, clusters: 10, seed: 34);
        for (int q = 0; q < 30; q++)
        {
            var hits = table.Search(queries.AsSpan(q * Dimension, Dimension), 10, ef: 32, filter);
            Assert.Equal(10, hits.Length);
            Assert.All(hits, h => Assert.True(h.Id % 2 == 0 && h.Id % 3 != 0, $"id {h.Id}"));
        }
    }

    [Fact]
    public void Open_AfterCrashWithUnflushedVectors_KeepsTheCommittedOnesAndDropsTheRest()
    {
        var data = ClusteredData.Generate(1_500, Dimension, clusters: 10, seed: 35);
        var query = data.AsSpan(0, Dimension).ToArray();
        SearchHit[] committed;
        using (var table = EmbeddingTable.Open(Options()))
        {
            table.Upsert(ClusteredData.Ids(1_000), data.AsSpan(0, 1_000 * Dimension));
            table.Flush();
            committed = table.Search(query, 10);

            // Appended to the segment files but never committed: the process "crashes" here.
            table.Upsert(ClusteredData.Ids(500, start: 1_000), data.AsSpan(1_000 * Dimension));
        }

        using var reopened = EmbeddingTable.Open(Options());

        Assert.Equal(1_000, reopened.Count);
        Assert.Equal(committed, reopened.Search(query, 10));
        reopened.Upsert(ClusteredData.Ids(500, start: 1_000), data.AsSpan(1_000 * Dimension));
        Assert.Equal(1_500, reopened.Count);
        Assert.Equal(BruteForce(data, query, 1)[0].Id, reopened.Search(query, 1)[0].Id);
    }

    [Fact]
    public void Open_WithTruncatedVectorSegment_FailsClearly()
    {
        using (var table = EmbeddingTable.Open(Options(shards: 1)))
        {
            table.Upsert(ClusteredData.Ids(300), ClusteredData.Generate(300, Dimension, clusters: 5, seed: 36));
            table.Flush();
        }

        string segment = Directory.GetFiles(_root, EmbeddingShard.VectorFileName, SearchOption.AllDirectories).Single();
        using (var stream = new FileStream(segment, FileMode.Open))
        {
            stream.SetLength(stream.Length - 100);
        }

        Assert.Throws<VectorStoreCorruptedException>(() => EmbeddingTable.Open(Options(shards: 1)));
    }

    [Fact]
    public void Cache_WithBudgetBelowTheTable_NeverHoldsMoreThanTheBudget()
    {
        const int budgetVectors = 200;
        var data = ClusteredData.Generate(3_000, Dimension, clusters: 20, seed: 37);
        using (var build = EmbeddingTable.Open(Options()))
        {
            build.Upsert(ClusteredData.Ids(3_000), data);
            build.Flush();
        }

        using var table = EmbeddingTable.OpenWithForegroundCache(Options(budgetBytes: budgetVectors * Dimension * sizeof(float)));
        var queries = ClusteredData.Generate(200, Dimension, clusters: 20, seed: 38);
        for (int q = 0; q < 200; q++)
        {
            table.Search(queries.AsSpan(q * Dimension, Dimension), 10, ef: 32);
        }

        table.MaintainCache();

        Assert.InRange(table.CachedVectors, 1, budgetVectors);
        Assert.True(table.DiskReads > budgetVectors, "cold vectors must come from the segment files");
    }

    [Fact]
    public void Cache_AfterAOneOffScan_StillServesTheHotQueryFromMemory()
    {
        var data = ClusteredData.Generate(3_000, Dimension, clusters: 20, seed: 39);
        using (var build = EmbeddingTable.Open(Options(shards: 1)))
        {
            build.Upsert(ClusteredData.Ids(3_000), data);
            build.Flush();
        }

        using var table = EmbeddingTable.OpenWithForegroundCache(Options(budgetBytes: 300 * Dimension * sizeof(float), shards: 1));
        var hot = data.AsSpan(0, Dimension).ToArray();
        for (int i = 0; i < 30; i++)
        {
            table.Search(hot, 10, ef: 32);
        }

        // A scan touches many vectors once each; W-TinyLFU admits none of them over the frequently used hot set.
        var scan = ClusteredData.Generate(100, Dimension, clusters: 20, seed: 40);
        for (int q = 0; q < 100; q++)
        {
            table.Search(scan.AsSpan(q * Dimension, Dimension), 10, ef: 32);
        }

        table.MaintainCache();
        long before = table.DiskReads;
        table.Search(hot, 10, ef: 32);

        // A cold query reads k * RerankMultiplier = 40 vectors; an LRU would have lost the whole hot set.
        Assert.True(table.DiskReads - before < 20, $"hot query read {table.DiskReads - before} vectors from disk after the scan");
    }

    [Fact]
    public void Metrics_PublishTheCacheHitRatioTaggedWithTheTableName()
    {
        using (var build = EmbeddingTable.Open(Options(shards: 1)))
        {
            build.Upsert(ClusteredData.Ids(500), ClusteredData.Generate(500, Dimension, clusters: 5, seed: 42));
            build.Flush();
        }

        using var table = EmbeddingTable.OpenWithForegroundCache(Options(shards: 1) with { Name = "metrics-test" });
        var query = ClusteredData.Generate(1, Dimension, clusters: 5, seed: 43);
        table.Search(query, 10);
        table.Search(query, 10);
        table.MaintainCache();

        double? observed = null;
        using var listener = new System.Diagnostics.Metrics.MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == EmbeddingTable.MeterName && instrument.Name == "atelier.vectors.cache.hit_ratio")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<double>((_, value, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == "table" && (string?)tag.Value == "metrics-test")
                {
                    observed = value;
                }
            }
        });
        listener.Start();
        listener.RecordObservableInstruments();

        Assert.True(observed is not null, $"no measurement; ratio {table.CacheHitRatio} reads {table.DiskReads} cached {table.CachedVectors}");
        Assert.True(observed.Value is > 0.4 and < 0.6, $"observed {observed}; ratio {table.CacheHitRatio} reads {table.DiskReads} cached {table.CachedVectors}");
    }
}
