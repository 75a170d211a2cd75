using Atelier.Cluster;
using Atelier.Cluster.Jobs;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Core.Residency;
using Atelier.Inference.Serving;
using Atelier.Storage.Blobs;

namespace Atelier.Server.Inference;

/// <summary>
/// In a cluster, every other live node that serves is a replica the router may forward to: alive as
/// Orleans membership says (a node voted dead, or shutting down, is no candidate), at the location
/// the shared configuration gives its drive (<see cref="AtelierConfig.ServingLocationOf"/>), reached
/// at the HTTP address its worker grain hands out (the same one node-to-node blob reads use), with
/// what the node publishes of its serving (<see cref="INodeWorkerGrain.ServingLoadAsync"/>: the
/// models it holds and its queues), asked at most once per <see cref="PublicationAge"/> a node and
/// bounded by <see cref="PublicationLimit"/>, so routing never waits long on a slow node.
/// Embedded, there are none.
/// </summary>
/// <param name="nodes">Membership and each node's address.</param>
/// <param name="grains">Where each node's worker grain is asked what it serves.</param>
/// <param name="config">The configuration every node shares: where each node serves.</param>
/// <param name="self">This node, which the router serves in-process.</param>
/// <param name="logger">Where a node that cannot be reached is noted.</param>
public sealed partial class ClusterServingReplicas(ClusterNodes nodes, IGrainFactory grains, AtelierConfig config, Jobs.TrainingNode self, ILogger<ClusterServingReplicas> logger) : IRemoteReplicas
{
    /// <summary>How old a node's publication may be before it is asked again.</summary>
    public static readonly TimeSpan PublicationAge = TimeSpan.FromSeconds(1);

    /// <summary>How long a routing decision waits for a node's publication; past it, the node is scored by what forwarding taught.</summary>
    public static readonly TimeSpan PublicationLimit = TimeSpan.FromMilliseconds(500);

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, (long At, Task<IReadOnlyList<NodeHeldModel>> Load)> _published = new(StringComparer.Ordinal);

    /// <inheritdoc />
    public async ValueTask<IReadOnlyList<RemoteReplica>> CurrentAsync(CancellationToken ct)
    {
        if (nodes.Embedded)
        {
            return [];
        }

        // Every node's publication is asked for at once, so a slow node costs a plan one
        // PublicationLimit, not one a node.
        var remotes = new List<(string Name, LocationDescriptor Location, Uri Address, ValueTask<IReadOnlyList<HeldModel>?> Published)>();
        foreach (var node in nodes.Nodes())
        {
            if (!node.Alive || node.Name == self.Name || config.ServingLocationOf(node.Name) is not { } location)
            {
                continue;
            }

            try
            {
                var endpoint = await nodes.ResolveAsync(node.Name, ct).ConfigureAwait(false);
                remotes.Add((node.Name, location, endpoint.BaseAddress, PublishedAsync(node.Name, ct)));
            }
            catch (StorageUnavailableException e)
            {
                // It died between the snapshot and the call, or has not said where it listens yet.
                LogUnreachable(logger, node.Name, e.Message);
            }
        }

        var replicas = new List<RemoteReplica>(remotes.Count);
        foreach (var (name, location, address, published) in remotes)
        {
            replicas.Add(new RemoteReplica(name, location, address, await published.ConfigureAwait(false)));
        }

        return replicas;
    }

    // The node's last publication when fresh, else a new one (one call in flight a node, shared by
    // concurrent requests); null when it does not answer in time, or fails.
    private async ValueTask<IReadOnlyList<HeldModel>?> PublishedAsync(string node, CancellationToken ct)
    {
        var now = Environment.TickCount64;
        var entry = _published.AddOrUpdate(
            node,
            _ => (now, Ask(node)),
            (_, old) => now - old.At > PublicationAge.TotalMilliseconds || old.Load.IsFaulted ? (now, Ask(node)) : old);
        try
        {
            var held = await entry.Load.WaitAsync(PublicationLimit, ct).ConfigureAwait(false);
            return [.. held.Select(h => new HeldModel(h.BaseModel, h.Served, h.Running, h.Waiting, h.MaxRunning))];
        }
        catch (Exception e) when (e is OrleansException or TimeoutException or InvalidOperationException)
        {
            LogNoPublication(logger, node, e.Message);
            return null;
        }
    }

    private Task<IReadOnlyList<NodeHeldModel>> Ask(string node) => grains.GetGrain<INodeWorkerGrain>(node).ServingLoadAsync();

    [LoggerMessage(Level = LogLevel.Debug, Message = "Serving: node {Node} did not publish its load in time: {Reason}")]
    private static partial void LogNoPublication(ILogger logger, string node, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Serving: node {Node} is not a replica now: {Reason}")]
    private static partial void LogUnreachable(ILogger logger, string node, string reason);
}
