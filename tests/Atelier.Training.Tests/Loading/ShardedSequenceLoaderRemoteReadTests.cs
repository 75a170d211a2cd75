using Atelier.Data.Shards;
using Atelier.Training.Loading;

namespace Atelier.Training.Tests.Loading;

/// <summary>
/// Shards behind a remote rack or an object store: injected latency per range read, coalesced
/// range reads, a read-ahead sized for the latency or grown while the trainer waits. None of it may
/// change a single window or the order.
/// </summary>
public class ShardedSequenceLoaderRemoteReadTests
{
    private static readonly int[] Rows = [5, 7, 0, 4];
    private static readonly TimeSpan NoHang = TimeSpan.FromSeconds(60);

    [Theory]
    [InlineData(1, false)]
    [InlineData(3, false)]
    [InlineData(3, true)]
    [InlineData(8, true)]
    public async Task WithTenMillisecondsPerRead_TheLoaderYieldsExactlyTheSameBatches(int batchSize, bool sizedForLatency)
    {
        using var shards = new LoaderTestShards();
        var sources = await shards.WriteAsync(Rows);
        var options = new LoaderOptions { Seed = 11, BatchSize = batchSize };
        int batches = (16 * 2 / batchSize) + 1;
        List<LoaderBatch> local = await TakeAllAsync(sources, options, batches);

        var remote = ShardSources.WithReadLatency(sources, TimeSpan.FromMilliseconds(10));
        var remoteOptions = sizedForLatency ? options.ForLatency(TimeSpan.FromMilliseconds(10), TimeSpan.FromMilliseconds(1)) : options;
        List<LoaderBatch> slowed = await TakeAllAsync(remote, remoteOptions, batches);

        Assert.Equal(local.Count, slowed.Count);
        for (int b = 0; b < local.Count; b++)
        {
            Assert.Equal((local[b].Epoch, local[b].After), (slowed[b].Epoch, slowed[b].After));
            Assert.Equal(local[b].Windows.Count, slowed[b].Windows.Count);
            for (int w = 0; w < local[b].Windows.Count; w++)
            {
                AssertSameWindow(local[b].Windows[w], slowed[b].Windows[w]);
            }
        }
    }

    [Fact]
    public async Task ResumeOverAStoreWithLatency_ContinuesWithTheBatchesOfAnUninterruptedLocalRun()
    {
        using var shards = new LoaderTestShards();
        var sources = await shards.WriteAsync(Rows);
        var options = new LoaderOptions { Seed = 2024, BatchSize = 3 };
        List<int> uninterrupted;
        await using (var loader = ShardedSequenceLoader.Open(sources, options))
        {
            uninterrupted = await LoaderTestShards.TakeAsync(loader, 12);
        }

        var remote = ShardSources.WithReadLatency(sources, TimeSpan.FromMilliseconds(5));
        List<int> before;
        LoaderPosition saved;
        await using (var loader = ShardedSequenceLoader.Open(remote, options.ForLatency(TimeSpan.FromMilliseconds(5))))
        {
            before = await LoaderTestShards.TakeAsync(loader, 5);
            saved = loader.Position;
        }

        // The fingerprint is the same with or without latency: a job moves between near and far data.
        await using var resumed = ShardedSequenceLoader.Open(sources, options, saved);
        List<int> after = await LoaderTestShards.TakeAsync(resumed, 7);

        Assert.Equal(uninterrupted, [.. before, .. after]);
    }

    [Fact]
    public async Task NeighbouringSlices_AreFetchedByOneRangeRead_AndOnlyWindowBytesCountAsRead()
    {
        using var shards = new LoaderTestShards();
        var sources = await shards.WriteAsync(16);
        const int Batches = 4;
        const int BatchSize = 4;
        const long WindowBytes = (8 * 4) + (8 * 4) + 8 + (2 * 4);

        LoaderStats separate = await StatsAsync(sources, new LoaderOptions { Seed = 3, BatchSize = BatchSize, PrefetchBatches = 0, CoalesceGapBytes = 0, MaxRangeBytes = 1 }, Batches);
        LoaderStats coalesced = await StatsAsync(sources, new LoaderOptions { Seed = 3, BatchSize = BatchSize, PrefetchBatches = 0 }, Batches);

        // Without merging: one range read per column per window. With the default 64 KiB gap, the
        // whole of this tiny shard's columns lie within reach: one range read per batch.
        Assert.Equal(Batches * BatchSize * 4, separate.RangeReads);
        Assert.Equal(separate.BytesRead, separate.BytesFetched);
        Assert.Equal(Batches, coalesced.RangeReads);
        Assert.True(coalesced.BytesFetched > coalesced.BytesRead);
        Assert.Equal(Batches * BatchSize * WindowBytes, coalesced.BytesRead);
        Assert.Equal(separate.BytesRead, coalesced.BytesRead);
    }

