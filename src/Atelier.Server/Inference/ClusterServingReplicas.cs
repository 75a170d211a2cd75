using Atelier.Cluster;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Inference.Serving;
using Atelier.Storage.Blobs;

namespace Atelier.Server.Inference;

/// <summary>
/// In a cluster, every other live node that serves is a replica the router may forward to: alive as
/// Orleans membership says (a node voted dead, or shutting down, is no candidate), at the location
/// the shared configuration gives its drive (<see cref="AtelierConfig.ServingLocationOf"/>), reached
/// at the HTTP address its worker grain hands out (the same one node-to-node blob reads use).
/// Embedded, there are none.
/// </summary>
/// <param name="nodes">Membership and each node's address.</param>
/// <param name="config">The configuration every node shares: where each node serves.</param>
/// <param name="self">This node, which the router serves in-process.</param>
/// <param name="logger">Where a node that cannot be reached is noted.</param>
public sealed partial class ClusterServingReplicas(ClusterNodes nodes, AtelierConfig config, Jobs.TrainingNode self, ILogger<ClusterServingReplicas> logger) : IRemoteReplicas
{
    /// <inheritdoc />
    public async ValueTask<IReadOnlyList<RemoteReplica>> CurrentAsync(CancellationToken ct)
    {
        if (nodes.Embedded)
        {
            return [];
        }

        var remotes = new List<RemoteReplica>();
        foreach (var node in nodes.Nodes())
        {
            if (!node.Alive || node.Name == self.Name || config.ServingLocationOf(node.Name) is not { } location)
            {
                continue;
            }

            try
            {
                var endpoint = await nodes.ResolveAsync(node.Name, ct).ConfigureAwait(false);
                remotes.Add(new RemoteReplica(node.Name, location, endpoint.BaseAddress));
            }
            catch (StorageUnavailableException e)
            {
                // It died between the snapshot and the call, or has not said where it listens yet.
                LogUnreachable(logger, node.Name, e.Message);
            }
        }

        return remotes;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Serving: node {Node} is not a replica now: {Reason}")]
    private static partial void LogUnreachable(ILogger logger, string node, string reason);
}
