using Amazon.S3.Model;
using Atelier.Storage.Blobs;
using Atelier.Testing;

namespace Atelier.Storage.S3.Tests;

/// <summary>What an S3 location does beyond the contract: multipart writes, the orphan age, listing pages, prefixes.</summary>
[Collection(CephCollection.Name)]
[Trait("Category", "Slow")]
public sealed class S3BlobStoreTests(CephRgw ceph) : IDisposable
{
    private const string Bucket = "s3-store";
    private const int PartSize = S3BlobStoreOptions.MinPartSize;
    private readonly List<IDisposable> _owned = [];

    public void Dispose()
    {
        foreach (var owned in _owned)
        {
            owned.Dispose();
        }
    }

    [Fact]
    public async Task ABlobOfSeveralParts_IsInvisibleUntilCommitted_ThenReadWhole_AndRangesAcrossPartBoundariesAreExact()
    {
        // Two parts in flight at most, so the third waits for the first: parts finish out of order.
        var store = await NewStoreAsync(options => options with { PartsInFlight = 2 });
        var bytes = Pattern((3 * PartSize) + 12_345);
        await using (var pending = await store.BeginWriteAsync("shard/0", CancellationToken.None))
        {
            // Odd-sized writes, so parts fill across write boundaries.
            for (var offset = 0; offset < bytes.Length; offset += 999_983)
            {
                await pending.Stream.WriteAsync(bytes.AsMemory(offset, Math.Min(999_983, bytes.Length - offset)));
            }

            Assert.Null(await store.GetLengthAsync("shard/0", CancellationToken.None));
            Assert.Empty(await ListAsync(store, ""));
            await pending.CommitAsync(CancellationToken.None);
        }

        Assert.Equal(bytes.Length, await store.GetLengthAsync("shard/0", CancellationToken.None));
        Assert.Equal(bytes, await ReadAllAsync(await store.OpenReadAsync("shard/0", CancellationToken.None)));

        // It was stored as a multipart object: S3 marks such an ETag with its part count.
        using var client = ceph.NewClient();
        var head = await client.GetObjectMetadataAsync(Bucket, store.Prefix + "shard/0");
        Assert.EndsWith("-4\"", head.ETag, StringComparison.Ordinal);

        foreach (var (offset, length) in new (long, long?)[] { (PartSize - 10, 20), (2L * PartSize - 1, 2), (0, PartSize + 1), (2L * PartSize, null), (bytes.Length - 1, 100) })
        {
            var end = (int)Math.Min(bytes.Length, length is null ? bytes.Length : offset + length.Value);
            Assert.Equal(bytes[(int)offset..end], await ReadAllAsync(await store.OpenReadRangeAsync("shard/0", offset, length, CancellationToken.None)));
        }

        // A committed write leaves no multipart upload behind.
        var uploads = await client.ListMultipartUploadsAsync(new ListMultipartUploadsRequest { BucketName = Bucket, Prefix = store.Prefix });
        Assert.Empty(uploads.MultipartUploads ?? []);
    }

    [Fact]
    public async Task AMultipartCommit_OfAKeyThatExists_FailsAndKeepsTheFirstBytes()
    {
        var store = await NewStoreAsync();
        var first = Pattern(1000);
        await using (var pending = await store.BeginWriteAsync("ck/manifest", CancellationToken.None))
        {
            await pending.Stream.WriteAsync(first);
            await pending.CommitAsync(CancellationToken.None);
        }

        await using (var second = await store.BeginWriteAsync("ck/manifest", CancellationToken.None))
        {
            await second.Stream.WriteAsync(Pattern(PartSize + 1));
            var e = await Assert.ThrowsAsync<BlobAlreadyExistsException>(async () => await second.CommitAsync(CancellationToken.None));
            Assert.Equal("ck/manifest", e.Key);
        }

        Assert.Equal(first, await ReadAllAsync(await store.OpenReadAsync("ck/manifest", CancellationToken.None)));
        using var client = ceph.NewClient();
        var uploads = await client.ListMultipartUploadsAsync(new ListMultipartUploadsRequest { BucketName = Bucket, Prefix = store.Prefix });
        Assert.Empty(uploads.MultipartUploads ?? []);
    }

