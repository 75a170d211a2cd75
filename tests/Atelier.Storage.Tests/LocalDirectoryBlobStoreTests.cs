using System.Text;
using Atelier.Storage.Blobs;

namespace Atelier.Storage.Tests;

// What only a local directory shows: no file is left in tmp/ (the contract suite checks the rest).
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
            Assert.Null(await store.GetLengthAsync("file/a", CancellationToken.None));
            await pending.CommitAsync(CancellationToken.None);
        }

        var stream = await store.OpenReadAsync("file/a", CancellationToken.None);
        Assert.NotNull(stream);
        using var reader = new StreamReader(stream);
        Assert.Equal("hello", await reader.ReadToEndAsync());
        Assert.Equal(0, store.PendingCount);
    }

    [Fact]
    public async Task BlobLargerThanTheWriteBehindWindow_CommitsEveryByteInOrder()
    {
        // 80 MiB in odd-sized writes, so ranges are handed to the disk and dropped from the cache
        // mid-write (every 8 MiB, a 64 MiB window behind) and the steps never align with a write.
        var store = NewStore();
        var random = new Random(14);
        var block = new byte[(3 << 20) + 4099];
        using var expected = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        long total = 0;
        await using (var pending = await store.BeginWriteAsync("file/big", CancellationToken.None))
        {
            while (total < 80L << 20)
            {
                random.NextBytes(block);
                var length = random.Next(1, block.Length);
                expected.AppendData(block.AsSpan(0, length));
                await pending.Stream.WriteAsync(block.AsMemory(0, length));
                total += length;
            }

            await pending.CommitAsync(CancellationToken.None);
        }

        Assert.Equal(total, await store.GetLengthAsync("file/big", CancellationToken.None));
        var stream = await store.OpenReadAsync("file/big", CancellationToken.None);
        Assert.NotNull(stream);
        await using (stream)
        {
            Assert.Equal(expected.GetHashAndReset(), await System.Security.Cryptography.SHA256.HashDataAsync(stream));
        }

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

        Assert.Null(await store.OpenReadAsync("file/b", CancellationToken.None));
        Assert.Equal(0, store.PendingCount);
        Assert.Empty(await store.ListAsync("", CancellationToken.None).ToListAsync());
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
        Assert.Null(await reopened.OpenReadAsync("file/c", CancellationToken.None));
        Assert.Equal(1, await reopened.RemoveOrphansAsync(CancellationToken.None));
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

        Assert.Equal(5, await store.GetLengthAsync("file/d", CancellationToken.None));
        Assert.Equal(0, store.PendingCount);
    }
}