    [Fact]
    public async Task ABatchAcrossShards_ReadsEachShardOnce()
    {
        using var shards = new LoaderTestShards();
        var sources = await shards.WriteAsync(Rows);

        // One batch of the whole epoch: three shards hold rows (one is empty), so three range reads.
        LoaderStats stats = await StatsAsync(sources, new LoaderOptions { Seed = 9, BatchSize = 16, PrefetchBatches = 0 }, 1);

        Assert.Equal(3, stats.RangeReads);
        Assert.Equal(16, stats.WindowsRead);
    }

    [Fact]
    public async Task AdaptiveDepth_GrowsWhileTheTrainerWaits_UpToItsBound_WithoutChangingTheOrder()
    {
        using var shards = new LoaderTestShards();
        var sources = await shards.WriteAsync(Rows);
        var options = new LoaderOptions { Seed = 5, BatchSize = 2, Workers = 1, PrefetchBatches = 1 };
        List<int> baseline;
        await using (var plain = ShardedSequenceLoader.Open(sources, options))
        {
            baseline = await LoaderTestShards.TakeAsync(plain, 40);
            Assert.Equal(1, plain.PrefetchDepth);
        }

        // A consumer that never pauses waits on every read that takes 20 ms, so the depth grows to its bound.
        var remote = ShardSources.WithReadLatency(sources, TimeSpan.FromMilliseconds(20));
        await using var adaptive = ShardedSequenceLoader.Open(remote, options with { MaxPrefetchBatches = 5 });
        var depths = new List<int>();
        var ids = new List<int>();
        for (int b = 0; b < 40; b++)
        {
            LoaderBatch batch = await adaptive.NextAsync().AsTask().WaitAsync(NoHang);
            ids.AddRange(batch.Windows.Select(LoaderTestShards.IdOf));
            depths.Add(adaptive.PrefetchDepth);
        }

        Assert.Equal(baseline, ids);
        Assert.Equal(5, depths[^1]);
        Assert.All(depths, d => Assert.InRange(d, 1, 5));
        Assert.Equal(depths.Order(), depths);
    }

    [Fact]
    public void ForLatency_OfZero_ChangesNothing()
    {
        var options = new LoaderOptions { Seed = 1, BatchSize = 4 };
        Assert.Same(options, options.ForLatency(TimeSpan.Zero, TimeSpan.FromMilliseconds(100)));
    }

    [Fact]
    public void ForLatency_WithAStepTime_ReadsEnoughBatchesAheadToCoverTheLatency_WithinTheMemoryBound()
    {
        var options = new LoaderOptions { Seed = 1, BatchSize = 2 };

        // A batch of 2 windows costs about 3 round trips of 10 ms (open, slices): 30 ms; the trainer
        // takes 5 ms a batch, so 2 x 30 / 5 + 1 = 13 batches are read at once and ahead.
        LoaderOptions sized = options.ForLatency(TimeSpan.FromMilliseconds(10), TimeSpan.FromMilliseconds(5));
        Assert.Equal(13, sized.PrefetchBatches);
        Assert.Equal(13, sized.Workers);
        Assert.True(sized.ConcurrentReads >= 8 * 13);
        Assert.Equal(1_000_000, sized.CoalesceGapBytes);
        Assert.Null(sized.MaxPrefetchBatches);

        // The memory bound wins over the latency: at most 16 windows = 8 batches of 2.
        Assert.Equal(8, options.ForLatency(TimeSpan.FromMilliseconds(10), TimeSpan.FromMilliseconds(5), maxBufferedWindows: 16).PrefetchBatches);

        // A slow trainer needs no more than the default depth.
        Assert.Equal(options.PrefetchBatches, options.ForLatency(TimeSpan.FromMilliseconds(2), TimeSpan.FromSeconds(1)).PrefetchBatches);
    }

    [Fact]
    public void ForLatency_WithoutAStepTime_LetsTheDepthGrowUpToTheMemoryBound()
    {
        var options = new LoaderOptions { Seed = 1, BatchSize = 4 };
        LoaderOptions sized = options.ForLatency(TimeSpan.FromMilliseconds(5), maxBufferedWindows: 64);
        Assert.Equal(options.PrefetchBatches, sized.PrefetchBatches);
        Assert.Equal(16, sized.MaxPrefetchBatches);
        Assert.Equal(16 * options.Workers, sized.ConcurrentReads);
    }

    [Theory]
    [InlineData(0, 0L, 1L, null)]
    [InlineData(1, -1L, 1L, null)]
    [InlineData(1, 0L, 0L, null)]
    [InlineData(1, 0L, 1L, 3)]
    public void Open_WithBadReadOptions_Throws(int concurrentReads, long gap, long maxRange, int? maxPrefetch)
    {
        var source = new ShardSource("a", 1, _ => throw new InvalidOperationException("never opened"));
        var options = new LoaderOptions { Seed = 1, ConcurrentReads = concurrentReads, CoalesceGapBytes = gap, MaxRangeBytes = maxRange, MaxPrefetchBatches = maxPrefetch };
        Assert.Throws<ArgumentException>(() => ShardedSequenceLoader.Open([source], options));
    }