    [Fact]
    public async Task TheOrphanSweep_AbortsOnlyUploadsOlderThanTheAge_AndNeverThisStoresOwnWriteInProgress()
    {
        var clock = new ShiftedClock(TimeSpan.Zero);
        var store = await NewStoreAsync(options => options with { AbandonedUploadAge = TimeSpan.FromHours(1) }, clock);
        using var client = ceph.NewClient();

        // Another node crashed mid-write: its upload, with one part, stays in the bucket.
        var crashed = await client.InitiateMultipartUploadAsync(Bucket, store.Prefix + "file/crashed");
        using (var part = new MemoryStream(Pattern(1000)))
        {
            await client.UploadPartAsync(new UploadPartRequest { BucketName = Bucket, Key = store.Prefix + "file/crashed", UploadId = crashed.UploadId, PartNumber = 1, InputStream = part, UseChunkEncoding = false });
        }

        // This store's own write, in progress across the sweep.
        await using var own = await store.BeginWriteAsync("file/own", CancellationToken.None);
        await own.Stream.WriteAsync(Pattern(2000));

        // Young: it may be a live write on another node, so it stays.
        Assert.Equal(0, await store.RemoveOrphansAsync(CancellationToken.None));
        Assert.Equal(2, await CountUploadsAsync(client, store));

        // Two hours later the crashed upload is abandoned; the own write is still this store's.
        clock.Offset = TimeSpan.FromHours(2);
        Assert.Equal(1, await store.RemoveOrphansAsync(CancellationToken.None));
        var left = await client.ListMultipartUploadsAsync(new ListMultipartUploadsRequest { BucketName = Bucket, Prefix = store.Prefix });
        Assert.Equal(store.Prefix + "file/own", Assert.Single(left.MultipartUploads).Key);

        await own.CommitAsync(CancellationToken.None);
        Assert.Equal(Pattern(2000), await ReadAllAsync(await store.OpenReadAsync("file/own", CancellationToken.None)));
        Assert.Null(await store.OpenReadAsync("file/crashed", CancellationToken.None));
        Assert.Equal(0, await CountUploadsAsync(client, store));

        // A restarted process (a new store) sweeps another store's old uploads of its prefix, not younger ones.
        var other = await client.InitiateMultipartUploadAsync(Bucket, store.Prefix + "file/other");
        var restarted = Track(new S3BlobStore("rgw", ceph.StoreOptions(Bucket, store.Prefix.TrimEnd('/')) with { AbandonedUploadAge = TimeSpan.FromHours(1) }, new ShiftedClock(TimeSpan.FromHours(2))));
        Assert.Equal(1, await restarted.RemoveOrphansAsync(CancellationToken.None));
        await Assert.ThrowsAsync<Amazon.S3.AmazonS3Exception>(() => client.ListPartsAsync(Bucket, store.Prefix + "file/other", other.UploadId));
    }

    [Fact]
    public async Task Listing_PagesThroughMoreKeysThanOneAnswerHolds_InOrdinalOrder_AndStaysInsideItsPrefix()
    {
        var store = await NewStoreAsync(options => options with { ListPageSize = 2 });
        var neighbour = await NewStoreAsync();
        string[] keys = ["a/1", "a/10", "a/2", "b/x", "a/Z", "a/_"];
        foreach (var key in keys)
        {
            await WriteAsync(store, key, [1]);
        }

        await WriteAsync(neighbour, "a/neighbour", [2]);
        Assert.Equal(keys.Where(k => k.StartsWith("a/", StringComparison.Ordinal)).Order(StringComparer.Ordinal), await ListAsync(store, "a/"));
        Assert.Equal(keys.Order(StringComparer.Ordinal), await ListAsync(store, ""));
        Assert.Equal(["a/neighbour"], await ListAsync(neighbour, ""));
        Assert.Null(await store.OpenReadAsync("a/neighbour", CancellationToken.None));
    }

    [Fact]
    public async Task AnEmptyBlob_IsCommitted_AndEveryRangeOfItIsEmpty()
    {
        var store = await NewStoreAsync();
        await WriteAsync(store, "empty", []);
        Assert.Equal(0, await store.GetLengthAsync("empty", CancellationToken.None));
        Assert.Empty(await ReadAllAsync(await store.OpenReadAsync("empty", CancellationToken.None)));
        Assert.Empty(await ReadAllAsync(await store.OpenReadRangeAsync("empty", 0, 10, CancellationToken.None)));
        Assert.Empty(await ReadAllAsync(await store.OpenReadRangeAsync("empty", 5, null, CancellationToken.None)));
        Assert.Empty(await ReadAllAsync(await store.OpenReadRangeAsync("empty", 0, 0, CancellationToken.None)));
        Assert.Null(await store.OpenReadRangeAsync("absent", 0, 0, CancellationToken.None));
    }

    private async Task<S3BlobStore> NewStoreAsync(Func<S3BlobStoreOptions, S3BlobStoreOptions>? configure = null, TimeProvider? clock = null)
    {
        await ceph.BucketAsync(Bucket);
        var options = ceph.StoreOptions(Bucket) with { PartSize = PartSize };
        return Track(new S3BlobStore("rgw", configure?.Invoke(options) ?? options, clock ?? TimeProvider.System));
    }

    private T Track<T>(T owned)
        where T : IDisposable
    {
        _owned.Add(owned);
        return owned;
    }

    private static async Task<int> CountUploadsAsync(Amazon.S3.AmazonS3Client client, S3BlobStore store) =>
        (await client.ListMultipartUploadsAsync(new ListMultipartUploadsRequest { BucketName = Bucket, Prefix = store.Prefix })).MultipartUploads?.Count ?? 0;

    internal static byte[] Pattern(int length)
    {
        var bytes = new byte[length];
        new Random(length).NextBytes(bytes);
        return bytes;
    }

    internal static async Task WriteAsync(IBlobStore store, string key, byte[] bytes)
    {
        await using var pending = await store.BeginWriteAsync(key, CancellationToken.None);
        await pending.Stream.WriteAsync(bytes);
        await pending.CommitAsync(CancellationToken.None);
    }

    internal static async Task<byte[]> ReadAllAsync(Stream? stream)
    {
        Assert.NotNull(stream);
        await using (stream)
        {
            using var copy = new MemoryStream();
            await stream.CopyToAsync(copy);
            return copy.ToArray();
        }
    }

    internal static async Task<List<string>> ListAsync(IBlobStore store, string prefix)
    {
        var keys = new List<string>();
        await foreach (var key in store.ListAsync(prefix, CancellationToken.None))
        {
            keys.Add(key);
        }

        return keys;
    }
}
