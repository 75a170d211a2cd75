using System.Diagnostics;
using System.Net;
using Atelier.Inference.Serving;
using Atelier.Registry;
using Yarp.ReverseProxy.Forwarder;

namespace Atelier.Server.Inference;

/// <summary>
/// Sends a request the router placed on another node to that node, with YARP's forwarder: the body
/// as the client sent it, the caller's authorization, and <see cref="ForwardedHeader"/> naming this
/// node, so that the receiving node serves it itself (it never forwards again: no loops) after judging
/// the model's policy against its own location once more. The answer streams back as it comes (server-sent
/// events unbuffered), with the serving node's <c>X-Atelier-Replica</c>; a client that goes away
/// cancels the upstream request (YARP links it to <see cref="HttpContext.RequestAborted"/>).
/// </summary>
public sealed partial class ReplicaForwarder : IDisposable
{
    /// <summary>The header that marks a request another node forwarded, naming that node.</summary>
    public const string ForwardedHeader = "X-Atelier-Forwarded-By";

    private static readonly System.Diagnostics.Metrics.Meter Meter = new(Hosting.AtelierServer.MeterName);
    private static readonly System.Diagnostics.Metrics.Counter<long> Forwarded = Meter.CreateCounter<long>(
        "atelier.inference.forwarded", description: "Serving requests this node forwarded to another node's replica, by node and outcome (answered, failed before answering, cut off mid-answer).");

    private readonly IHttpForwarder _forwarder;
    private readonly HttpMessageInvoker _client;
    private readonly MarkingTransformer _transformer;
    private readonly ILogger<ReplicaForwarder> _logger;

    // Generation can pause long between tokens on a loaded node; only a silent upstream this long is given up.
    private static readonly ForwarderRequestConfig RequestConfig = new()
    {
        ActivityTimeout = TimeSpan.FromMinutes(10),
        Version = HttpVersion.Version11,
        VersionPolicy = HttpVersionPolicy.RequestVersionOrLower,
    };

    /// <summary>Creates the forwarder for node <paramref name="self"/>.</summary>
    public ReplicaForwarder(IHttpForwarder forwarder, Jobs.TrainingNode self, ILogger<ReplicaForwarder> logger)
    {
        _forwarder = forwarder;
        _logger = logger;
        _transformer = new MarkingTransformer(self.Name);
        _client = new HttpMessageInvoker(new SocketsHttpHandler
        {
            // As YARP recommends for a forwarder: no proxy, redirects, cookies or decompression of its own.
            UseProxy = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
            ActivityHeadersPropagator = new ReverseProxyPropagator(DistributedContextPropagator.Current),
            // A node that died leaves no listener: the connection is refused at once, or times out here.
            ConnectTimeout = TimeSpan.FromSeconds(10),
        });
    }

    /// <summary>True when another node forwarded <paramref name="context"/>'s request here.</summary>
    public static bool IsForwarded(HttpContext context) => context.Request.Headers.ContainsKey(ForwardedHeader);

    /// <summary>
    /// Forwards the request to <paramref name="remote"/>. Returns null when the remote answered (the
    /// response is written, or was cut off mid-stream, which cannot be mended), or why it failed when
    /// nothing was sent to the client yet, so that another replica may serve it.
    /// </summary>
    /// <param name="context">The request; its body must be buffered (rewound here).</param>
    /// <param name="router">The router, which learns the node's load and the models it served.</param>
    /// <param name="model">The model requested.</param>
    /// <param name="remote">The node.</param>
    public async Task<string?> TryForwardAsync(HttpContext context, ServingRouter router, RegisteredModel model, RemoteReplica remote)
    {
        context.Request.Body.Position = 0;
        using var forwarding = router.Forwarding(remote, model);
        var error = await _forwarder.SendAsync(context, remote.BaseAddress.ToString(), _client, RequestConfig, _transformer).ConfigureAwait(false);
        if (error == ForwarderError.None)
        {
            Forwarded.Add(1, new KeyValuePair<string, object?>("node", remote.Id), new KeyValuePair<string, object?>("outcome", "answered"));
            // Only a success says the node loaded the model; a refusal or an unknown model does not.
            if (context.Response.StatusCode is >= 200 and < 300)
            {
                forwarding.Served();
            }

            return null;
        }

        var failure = context.Features.Get<IForwarderErrorFeature>()?.Exception;
        LogForwardFailed(_logger, remote.Id, error.ToString(), failure?.Message ?? "");
        var started = context.Response.HasStarted || context.RequestAborted.IsCancellationRequested;
        Forwarded.Add(1, new KeyValuePair<string, object?>("node", remote.Id), new KeyValuePair<string, object?>("outcome", started ? "cut_off" : "failed"));
        if (started)
        {
            // Part of the answer is with the client (or the client left): nothing to retry or map.
            return null;
        }

        // YARP set a bare 502/504; the caller tries another replica or answers 503 with a body.
        context.Response.Clear();
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Features.Set<IForwarderErrorFeature>(null);
        return $"{remote.Id}: {error} ({failure?.Message ?? "no answer"})";
    }

    /// <inheritdoc />
    public void Dispose() => _client.Dispose();

    [LoggerMessage(Level = LogLevel.Warning, Message = "Serving: forwarding to node {Node} failed ({Error}): {Reason}")]
    private static partial void LogForwardFailed(ILogger logger, string node, string error, string reason);

    // YARP's default copy of the request (headers, Authorization included), plus the marker.
    private sealed class MarkingTransformer(string node) : HttpTransformer
    {
        public override async ValueTask TransformRequestAsync(HttpContext httpContext, HttpRequestMessage proxyRequest, string destinationPrefix, CancellationToken cancellationToken)
        {
            await base.TransformRequestAsync(httpContext, proxyRequest, destinationPrefix, cancellationToken).ConfigureAwait(false);
            proxyRequest.Headers.Remove(ForwardedHeader);
            proxyRequest.Headers.TryAddWithoutValidation(ForwardedHeader, node);
        }
    }
}
