using Apache.Arrow;
using Apache.Arrow.Ipc;
using Atelier.Training.Loading;

namespace Atelier.Training.Tests.Loading;

public class ShardedSequenceLoaderErrorTests
{
    private static readonly TimeSpan NoHang = TimeSpan.FromSeconds(30);

    [Fact]
    public void Open_OfADatasetWithoutWindows_ThrowsNamingTheProblem()
    {
        var none = Assert.Throws<ArgumentException>(() => ShardedSequenceLoader.Open([], new LoaderOptions { Seed = 1 }));
        Assert.Contains("no windows", none.Message, StringComparison.Ordinal);

        var empty = new ShardSource("shards/shard-00000.arrow", 0, _ => throw new InvalidOperationException("never opened"));
        var zero = Assert.Throws<ArgumentException>(() => ShardedSequenceLoader.Open([empty, empty], new LoaderOptions { Seed = 1 }));
        Assert.Contains("no windows", zero.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0, 1, 1)]
    [InlineData(1, 0, 1)]
    [InlineData(1, 1, -1)]
    public void Open_WithBadOptions_Throws(int batchSize, int workers, int prefetch)
    {
        var source = new ShardSource("a", 1, _ => throw new InvalidOperationException("never opened"));
        Assert.Throws<ArgumentException>(() => ShardedSequenceLoader.Open([source], new LoaderOptions { Seed = 1, BatchSize = batchSize, Workers = workers, PrefetchBatches = prefetch }));
    }

    [Fact]
    public async Task ShardWithFewerRowsThanDeclared_FailsTheFirstBatch_NamingTheShard()
    {
        using var shards = new LoaderTestShards();
        var sources = (await shards.WriteAsync(5, 3, 6)).ToList();
        sources[1] = sources[1] with { Rows = 4 };
        await using var loader = ShardedSequenceLoader.Open(sources, new LoaderOptions { Seed = 1 });

        var error = await Assert.ThrowsAsync<InvalidDataException>(() => loader.NextAsync().AsTask().WaitAsync(NoHang));

        Assert.Contains("shards/shard-00001.arrow", error.Message, StringComparison.Ordinal);
        Assert.Contains("3 windows but 4 were declared", error.Message, StringComparison.Ordinal);

        // The loader stays faulted: the job reopens from its last saved position.
        await Assert.ThrowsAsync<InvalidDataException>(() => loader.NextAsync().AsTask().WaitAsync(NoHang));
        Assert.Equal(0, loader.Position.Index);
    }

