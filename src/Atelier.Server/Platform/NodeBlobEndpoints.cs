using Atelier.Storage.Blobs;
using Atelier.Storage.Placement;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Atelier.Server.Hosting;

namespace Atelier.Server.Platform;

/// <summary>
/// <c>/internal/v1/blobs</c>: how the other nodes of a cluster read this node's drives (a job that
/// resumes elsewhere, a file downloaded through another node). Bytes go over HTTP, ranged, never in
/// grain messages; the caller presents the token this process hands out through a grain call to
/// its worker (<see cref="LocalBlobEndpoint"/>), so only members of the cluster read. Outside the
/// API: no API key opens it, and it is not in the OpenAPI document.
/// </summary>
public static class NodeBlobEndpoints
{
    /// <summary>Maps the endpoints (<see cref="NodeBlobAddress"/> records where other nodes reach them).</summary>
    public static void MapNodeBlobs(this WebApplication app)
    {
        ArgumentNullException.ThrowIfNull(app);
        var blobs = app.MapGroup("/" + RemoteNodeBlobStore.EndpointPath).ExcludeFromDescription();
        blobs.MapGet("/{location}", async (HttpContext context, string location, StorageLocations locations, LocalBlobEndpoint local) =>
        {
            if (Refused(context, location, locations, local) is { } refusal)
            {
                return refusal;
            }

            var prefix = context.Request.Query["prefix"].ToString();
            var keys = new List<string>();
            await foreach (var key in locations.ListKeysAsync(location, prefix, context.RequestAborted).ConfigureAwait(false))
            {
                keys.Add(key);
            }

            return Results.Json(keys);
        });
        blobs.MapMethods("/{location}/{**key}", [HttpMethods.Get, HttpMethods.Head], async (HttpContext context, string location, string key, StorageLocations locations, PlacementGuard guard, LocalBlobEndpoint local) =>
        {
            if (Refused(context, location, locations, local) is { } refusal)
            {
                return refusal;
            }

            if (!IsKey(key))
            {
                return Results.NotFound();
            }

            if (HttpMethods.IsHead(context.Request.Method))
            {
                var length = await guard.GetLengthAsync(location, key, context.RequestAborted).ConfigureAwait(false);
                if (length is null)
                {
                    return Results.NotFound();
                }

                context.Response.ContentLength = length;
                return Results.Empty;
            }

            var stream = await guard.OpenReadAsync(location, key, context.RequestAborted).ConfigureAwait(false);
            return stream is null ? Results.NotFound() : Results.Stream(stream, "application/octet-stream", enableRangeProcessing: true);
        });
    }

    // Only cluster members (the token) read, and only this node's own drives: a shared location is
    // read by each node directly, another node's drive from that node.
    private static IResult? Refused(HttpContext context, string location, StorageLocations locations, LocalBlobEndpoint local)
    {
        var header = context.Request.Headers.Authorization.ToString();
        var token = header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header["Bearer ".Length..].Trim() : null;
        if (local.Node is null || !local.Accepts(token))
        {
            return Results.Unauthorized();
        }

        return !locations.Contains(location) || locations.IsElsewhere(location) ? Results.NotFound() : null;
    }

    private static bool IsKey(string key)
    {
        try
        {
            BlobKey.Validate(key);
            return true;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}

/// <summary>Once the server listens, records the address other nodes reach its blob endpoint at.</summary>
/// <param name="local">This process's side of node-to-node reads.</param>
/// <param name="server">The HTTP server, whose bound address is known once it started.</param>
/// <param name="options">The server's options: <c>serve --advertised-address</c>.</param>
/// <param name="config">The configuration: <c>cluster.advertised_address</c>.</param>
/// <remarks>
/// Not <c>server.public_url</c>: that is where clients reach the installation (a load balancer,
/// the same for every node of a shared configuration), while another node must reach this one.
/// </remarks>
public sealed class NodeBlobAddress(LocalBlobEndpoint local, IServer server, ServerOptions options, Atelier.Core.AtelierConfig config) : IHostedLifecycleService
{
    /// <inheritdoc />
    public Task StartedAsync(CancellationToken cancellationToken)
    {
        if (server.Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault() is not { } listening)
        {
            return Task.CompletedTask;
        }

        // A wildcard bind is reached at the address the silo advertises (loopback by default).
        var uri = new Uri(listening.Replace("://+:", "://0.0.0.0:", StringComparison.Ordinal).Replace("://*:", "://0.0.0.0:", StringComparison.Ordinal));
        var host = uri.Host is "0.0.0.0" or "[::]" or "::" ? options.AdvertisedAddress ?? config.Cluster?.AdvertisedAddress ?? "127.0.0.1" : uri.Host;
        local.BaseAddress = new UriBuilder(uri.Scheme, host, uri.Port).Uri;
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <inheritdoc />
    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <inheritdoc />
    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <inheritdoc />
    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <inheritdoc />
    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
