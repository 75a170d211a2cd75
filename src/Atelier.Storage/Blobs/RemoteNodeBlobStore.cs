using System.Net;
using System.Net.Http.Headers;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text.Json;
using Atelier.Core.Errors;

namespace Atelier.Storage.Blobs;

/// <summary>Where a node serves the blobs of its own drives to the other nodes, and the token it asks for.</summary>
/// <param name="BaseAddress">The node's HTTP address, e.g. <c>http://10.0.0.2:8080/</c>.</param>
/// <param name="Token">The bearer token of its blob endpoint (a secret of that process's life).</param>
public sealed record NodeBlobEndpoint(Uri BaseAddress, string Token);

/// <summary>Finds a node's blob endpoint (in a cluster, by asking that node's worker grain).</summary>
public interface INodeBlobDirectory
{
    /// <summary>The endpoint of <paramref name="node"/>; throws <see cref="StorageUnavailableException"/> when the node is not reachable.</summary>
    ValueTask<NodeBlobEndpoint> ResolveAsync(string node, CancellationToken cancellationToken);

    /// <summary>Drops what is known of <paramref name="node"/>'s endpoint (it refused its token or did not answer: it may have restarted).</summary>
    void Forget(string node);
}

/// <summary>
/// This process's side of node-to-node blob reads: the token other nodes must present, and the
/// address they reach this node's HTTP server at (set once the server listens).
/// </summary>
public sealed class LocalBlobEndpoint
{
    /// <summary>The node's name; null in the embedded mode, where no other node reads.</summary>
    public string? Node { get; init; }

    /// <summary>A random token of this process's life, handed out only through cluster membership (a grain call).</summary>
    public string Token { get; } = Convert.ToHexString(RandomNumberGenerator.GetBytes(32));

    /// <summary>The HTTP address other nodes reach this one at; null until the server listens.</summary>
    public Uri? BaseAddress { get; set; }

    /// <summary>True when <paramref name="presented"/> is this process's token (compared in constant time).</summary>
    public bool Accepts(string? presented) =>
        presented is not null && CryptographicOperations.FixedTimeEquals(System.Text.Encoding.ASCII.GetBytes(presented), System.Text.Encoding.ASCII.GetBytes(Token));
}

/// <summary>
/// A local-directory location on another node's drive, seen from this node: it is read by
/// streaming from its owner over HTTP (ranged, never through grain messages) and never written
/// here, since its bytes are not on this machine. When the owner is down, every read says so with
/// a <see cref="StorageUnavailableException"/>, so that readers that know another copy fall back to it.
/// </summary>
public sealed class RemoteNodeBlobStore : IBlobStore
{
    /// <summary>The path of the owner's blob endpoint, below its base address.</summary>
    public const string EndpointPath = "internal/v1/blobs";

    private readonly string _owner;
    private readonly INodeBlobDirectory? _directory;
    private readonly HttpClient _http;

    /// <summary>Creates the view of <paramref name="locationId"/>, a drive of <paramref name="owner"/>.</summary>
    /// <param name="locationId">The location.</param>
    /// <param name="owner">The node whose drive it is.</param>
    /// <param name="directory">Finds the owner's endpoint; null when this process cannot reach other nodes (every read then fails).</param>
    /// <param name="http">The client that streams the bytes.</param>
    public RemoteNodeBlobStore(string locationId, string owner, INodeBlobDirectory? directory, HttpClient http)
    {
        LocationId = locationId;
        _owner = owner;
        _directory = directory;
        _http = http;
    }

    /// <inheritdoc />
    public string LocationId { get; }

    /// <summary>The node whose drive this location is.</summary>
    public string Owner => _owner;

    /// <inheritdoc />
    public ValueTask<PendingBlob> BeginWriteAsync(string key, CancellationToken cancellationToken) =>
        throw new StorageUnavailableException($"Location '{LocationId}' is a drive of node '{_owner}'; only that node writes it.");

    /// <inheritdoc />
    public ValueTask<bool> DeleteAsync(string key, CancellationToken cancellationToken) =>
        throw new StorageUnavailableException($"Location '{LocationId}' is a drive of node '{_owner}'; only that node deletes from it.");