    [Theory]
    [InlineData("garbage")]
    [InlineData("truncated")]
    [InlineData("footer")]
    [InlineData("empty")]
    [InlineData("offsets")]
    public async Task CorruptShard_FailsWithAnErrorNamingTheShard_NeverAHang(string damage)
    {
        using var shards = new LoaderTestShards();
        var sources = await shards.WriteAsync(4, 4);
        string path = Path.Combine(shards.Directory, sources[1].Name);
        byte[] bytes = await File.ReadAllBytesAsync(path);
        switch (damage)
        {
            case "garbage":
                new Random(1).NextBytes(bytes);
                break;
            case "truncated":
                bytes = bytes[..(bytes.Length / 2)];
                break;
            case "footer":
                // The footer length, just before the trailing magic.
                BitConverter.GetBytes(int.MaxValue / 2).CopyTo(bytes, bytes.Length - 10);
                break;
            case "empty":
                bytes = [];
                break;
            case "offsets":
                // Overwrite the body of the record batch (offsets and values) with 0xFF.
                System.Array.Fill(bytes, (byte)0xFF, 600, 200);
                break;
        }

        await File.WriteAllBytesAsync(path, bytes);
        await using var loader = ShardedSequenceLoader.Open(sources, new LoaderOptions { Seed = 1, BatchSize = 8, Workers = 2 });

        var error = await Assert.ThrowsAnyAsync<Exception>(() => loader.NextAsync().AsTask().WaitAsync(NoHang));

        Assert.IsType<InvalidDataException>(error);
        Assert.Contains("shards/shard-00001.arrow", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ArrowFileOfAnotherSchema_IsRejectedAsNotATokenShard()
    {
        using var shards = new LoaderTestShards();
        string path = Path.Combine(shards.Directory, "other.arrow");
        var schema = new Schema.Builder().Field(f => f.Name("x").DataType(Apache.Arrow.Types.Int32Type.Default)).Build();
        await using (var stream = File.Create(path))
        {
            using var batch = new RecordBatch(schema, [new Int32Array.Builder().AppendRange([1, 2, 3]).Build()], 3);
            using var writer = new ArrowFileWriter(stream, schema);
            await writer.WriteRecordBatchAsync(batch);
            await writer.WriteEndAsync();
        }

        await using var loader = ShardedSequenceLoader.Open([shards.Source("other.arrow", 3)], new LoaderOptions { Seed = 1 });

        var error = await Assert.ThrowsAsync<InvalidDataException>(() => loader.NextAsync().AsTask().WaitAsync(NoHang));
        Assert.Contains("other.arrow", error.Message, StringComparison.Ordinal);
        Assert.Contains("not an Atelier token shard", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task MissingShardFile_FailsNamingTheShard()
    {
        using var shards = new LoaderTestShards();
        var sources = (await shards.WriteAsync(2, 2)).ToList();
        File.Delete(Path.Combine(shards.Directory, sources[0].Name));
        await using var loader = ShardedSequenceLoader.Open(sources, new LoaderOptions { Seed = 1 });

        var error = await Assert.ThrowsAsync<IOException>(() => loader.NextAsync().AsTask().WaitAsync(NoHang));
        Assert.Contains("shards/shard-00000.arrow", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Dispose_WhileWorkersAreBlockedInOpen_ReturnsPromptly()
    {
        var opened = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var hanging = new ShardSource("hanging.arrow", 100, async ct =>
        {
            opened.TrySetResult();
            await Task.Delay(Timeout.Infinite, ct);
            throw new InvalidOperationException("unreachable");
        });
        var loader = ShardedSequenceLoader.Open([hanging], new LoaderOptions { Seed = 1, PrefetchBatches = 8, Workers = 4 });
        await opened.Task.WaitAsync(NoHang);

        await loader.DisposeAsync().AsTask().WaitAsync(NoHang);

        await Assert.ThrowsAsync<ObjectDisposedException>(() => loader.NextAsync().AsTask());
    }

    [Fact]
    public async Task Dispose_WhilePrefetchingRealShards_ReturnsPromptly()
    {
        using var shards = new LoaderTestShards();
        var sources = await shards.WriteAsync(50, 50, 50);
        var loader = ShardedSequenceLoader.Open(sources, new LoaderOptions { Seed = 1, BatchSize = 16, PrefetchBatches = 32, Workers = 2 });
        await loader.NextAsync();

        await loader.DisposeAsync().AsTask().WaitAsync(NoHang);
    }

    [Fact]
    public async Task CancellingNextAsync_StopsTheWaitOnly_TheBatchStaysNextInLine()
    {
        using var shards = new LoaderTestShards();
        var sources = await shards.WriteAsync(4, 4);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var gated = sources.Select(s => s with
        {
            OpenAsync = async ct =>
            {
                await gate.Task.WaitAsync(ct);
                return await s.OpenAsync(ct);
            },
        }).ToList();
        List<int> expected;
        await using (var plain = ShardedSequenceLoader.Open(sources, new LoaderOptions { Seed = 4, BatchSize = 3 }))
        {
            expected = await LoaderTestShards.TakeAsync(plain, 3);
        }

        await using var loader = ShardedSequenceLoader.Open(gated, new LoaderOptions { Seed = 4, BatchSize = 3 });
        using (var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(50)))
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => loader.NextAsync(cancel.Token).AsTask());
        }

        Assert.Equal(0, loader.Position.Index);
        gate.SetResult();
        Assert.Equal(expected, await LoaderTestShards.TakeAsync(loader, 3));
        Assert.True(loader.Stats.WaitTime > TimeSpan.Zero);
    }
}