    [Fact]
    public async Task InjectedLatency_IsPaidPerOpenAndPerReadAtANewPosition_NotWhileStreaming()
    {
        using var shards = new LoaderTestShards();
        var sources = await shards.WriteAsync(4);
        var clock = new CountingTimeProvider();
        ShardSource slowed = ShardSources.WithReadLatency(sources, TimeSpan.FromMilliseconds(1), clock)[0];

        await using Stream stream = await slowed.OpenAsync(CancellationToken.None);
        Assert.Equal(1, clock.Delays);
        var buffer = new byte[16];
        await stream.ReadExactlyAsync(buffer);
        await stream.ReadExactlyAsync(buffer);
        Assert.Equal(2, clock.Delays);

        stream.Position = 100;
        await stream.ReadExactlyAsync(buffer);
        Assert.Equal(3, clock.Delays);
        Assert.Equal(stream.Length, (await sources[0].OpenAsync(CancellationToken.None)).Length);
    }

    [Fact]
    public async Task ShardsReadByRangeRequests_YieldTheSameBatches_OneRequestPerRangeRead()
    {
        using var shards = new LoaderTestShards();
        var sources = await shards.WriteAsync(Rows);
        var options = new LoaderOptions { Seed = 8, BatchSize = 3, PrefetchBatches = 0 };
        List<LoaderBatch> local = await TakeAllAsync(sources, options, 6);

        // An object store: the length by one request, each range by another, nothing seekable.
        int lengthRequests = 0;
        int rangeRequests = 0;
        var ranged = sources.Select(s => ShardSources.FromRangeReads(
            s.Name,
            s.Rows,
            s.ContentHash,
            _ =>
            {
                Interlocked.Increment(ref lengthRequests);
                return ValueTask.FromResult(new FileInfo(Path.Combine(shards.Directory, s.Name)).Length);
            },
            (offset, length, _) =>
            {
                Interlocked.Increment(ref rangeRequests);
                byte[] bytes = File.ReadAllBytes(Path.Combine(shards.Directory, s.Name));
                return ValueTask.FromResult<Stream>(new MemoryStream(bytes, (int)offset, (int)Math.Min(length, bytes.Length - offset), writable: false));
            })).ToList();
        Assert.Equal(ShardSources.Fingerprint(sources), ShardSources.Fingerprint(ranged));

        await using var loader = ShardedSequenceLoader.Open(ranged, options);
        for (int b = 0; b < local.Count; b++)
        {
            LoaderBatch batch = await loader.NextAsync().AsTask().WaitAsync(NoHang);
            Assert.Equal(local[b].Windows.Select(LoaderTestShards.IdOf), batch.Windows.Select(LoaderTestShards.IdOf));
            for (int w = 0; w < batch.Windows.Count; w++)
            {
                AssertSameWindow(local[b].Windows[w], batch.Windows[w]);
            }
        }

        // One length request per shard (the empty one too: its metadata is checked); the window
        // range requests are exactly the loader's range reads, the rest read shard metadata.
        Assert.Equal(4, lengthRequests);
        Assert.True(rangeRequests > loader.Stats.RangeReads);
    }

    private static async Task<List<LoaderBatch>> TakeAllAsync(IReadOnlyList<ShardSource> sources, LoaderOptions options, int batches)
    {
        await using var loader = ShardedSequenceLoader.Open(sources, options);
        var taken = new List<LoaderBatch>();
        for (int b = 0; b < batches; b++)
        {
            taken.Add(await loader.NextAsync().AsTask().WaitAsync(NoHang));
        }

        return taken;
    }

    private static async Task<LoaderStats> StatsAsync(IReadOnlyList<ShardSource> sources, LoaderOptions options, int batches)
    {
        await using var loader = ShardedSequenceLoader.Open(sources, options);
        _ = await LoaderTestShards.TakeAsync(loader, batches);
        return loader.Stats;
    }

    private static void AssertSameWindow(ShardWindow expected, ShardWindow actual)
    {
        Assert.Equal(expected.InputIds, actual.InputIds);
        Assert.Equal(expected.Labels, actual.Labels);
        Assert.Equal(expected.LossMask, actual.LossMask);
        Assert.Equal(expected.Sizes, actual.Sizes);
    }

    // The system clock, counting the timers Task.Delay creates on it: one per injected wait.
    private sealed class CountingTimeProvider : TimeProvider
    {
        private int _delays;

        public int Delays => Volatile.Read(ref _delays);

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            Interlocked.Increment(ref _delays);
            return base.CreateTimer(callback, state, dueTime, period);
        }
    }
}
