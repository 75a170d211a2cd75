using Atelier.Storage.Blobs;
using Atelier.Testing;

namespace Atelier.Storage.S3.Tests;

/// <summary>
/// The blob-store contract on a real S3-compatible server, Ceph RGW: each test's store is a key
/// prefix of its own in this class's bucket. The orphan age is zero here, standing for a restart
/// long after the crash; <see cref="S3BlobStoreTests"/> checks the age itself.
/// </summary>
[Collection(CephCollection.Name)]
[Trait("Category", "Slow")]
public sealed class S3BlobStoreContractTests(CephRgw ceph) : BlobStoreContract, IDisposable
{
    private const string Bucket = "contract";
    private readonly List<S3BlobStore> _stores = [];

    protected override async Task<IBlobStore> NewStoreAsync()
    {
        await ceph.BucketAsync(Bucket);
        return Open(ceph.StoreOptions(Bucket) with { AbandonedUploadAge = TimeSpan.Zero });
    }

    protected override Task<IBlobStore> ReopenAsync(IBlobStore store)
    {
        var s3 = (S3BlobStore)store;
        return Task.FromResult<IBlobStore>(Open(ceph.StoreOptions(Bucket, s3.Prefix.TrimEnd('/')) with { AbandonedUploadAge = TimeSpan.Zero }));
    }

    private S3BlobStore Open(S3BlobStoreOptions options)
    {
        // The server's clock stamps an upload's start to the second or millisecond: a clock a minute
        // ahead makes an upload begun just now older than an age of zero, whatever the rounding.
        var store = new S3BlobStore("rgw", options, new ShiftedClock(TimeSpan.FromMinutes(1)));
        _stores.Add(store);
        return store;
    }

    public void Dispose()
    {
        foreach (var store in _stores)
        {
            store.Dispose();
        }
    }
}

/// <summary>The system clock moved by an offset that a test may change.</summary>
internal sealed class ShiftedClock(TimeSpan offset) : TimeProvider
{
    public TimeSpan Offset { get; set; } = offset;

    public override DateTimeOffset GetUtcNow() => System.GetUtcNow() + Offset;
}
