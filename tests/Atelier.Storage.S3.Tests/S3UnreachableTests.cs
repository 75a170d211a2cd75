using System.Net;
using System.Net.Sockets;
using Atelier.Core.Errors;

namespace Atelier.Storage.S3.Tests;

/// <summary>
/// An S3 location whose endpoint does not answer: reads, lengths and listings fail with a storage
/// error that names the location (503 at the API, and a reader that knows another copy falls back
/// to it), never the SDK's own exception. No Ceph needed: nothing listens on the port.
/// </summary>
public sealed class S3UnreachableTests
{
    [Fact]
    public async Task ReadsOfAnEndpointThatDoesNotAnswer_FailAsStorageUnavailable_NamingTheLocation()
    {
        // A port that was free a moment ago: connections to it are refused.
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();

        using var store = new S3BlobStore(
            "dead-bucket",
            new S3BlobStoreOptions { Endpoint = new Uri($"http://127.0.0.1:{port}"), Bucket = "atelier", Credentials = new S3Credentials("access", "secret") },
            TimeProvider.System);

        var read = await Assert.ThrowsAsync<StorageUnavailableException>(async () => await store.OpenReadAsync("file/x", CancellationToken.None));
        Assert.Contains("dead-bucket", read.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<StorageUnavailableException>(async () => await store.GetLengthAsync("file/x", CancellationToken.None));
        await Assert.ThrowsAsync<StorageUnavailableException>(async () =>
        {
            await foreach (var _ in store.ListAsync("file/", CancellationToken.None))
            {
            }
        });
    }
}