    /// <inheritdoc />
    public ValueTask<Stream?> OpenReadAsync(string key, CancellationToken cancellationToken) =>
        OpenReadRangeAsync(key, 0, null, cancellationToken);

    /// <inheritdoc />
    public async ValueTask<Stream?> OpenReadRangeAsync(string key, long offset, long? length, CancellationToken cancellationToken)
    {
        BlobKey.Validate(key);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        using var request = await RequestAsync(HttpMethod.Get, $"{Uri.EscapeDataString(LocationId)}/{key}", cancellationToken).ConfigureAwait(false);
        if (offset > 0 || length is not null)
        {
            if (length == 0)
            {
                // HTTP has no empty range; an empty read of an existing blob is an empty stream.
                return await GetLengthAsync(key, cancellationToken).ConfigureAwait(false) is null ? null : Stream.Null;
            }

            request.Headers.Range = new RangeHeaderValue(offset, length is { } n ? offset + n - 1 : null);
        }

        var response = await SendAsync(request, cancellationToken).ConfigureAwait(false);
        if (response.StatusCode == HttpStatusCode.NotFound)
        {
            response.Dispose();
            return null;
        }

        if (response.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable)
        {
            // A range past the end reads nothing, as the local and S3 stores answer.
            response.Dispose();
            return Stream.Null;
        }

        EnsureSuccess(response);
        return new ResponseBodyStream(await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false), response, response.Content.Headers.ContentLength);
    }

    /// <inheritdoc />
    public async ValueTask<long?> GetLengthAsync(string key, CancellationToken cancellationToken)
    {
        BlobKey.Validate(key);
        using var request = await RequestAsync(HttpMethod.Head, $"{Uri.EscapeDataString(LocationId)}/{key}", cancellationToken).ConfigureAwait(false);
        using var response = await SendAsync(request, cancellationToken).ConfigureAwait(false);
        if (response.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }

        EnsureSuccess(response);
        return response.Content.Headers.ContentLength;
    }

    /// <inheritdoc />
    public async IAsyncEnumerable<string> ListAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        using var request = await RequestAsync(HttpMethod.Get, $"{Uri.EscapeDataString(LocationId)}?prefix={Uri.EscapeDataString(prefix)}", cancellationToken).ConfigureAwait(false);
        using var response = await SendAsync(request, cancellationToken).ConfigureAwait(false);
        EnsureSuccess(response);
        var stream = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        await using (stream.ConfigureAwait(false))
        {
            await foreach (var key in JsonSerializer.DeserializeAsyncEnumerable<string>(stream, cancellationToken: cancellationToken).ConfigureAwait(false))
            {
                if (key is not null)
                {
                    yield return key;
                }
            }
        }
    }

    /// <inheritdoc />
    /// <remarks>Partial writes on another node's drive are that node's to remove, at its own start.</remarks>
    public ValueTask<int> RemoveOrphansAsync(CancellationToken cancellationToken) => ValueTask.FromResult(0);

    private async ValueTask<HttpRequestMessage> RequestAsync(HttpMethod method, string path, CancellationToken cancellationToken)
    {
        if (_directory is null)
        {
            throw new StorageUnavailableException($"Location '{LocationId}' is a drive of node '{_owner}', and this process does not reach other nodes.");
        }

        var endpoint = await _directory.ResolveAsync(_owner, cancellationToken).ConfigureAwait(false);
        var request = new HttpRequestMessage(method, new Uri(endpoint.BaseAddress, $"{EndpointPath}/{path}"));
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", endpoint.Token);
        return request;
    }

    private async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        try
        {
            return await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
        }
        catch (HttpRequestException e)
        {
            _directory?.Forget(_owner);
            throw new StorageUnavailableException($"Location '{LocationId}' is a drive of node '{_owner}', which did not answer: {e.Message}", e);
        }
    }

    private void EnsureSuccess(HttpResponseMessage response)
    {
        if (!response.IsSuccessStatusCode)
        {
            var status = (int)response.StatusCode;
            if (status == 401)
            {
                // A new process of that node has a new token.
                _directory?.Forget(_owner);
            }

            response.Dispose();
            throw new StorageUnavailableException($"Node '{_owner}' answered {status} for location '{LocationId}'.");
        }
    }
}
