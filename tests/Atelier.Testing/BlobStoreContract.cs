using System.Text;
using Atelier.Storage.Blobs;

namespace Atelier.Testing;

/// <summary>
/// What every blob store must do, whatever holds the bytes: a test class per store derives from
/// this and says how to make an empty store, so the local directory store and an S3-compatible
/// store run the same assertions.
/// </summary>
public abstract class BlobStoreContract
{
    /// <summary>A new, empty store.</summary>
    protected abstract Task<IBlobStore> NewStoreAsync();

    /// <summary>The same store opened again, as a restarted process would.</summary>
    protected abstract Task<IBlobStore> ReopenAsync(IBlobStore store);

    [Fact]
    public async Task CommittedBytes_AreReadBackWhole_AndNotBeforeTheCommit()
    {
        var store = await NewStoreAsync();
        var bytes = Pattern(300_000);
        await using (var pending = await store.BeginWriteAsync("file/a", CancellationToken.None))
        {
            await pending.Stream.WriteAsync(bytes);
            Assert.Null(await store.OpenReadAsync("file/a", CancellationToken.None));
            Assert.Null(await store.GetLengthAsync("file/a", CancellationToken.None));
            await pending.CommitAsync(CancellationToken.None);
        }

        Assert.Equal(bytes.Length, await store.GetLengthAsync("file/a", CancellationToken.None));
        Assert.Equal(bytes, await ReadAllAsync(await store.OpenReadAsync("file/a", CancellationToken.None)));
    }

    [Theory]
    [InlineData(0L, 10L)]
    [InlineData(1000L, 4096L)]
    [InlineData(299_990L, 10L)]
    [InlineData(299_990L, 100L)]
    [InlineData(300_000L, 5L)]
    [InlineData(400_000L, 5L)]
    [InlineData(123L, null)]
    public async Task RangedReads_ReturnExactlyTheBytesInTheRange(long offset, long? length)
    {
        var store = await NewStoreAsync();
        var bytes = Pattern(300_000);
        await WriteAsync(store, "file/r", bytes);
        var start = (int)Math.Min(offset, bytes.Length);
        var end = (int)Math.Min(bytes.Length, length is null ? bytes.Length : offset + length.Value);
        var read = await ReadAllAsync(await store.OpenReadRangeAsync("file/r", offset, length, CancellationToken.None));
        Assert.Equal(bytes[start..Math.Max(start, end)], read);
    }

    [Fact]
    public async Task CreateIsConditional_ASecondCommitOfAKeyFails_AndTheFirstBytesStay()
    {
        var store = await NewStoreAsync();
        await WriteAsync(store, "file/once", Encoding.UTF8.GetBytes("first"));
        await using (var second = await store.BeginWriteAsync("file/once", CancellationToken.None))
        {
            await second.Stream.WriteAsync(Encoding.UTF8.GetBytes("second, longer"));
            var e = await Assert.ThrowsAsync<BlobAlreadyExistsException>(async () => await second.CommitAsync(CancellationToken.None));
            Assert.Equal("file/once", e.Key);
        }

        Assert.Equal("first", Encoding.UTF8.GetString(await ReadAllAsync(await store.OpenReadAsync("file/once", CancellationToken.None))));
    }

    [Fact]
    public async Task AbandonedAndCrashedWrites_LeaveNothingVisible_AndRecoveryRemovesThem()
    {
        var store = await NewStoreAsync();
        await using (var abandoned = await store.BeginWriteAsync("file/abandoned", CancellationToken.None))
        {
            await abandoned.Stream.WriteAsync(new byte[10_000]);
        }

        // A write never disposed stands for a process killed mid-write.
        var crashed = await store.BeginWriteAsync("file/crashed", CancellationToken.None);
        await crashed.Stream.WriteAsync(new byte[4096]);
        await crashed.Stream.FlushAsync();

        var reopened = await ReopenAsync(store);
        Assert.Null(await reopened.OpenReadAsync("file/crashed", CancellationToken.None));
        Assert.Null(await reopened.OpenReadAsync("file/abandoned", CancellationToken.None));
        Assert.Empty(await ListAsync(reopened, ""));
        Assert.True(await reopened.RemoveOrphansAsync(CancellationToken.None) >= 1);
        Assert.Equal(0, await reopened.RemoveOrphansAsync(CancellationToken.None));
        await crashed.DisposeAsync();
    }

