using Atelier.Training.Loading;

namespace Atelier.Training.Tests.Loading;

public class ShardedSequenceLoaderResumeTests
{
    private static readonly int[] Rows = [6, 4, 6];

    // 16 windows, batches of 4: after 4 batches the position is exactly an epoch boundary;
    // batches of 3 straddle boundaries.
    [Theory]
    [InlineData(4, 0)]
    [InlineData(4, 1)]
    [InlineData(4, 3)]
    [InlineData(4, 4)]
    [InlineData(4, 9)]
    [InlineData(3, 5)]
    [InlineData(3, 6)]
    [InlineData(1, 16)]
    public async Task Resume_FromASavedPosition_ContinuesWithExactlyTheRemainingBatches(int batchSize, int batchesBeforeStop)
    {
        using var shards = new LoaderTestShards();
        var sources = await shards.WriteAsync(Rows);
        const int Total = 20;
        var options = new LoaderOptions { Seed = 2024, BatchSize = batchSize };
        List<int> uninterrupted;
        await using (var loader = ShardedSequenceLoader.Open(sources, options))
        {
            uninterrupted = await LoaderTestShards.TakeAsync(loader, Total);
        }

        string saved;
        List<int> before;
        await using (var loader = ShardedSequenceLoader.Open(sources, options with { Workers = 3, PrefetchBatches = 7 }))
        {
            before = await LoaderTestShards.TakeAsync(loader, batchesBeforeStop);
            saved = loader.Position.ToJson();
        }

        LoaderPosition position = LoaderPosition.FromJson(saved);
        await using var resumed = ShardedSequenceLoader.Open(sources, options with { Workers = 1, PrefetchBatches = 1 }, position);
        Assert.Equal(position, resumed.Position);
        List<int> after = await LoaderTestShards.TakeAsync(resumed, Total - batchesBeforeStop);

        Assert.Equal(uninterrupted, [.. before, .. after]);
    }

    [Fact]
    public async Task BatchAfter_IsThePositionOfTheNextBatch_AndNormalisesTheEpochBoundary()
    {
        using var shards = new LoaderTestShards();
        var sources = await shards.WriteAsync(Rows);
        await using var loader = ShardedSequenceLoader.Open(sources, new LoaderOptions { Seed = 1, BatchSize = 4 });
        Assert.Equal(new LoaderPosition(0, 0, 1, loader.ShardFingerprint), loader.Position);

        var afters = new List<LoaderPosition>();
        var epochs = new List<int>();
        for (int i = 0; i < 5; i++)
        {
            LoaderBatch batch = await loader.NextAsync();
            Assert.Equal(batch.After, loader.Position);
            afters.Add(batch.After);
            epochs.Add(batch.Epoch);
        }

        Assert.Equal([(0, 4L), (0, 8L), (0, 12L), (1, 0L), (1, 4L)], afters.Select(a => (a.Epoch, a.Index)));
        Assert.Equal([0, 0, 0, 0, 1], epochs);
    }

    [Fact]
    public async Task Resume_AcrossBatchSizes_KeepsTheWindowOrder()
    {
        using var shards = new LoaderTestShards();
        var sources = await shards.WriteAsync(Rows);
        List<int> uninterrupted;
        await using (var loader = ShardedSequenceLoader.Open(sources, new LoaderOptions { Seed = 8, BatchSize = 2 }))
        {
            uninterrupted = await LoaderTestShards.TakeAsync(loader, 12);
        }

        LoaderPosition saved;
        await using (var loader = ShardedSequenceLoader.Open(sources, new LoaderOptions { Seed = 8, BatchSize = 2 }))
        {
            await LoaderTestShards.TakeAsync(loader, 5);
            saved = loader.Position;
        }

        await using var resumed = ShardedSequenceLoader.Open(sources, new LoaderOptions { Seed = 8, BatchSize = 7 }, saved);
        List<int> after = await LoaderTestShards.TakeAsync(resumed, 2);

        Assert.Equal(uninterrupted.Skip(10).Take(14), after);
    }

    [Fact]
    public void Position_RoundTripsThroughSnakeCaseJson()
    {
        var position = new LoaderPosition(3, 1234567890123, ulong.MaxValue, "sha256:abc");

        string json = position.ToJson();

        Assert.Contains("\"shard_fingerprint\":\"sha256:abc\"", json, StringComparison.Ordinal);
        Assert.Contains("\"seed\":18446744073709551615", json, StringComparison.Ordinal);
        Assert.Equal(position, LoaderPosition.FromJson(json));
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("{\"epoch\":1,\"index\":2,\"seed\":3}")]
    [InlineData("{\"epoch\":-1,\"index\":2,\"seed\":3,\"shard_fingerprint\":\"x\"}")]
    [InlineData("null")]
    public void FromJson_OfSomethingElse_ThrowsInvalidData(string json)
    {
        Assert.Throws<InvalidDataException>(() => LoaderPosition.FromJson(json));
    }

    [Fact]
    public async Task Resume_OverAnotherShardList_IsRejectedAsAFingerprintMismatch()
    {
        using var shards = new LoaderTestShards();
        var sources = await shards.WriteAsync(Rows);
        LoaderPosition saved;
        await using (var loader = ShardedSequenceLoader.Open(sources, new LoaderOptions { Seed = 1 }))
        {
            await loader.NextAsync();
            saved = loader.Position;
        }

        var fewer = sources.Take(2).ToList();
        var reordered = new[] { sources[1], sources[0], sources[2] };
        var rehashed = sources.Select((s, i) => i == 0 ? s with { ContentHash = "00" } : s).ToList();
        foreach (IReadOnlyList<ShardSource> other in new IReadOnlyList<ShardSource>[] { fewer, reordered, rehashed })
        {
            var error = Assert.Throws<ArgumentException>(() => ShardedSequenceLoader.Open(other, new LoaderOptions { Seed = 1 }, saved));
            Assert.Contains("fingerprint", error.Message, StringComparison.Ordinal);
            Assert.Equal("resumeFrom", error.ParamName);
        }
    }

    [Fact]
    public async Task Resume_WithAnotherSeedOrAnOutOfRangeIndex_IsRejected()
    {
        using var shards = new LoaderTestShards();
        var sources = await shards.WriteAsync(Rows);
        string fingerprint = ShardSources.Fingerprint(sources);

        var seed = Assert.Throws<ArgumentException>(() => ShardedSequenceLoader.Open(sources, new LoaderOptions { Seed = 2 }, new LoaderPosition(0, 0, 1, fingerprint)));
        Assert.Contains("seed", seed.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => ShardedSequenceLoader.Open(sources, new LoaderOptions { Seed = 1 }, new LoaderPosition(0, 16, 1, fingerprint)));
    }
}
