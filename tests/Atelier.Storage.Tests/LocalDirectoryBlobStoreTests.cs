using System.Text;
using Atelier.Storage.Blobs;

namespace Atelier.Storage.Tests;

public sealed class LocalDirectoryBlobStoreTests
{
    private static LocalDirectoryBlobStore NewStore() => new("local", Atelier.Testing.TestCleanup.CreateDirectory("atelier-blobs"));

    [Fact]
    public async Task CommittedWrite_IsVisibleWithItsBytes()
    {
        var store = NewStore();
        await using (var pending = await store.BeginWriteAsync("file/a", CancellationToken.None))
        {
            await pending.Stream.WriteAsync(Encoding.UTF8.GetBytes("hello"));
            Assert.Equal(-1, store.GetLength("file/a"));
            await pending.CommitAsync(CancellationToken.None);
        }

        Assert.True(store.TryOpenRead("file/a", out var stream));
        using var reader = new StreamReader(stream);
        Assert.Equal("hello", await reader.ReadToEndAsync());
        Assert.Equal(0, store.PendingCount);
    }

    [Fact]
    public async Task UncommittedWrite_LeavesNothingBehind()
    {
        var store = NewStore();
        await using (var pending = await store.BeginWriteAsync("file/b", CancellationToken.None))
        {
            await pending.Stream.WriteAsync(new byte[10_000]);
        }

        Assert.False(store.TryOpenRead("file/b", out _));
        Assert.Equal(0, store.PendingCount);
        Assert.Empty(store.EnumerateKeys(""));
    }

    [Fact]
    public async Task CrashedWrite_IsInvisibleAndRemovedByRecovery()
    {
        var store = NewStore();

        // A write abandoned without dispose stands for a process killed mid-write.
        var pending = await store.BeginWriteAsync("file/c", CancellationToken.None);
        await pending.Stream.WriteAsync(new byte[4096]);
        await pending.Stream.FlushAsync();

        var reopened = new LocalDirectoryBlobStore("local", store.Root);
        Assert.False(reopened.TryOpenRead("file/c", out _));
        Assert.Equal(1, reopened.RemoveOrphans());
        Assert.Equal(0, reopened.PendingCount);
        await pending.DisposeAsync();
    }

    [Fact]
    public async Task CommitOverAnExistingKey_FailsAndKeepsTheOriginal()
    {
        var store = NewStore();
        await using (var first = await store.BeginWriteAsync("file/d", CancellationToken.None))
        {
            await first.Stream.WriteAsync(Encoding.UTF8.GetBytes("first"));
            await first.CommitAsync(CancellationToken.None);
        }

        await using (var second = await store.BeginWriteAsync("file/d", CancellationToken.None))
        {
            await second.Stream.WriteAsync(Encoding.UTF8.GetBytes("second"));
            await Assert.ThrowsAsync<BlobAlreadyExistsException>(async () => await second.CommitAsync(CancellationToken.None));
        }

        Assert.Equal(5, store.GetLength("file/d"));
        Assert.Equal(0, store.PendingCount);
    }

    [Theory]
    [InlineData("../escape")]
    [InlineData("file/../../escape")]
    [InlineData("/absolute")]
    [InlineData("file/")]
    [InlineData("file//double")]
    [InlineData("file/with space")]
    [InlineData("")]
    public async Task KeyThatCouldEscapeTheStore_IsRejected(string key)
    {
        var store = NewStore();
        await Assert.ThrowsAsync<ArgumentException>(async () => await store.BeginWriteAsync(key, CancellationToken.None));
        Assert.Throws<ArgumentException>(() => store.TryOpenRead(key, out _));
    }

    [Fact]
    public async Task Delete_RemovesTheBlob()
    {
        var store = NewStore();
        await using (var pending = await store.BeginWriteAsync("file/e", CancellationToken.None))
        {
            await pending.Stream.WriteAsync(new byte[3]);
            await pending.CommitAsync(CancellationToken.None);
        }

        Assert.True(await store.DeleteAsync("file/e", CancellationToken.None));
        Assert.False(await store.DeleteAsync("file/e", CancellationToken.None));
        Assert.Equal(-1, store.GetLength("file/e"));
    }
}
