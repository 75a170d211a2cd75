using System.Security.Cryptography;
using Atelier.Storage.Blobs;

namespace Atelier.Storage.Tests;

// A local blob written from block-aligned memory goes to the disk with direct I/O for its whole
// blocks and through the page cache for the rest; either way the committed bytes are exactly the
// bytes written. Where the file system refuses O_DIRECT the page cache takes everything.
public sealed class DirectWriteTests
{
    private const int Block = AlignedBufferPool.Alignment;

    // A small pool: 64 KiB buffers, so the multi-MiB sizes span many of them.
    private static readonly AlignedBufferPool Pool = new(64 * 1024, 4);

    public static TheoryData<int> Sizes => [0, 1, Block - 1, Block, Block + 1, (3 << 20) + 12_345];

    [Theory]
    [MemberData(nameof(Sizes))]
    public async Task BlobWrittenFromAlignedBuffers_CommitsExactlyItsBytes_WholeBlocksDirect(int size)
    {
        var store = new LocalDirectoryBlobStore("local", Atelier.Testing.TestCleanup.CreateDirectory("atelier-direct"));
        var (direct, refused) = await WriteAlignedAsync(store, "file/direct", size, seed: size);

        await AssertStoredAsync(store, "file/direct", size, seed: size);
        // On a file system with direct I/O every whole block went direct and only the tail was
        // cached; on one without, nothing went direct.
        Assert.Equal(refused ? 0 : size / Block * Block, direct);
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public async Task BlobOnTmpfs_CommitsExactlyItsBytes(int size)
    {
        // tmpfs refused O_DIRECT (EINVAL) before Linux 6.6 and takes it since: both must store the bytes.
        if (!Directory.Exists("/dev/shm"))
        {
            return;
        }

        var root = Path.Combine("/dev/shm", $"atelier-direct-{Guid.NewGuid():N}");
        try
        {
            var store = new LocalDirectoryBlobStore("shm", root);
            var (direct, refused) = await WriteAlignedAsync(store, "file/shm", size, seed: size + 1);
            await AssertStoredAsync(store, "file/shm", size, seed: size + 1);
            Assert.Equal(refused ? 0 : size / Block * Block, direct);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public async Task UnalignedWriteBetweenAlignedOnes_SendsTheRestThroughThePageCache_BytesInOrder()
    {
        // Aligned 64 KiB, then 100 bytes from an ordinary array (the offset leaves the block
        // boundary), then aligned 64 KiB again: that one can no longer go direct.
        var store = new LocalDirectoryBlobStore("local", Atelier.Testing.TestCleanup.CreateDirectory("atelier-direct"));
        var random = new Random(7);
        var first = Pool.Rent();
        var middle = new byte[100];
        var last = Pool.Rent();
        random.NextBytes(first.Span);
        random.NextBytes(middle);
        random.NextBytes(last.Span);
        long direct;
        await using (var pending = await store.BeginWriteAsync("file/mixed", CancellationToken.None))
        {
            await pending.Stream.WriteAsync(first);
            await pending.Stream.WriteAsync(middle);
            await pending.Stream.WriteAsync(last);
            await pending.CommitAsync(CancellationToken.None);
            var writer = Assert.IsType<WriteBehindFileStream>(pending.Stream);
            direct = writer.DirectRefused ? -1 : writer.DirectBytes;
        }

        var expected = SHA256.HashData([.. first.Span, .. middle, .. last.Span]);
        Pool.Return(first);
        Pool.Return(last);
        Assert.True(direct is -1 or 64 * 1024, $"direct bytes: {direct}");
        var stream = await store.OpenReadAsync("file/mixed", CancellationToken.None);
        Assert.NotNull(stream);
        await using (stream)
        {
            Assert.Equal(expected, await SHA256.HashDataAsync(stream));
        }
    }

    [Fact]
    public async Task FileThatRefusesDirectIo_IsWrittenThroughThePageCache()
    {
        // /dev/null is a real file that refuses O_DIRECT (F_SETFL answers EINVAL): the stream must
        // take that answer and write through the ordinary path, not fail.
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        var buffer = Pool.Rent();
        try
        {
            await using var writer = new WriteBehindFileStream(new FileStream("/dev/null", FileMode.Open, FileAccess.Write, FileShare.ReadWrite, bufferSize: 0, FileOptions.Asynchronous));
            await writer.WriteAsync(buffer);
            writer.Write(buffer.Span);
            Assert.True(writer.DirectRefused);
            Assert.Equal(0, writer.DirectBytes);
            Assert.Equal(2L * buffer.Length, writer.Length);
        }
        finally
        {
            Pool.Return(buffer);
        }
    }

    [Fact]
    public async Task LongBlob_IsFlushedBehindItsWrites_AndKeepsItsBytes()
    {
        // With a 256 KiB step, 4 MiB of writes start background flushes (one at a time, so at
        // least one and at most one per step) while the writes go on; the bytes are unchanged.
        var directory = Atelier.Testing.TestCleanup.CreateDirectory("atelier-flush-behind");
        var path = Path.Combine(directory, "blob");
        var random = new Random(11);
        var expected = new byte[4 << 20];
        random.NextBytes(expected);
        int flushes;
        await using (var writer = new WriteBehindFileStream(new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 0, FileOptions.Asynchronous), deviceFlushStepBytes: 256 << 10))
        {
            var buffer = Pool.Rent();
            try
            {
                for (var offset = 0; offset < expected.Length; offset += buffer.Length)
                {
                    expected.AsSpan(offset, buffer.Length).CopyTo(buffer.Span);
                    await writer.WriteAsync(buffer);
                }
            }
            finally
            {
                Pool.Return(buffer);
            }

            await writer.WaitForFlushBehindAsync();
            flushes = writer.FlushesBehind;
        }

        Assert.InRange(flushes, OperatingSystem.IsLinux() ? 1 : 0, 16);
        Assert.Equal(SHA256.HashData(expected), SHA256.HashData(await File.ReadAllBytesAsync(path)));
    }

    [Fact]
    public void Pool_GivesBlockAlignedBuffersOfItsSize_AndTakesOnlyItsOwn()
    {
        var buffers = Enumerable.Range(0, 6).Select(_ => Pool.Rent()).ToList();
        foreach (var buffer in buffers)
        {
            Assert.Equal(64 * 1024, buffer.Length);
            unsafe
            {
                using var pin = buffer.Pin();
                Assert.Equal(0, (nint)pin.Pointer % Block);
            }
        }

        foreach (var buffer in buffers)
        {
            Pool.Return(buffer[..100]);
        }

        Assert.Throws<ArgumentException>(() => Pool.Return(new byte[64 * 1024]));
    }

    // Writes `size` seeded bytes through aligned pool buffers, each filled whole but the last, as
    // the upload path does; returns how many went direct and whether direct I/O was refused.
    private static async Task<(long Direct, bool Refused)> WriteAlignedAsync(LocalDirectoryBlobStore store, string key, int size, int seed)
    {
        var random = new Random(seed);
        await using var pending = await store.BeginWriteAsync(key, CancellationToken.None);
        var left = size;
        while (left > 0)
        {
            var buffer = Pool.Rent();
            var length = Math.Min(left, buffer.Length);
            random.NextBytes(buffer.Span[..length]);
            await pending.Stream.WriteAsync(buffer[..length]);
            Pool.Return(buffer);
            left -= length;
        }

        await pending.CommitAsync(CancellationToken.None);
        var writer = Assert.IsType<WriteBehindFileStream>(pending.Stream);
        return (writer.DirectBytes, writer.DirectRefused);
    }

    private static async Task AssertStoredAsync(LocalDirectoryBlobStore store, string key, int size, int seed)
    {
        var expected = new byte[size];
        var random = new Random(seed);
        for (var offset = 0; offset < size; offset += Pool.BufferBytes)
        {
            random.NextBytes(expected.AsSpan(offset, Math.Min(Pool.BufferBytes, size - offset)));
        }

        Assert.Equal(size, await store.GetLengthAsync(key, CancellationToken.None));
        var stream = await store.OpenReadAsync(key, CancellationToken.None);
        Assert.NotNull(stream);
        await using (stream)
        {
            Assert.Equal(SHA256.HashData(expected), await SHA256.HashDataAsync(stream));
        }

        Assert.Equal(0, store.PendingCount);
    }
}