    [Fact]
    public async Task List_ReturnsCommittedKeysUnderAPrefix_InOrdinalOrder()
    {
        var store = await NewStoreAsync();
        foreach (var key in new[] { "job/b/2", "job/a/1", "job/b/10", "file/x", "jobs/other" })
        {
            await WriteAsync(store, key, [1]);
        }

        Assert.Equal(["job/a/1", "job/b/10", "job/b/2"], await ListAsync(store, "job/"));
        Assert.Equal(["file/x", "job/a/1", "job/b/10", "job/b/2", "jobs/other"], await ListAsync(store, ""));
        Assert.Empty(await ListAsync(store, "none/"));
    }

    [Fact]
    public async Task Delete_RemovesOnce_AndSaysWhetherTheBlobExisted()
    {
        var store = await NewStoreAsync();
        await WriteAsync(store, "file/d", [1, 2, 3]);
        Assert.True(await store.DeleteAsync("file/d", CancellationToken.None));
        Assert.False(await store.DeleteAsync("file/d", CancellationToken.None));
        Assert.Null(await store.OpenReadAsync("file/d", CancellationToken.None));
        Assert.Null(await store.OpenReadRangeAsync("file/d", 0, 1, CancellationToken.None));

        // The key can be created again once deleted.
        await WriteAsync(store, "file/d", [4]);
        Assert.Equal([4], await ReadAllAsync(await store.OpenReadAsync("file/d", CancellationToken.None)));
    }

    [Theory]
    [InlineData("../escape")]
    [InlineData("file/../../escape")]
    [InlineData("/absolute")]
    [InlineData("file/")]
    [InlineData("file//double")]
    [InlineData("file/with space")]
    [InlineData("")]
    public async Task KeysThatCouldEscapeTheStore_AreRejectedByEveryOperation(string key)
    {
        var store = await NewStoreAsync();
        await Assert.ThrowsAsync<ArgumentException>(async () => await store.BeginWriteAsync(key, CancellationToken.None));
        await Assert.ThrowsAsync<ArgumentException>(async () => await store.OpenReadAsync(key, CancellationToken.None));
        await Assert.ThrowsAsync<ArgumentException>(async () => await store.OpenReadRangeAsync(key, 0, 1, CancellationToken.None));
        await Assert.ThrowsAsync<ArgumentException>(async () => await store.GetLengthAsync(key, CancellationToken.None));
        await Assert.ThrowsAsync<ArgumentException>(async () => await store.DeleteAsync(key, CancellationToken.None));
    }

    [Fact]
    public async Task ConcurrentWritersOfOneKey_ExactlyOneWins()
    {
        var store = await NewStoreAsync();
        var results = await Task.WhenAll(Enumerable.Range(0, 8).Select(async i =>
        {
            await using var pending = await store.BeginWriteAsync("file/race", CancellationToken.None);
            await pending.Stream.WriteAsync(Encoding.UTF8.GetBytes($"writer {i}"));
            try
            {
                await pending.CommitAsync(CancellationToken.None);
                return $"writer {i}";
            }
            catch (BlobAlreadyExistsException)
            {
                return null;
            }
        }));
        var winner = Assert.Single(results, r => r is not null);
        Assert.Equal(winner, Encoding.UTF8.GetString(await ReadAllAsync(await store.OpenReadAsync("file/race", CancellationToken.None))));
    }

    private static byte[] Pattern(int length)
    {
        var bytes = new byte[length];
        new Random(length).NextBytes(bytes);
        return bytes;
    }

    private static async Task WriteAsync(IBlobStore store, string key, byte[] bytes)
    {
        await using var pending = await store.BeginWriteAsync(key, CancellationToken.None);
        await pending.Stream.WriteAsync(bytes);
        await pending.CommitAsync(CancellationToken.None);
    }

    private static async Task<byte[]> ReadAllAsync(Stream? stream)
    {
        Assert.NotNull(stream);
        await using (stream)
        {
            using var copy = new MemoryStream();
            await stream.CopyToAsync(copy);
            return copy.ToArray();
        }
    }

    private static async Task<List<string>> ListAsync(IBlobStore store, string prefix)
    {
        var keys = new List<string>();
        await foreach (var key in store.ListAsync(prefix, CancellationToken.None))
        {
            keys.Add(key);
        }

        return keys;
    }
}
