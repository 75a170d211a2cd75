using Atelier.Storage.Blobs;
using Atelier.Testing;

namespace Atelier.Storage.Tests;

/// <summary>The blob-store contract, run against a local directory.</summary>
public sealed class LocalDirectoryBlobStoreContractTests : BlobStoreContract
{
    protected override Task<IBlobStore> NewStoreAsync() =>
        Task.FromResult<IBlobStore>(new LocalDirectoryBlobStore("local", TestCleanup.CreateDirectory("atelier-blobs")));

    protected override Task<IBlobStore> ReopenAsync(IBlobStore store) =>
        Task.FromResult<IBlobStore>(new LocalDirectoryBlobStore(store.LocationId, ((LocalDirectoryBlobStore)store).Root));
}
