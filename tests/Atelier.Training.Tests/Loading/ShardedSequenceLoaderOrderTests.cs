using Atelier.Data.Shards;
using Atelier.Training.Loading;

namespace Atelier.Training.Tests.Loading;

public class ShardedSequenceLoaderOrderTests
{
    private static readonly int[] Rows = [5, 7, 0, 4];

    [Fact]
    public async Task EveryEpoch_HandsOutEachWindowExactlyOnce_InADifferentOrder()
    {
        using var shards = new LoaderTestShards();
        var sources = await shards.WriteAsync(Rows);
        await using var loader = ShardedSequenceLoader.Open(sources, new LoaderOptions { Seed = 7, BatchSize = 3 });

        // 16 windows, batches of 3: batches straddle epochs; 16 batches cover exactly 3 epochs.
        List<int> ids = await LoaderTestShards.TakeAsync(loader, 16);

        Assert.Equal(16, loader.WindowsPerEpoch);
        var epochs = ids.Chunk(16).ToList();
        Assert.Equal(3, epochs.Count);
        foreach (int[] epoch in epochs)
        {
            Assert.Equal(Enumerable.Range(0, 16), epoch.Order());
        }

        Assert.NotEqual(epochs[0], epochs[1]);
        Assert.NotEqual(epochs[1], epochs[2]);
        Assert.NotEqual(Enumerable.Range(0, 16), epochs[0]);
    }

    [Fact]
    public async Task Order_IsThePublishedPermutationOfEachEpoch()
    {
        using var shards = new LoaderTestShards();
        var sources = await shards.WriteAsync(Rows);
        await using var loader = ShardedSequenceLoader.Open(sources, new LoaderOptions { Seed = 123, BatchSize = 5 });

        List<int> ids = await LoaderTestShards.TakeAsync(loader, 8);

        int[] expected = [.. WindowShuffle.Permutation(123, 0, 16), .. WindowShuffle.Permutation(123, 1, 16), .. WindowShuffle.Permutation(123, 2, 16)];
        Assert.Equal(expected.Take(40), ids);
    }

    [Fact]
    public async Task SameSeed_GivesSameOrder_AndAnotherSeedAnother()
    {
        using var shards = new LoaderTestShards();
        var sources = await shards.WriteAsync(Rows);

        List<int> first = await RunAsync(sources, new LoaderOptions { Seed = 99, BatchSize = 2 }, 20);
        List<int> again = await RunAsync(sources, new LoaderOptions { Seed = 99, BatchSize = 2 }, 20);
        List<int> other = await RunAsync(sources, new LoaderOptions { Seed = 100, BatchSize = 2 }, 20);

        Assert.Equal(first, again);
        Assert.NotEqual(first, other);
    }

    [Theory]
    [InlineData(1, 0, 1)]
    [InlineData(1, 1, 4)]
    [InlineData(2, 4, 4)]
    [InlineData(4, 16, 4)]
    [InlineData(3, 2, 1)]
    public async Task WorkersAndPrefetchDepth_NeverChangeTheOrder(int workers, int prefetch, int batchSize)
    {
        using var shards = new LoaderTestShards();
        var sources = await shards.WriteAsync(Rows);
        int windows = 16 * 3;

        List<int> baseline = await RunAsync(sources, new LoaderOptions { Seed = 5, BatchSize = batchSize, Workers = 1, PrefetchBatches = 0 }, windows / batchSize);
        List<int> parallel = await RunAsync(sources, new LoaderOptions { Seed = 5, BatchSize = batchSize, Workers = workers, PrefetchBatches = prefetch }, windows / batchSize);

        Assert.Equal(baseline, parallel);
    }

    [Fact]
    public async Task Windows_AreTheShardRows_AsArrowShardReaderReadsThem()
    {
        using var shards = new LoaderTestShards();
        var sources = await shards.WriteAsync(Rows);
        var expected = new List<ShardWindow>();
        foreach (ShardSource source in sources)
        {
            await using Stream stream = await source.OpenAsync(CancellationToken.None);
            await foreach (ShardWindow window in ArrowShardReader.ReadAsync(stream, source.Name))
            {
                expected.Add(window);
            }
        }

        await using var loader = ShardedSequenceLoader.Open(sources, new LoaderOptions { Seed = 1, BatchSize = 4 });
        for (int b = 0; b < 4; b++)
        {
            LoaderBatch batch = await loader.NextAsync();
            foreach (ShardWindow window in batch.Windows)
            {
                ShardWindow reference = expected[LoaderTestShards.IdOf(window)];
                Assert.Equal(reference.InputIds, window.InputIds);
                Assert.Equal(reference.Labels, window.Labels);
                Assert.Equal(reference.LossMask, window.LossMask);
                Assert.Equal(reference.Sizes, window.Sizes);
            }
        }
    }

    [Fact]
    public async Task ShardWithSeveralRecordBatches_IsReadRowByRow()
    {
        using var shards = new LoaderTestShards();
        var first = await shards.WriteAsync(3);
        ShardSource multi = await shards.WriteMultiBatchAsync("multi.arrow", 3, 4, 0, 2, 5);
        ShardSource[] sources = [first[0], multi];

        List<int> ids = await RunAsync(sources, new LoaderOptions { Seed = 11, BatchSize = 2, Workers = 3 }, 7);

        Assert.Equal(Enumerable.Range(0, 14), ids.Order());
    }

    [Fact]
    public async Task Stats_CountTheBatchesWindowsAndBytes()
    {
        using var shards = new LoaderTestShards();
        var sources = await shards.WriteAsync(Rows);
        await using var loader = ShardedSequenceLoader.Open(sources, new LoaderOptions { Seed = 3, BatchSize = 2, PrefetchBatches = 0 });

        await LoaderTestShards.TakeAsync(loader, 5);

        LoaderStats stats = loader.Stats;
        Assert.Equal(5, stats.Batches);
        Assert.Equal(10, stats.WindowsRead);

        // Per window: 8 input ids, 8 labels (int32), 8 mask bytes, 2 sizes.
        Assert.Equal(10 * ((8 * 4) + (8 * 4) + 8 + (2 * 4)), stats.BytesRead);
        Assert.True(stats.Waits <= 5);
    }

    [Fact]
    public void Permutation_IsPinned_SoJobsKeepTheirOrderAcrossVersions()
    {
        // Changing WindowShuffle changes the data order of every resumed job: this must never change.
        // The values come from an independent Python transcription of SplitMix64 + Lemire + Fisher–Yates.
        Assert.Equal([0, 2, 5, 1, 4, 7, 8, 3, 6, 9], WindowShuffle.Permutation(42, 0, 10));
        Assert.Equal([3, 4, 8, 5, 7, 2, 9, 0, 6, 1], WindowShuffle.Permutation(42, 1, 10));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(1000)]
    public void Permutation_IsAPermutation(int count)
    {
        Assert.Equal(Enumerable.Range(0, count), WindowShuffle.Permutation(9, 3, count).Order());
    }

    private static async Task<List<int>> RunAsync(IReadOnlyList<ShardSource> sources, LoaderOptions options, int batches)
    {
        await using var loader = ShardedSequenceLoader.Open(sources, options);
        return await LoaderTestShards.TakeAsync(loader, batches);
    }
}
