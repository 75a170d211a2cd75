using System.Collections.Concurrent;
using Atelier.Cluster.Jobs;
using Atelier.Cluster.Placement;
using Atelier.Core.Errors;
using Atelier.Storage.Blobs;

namespace Atelier.Cluster;

/// <summary>A node as membership sees it.</summary>
/// <param name="Name">The node's name (its silo's name).</param>
/// <param name="Alive">True while one of its silos is active.</param>
/// <param name="Status">Its newest silo's status: <c>active</c>, <c>joining</c>, <c>shutting_down</c>, <c>dead</c>.</param>
public sealed record ClusterNodeStatus(string Name, bool Alive, string Status);

/// <summary>
/// The cluster's nodes from Orleans membership (the PostgreSQL table in a cluster, the one local
/// silo embedded): which are alive, the audit check of each, and each node's blob endpoint
/// (<see cref="INodeBlobDirectory"/>), found with a grain call to its worker: only an address and a
/// token travel that way, the bytes go over HTTP.
/// </summary>
/// <param name="membership">Orleans' membership of this silo.</param>
/// <param name="mode">Embedded (one silo) or a cluster.</param>
/// <param name="grains">Grain calls to the nodes' workers.</param>
public sealed class ClusterNodes(IClusterMembershipService membership, NodePlacementMode mode, IGrainFactory grains) : INodeBlobDirectory
{
    private static readonly TimeSpan CallLimit = TimeSpan.FromSeconds(20);
    private readonly ConcurrentDictionary<string, NodeBlobEndpoint> _endpoints = new(StringComparer.Ordinal);

    /// <summary>True in the embedded default: one silo is every node.</summary>
    public bool Embedded => mode.Embedded;

    /// <summary>Every node membership knows, by name, with whether it is alive now.</summary>
    public IReadOnlyList<ClusterNodeStatus> Nodes()
    {
        var byName = new SortedDictionary<string, ClusterNodeStatus>(StringComparer.Ordinal);
        foreach (var member in membership.CurrentSnapshot.Members.Values.OrderBy(m => m.SiloAddress.Generation))
        {
            var alive = member.Status == SiloStatus.Active;
            if (byName.TryGetValue(member.Name, out var seen) && seen.Alive && !alive)
            {
                // An older silo of a node that restarted: the live one speaks for it.
                continue;
            }

            byName[member.Name] = new ClusterNodeStatus(member.Name, alive, StatusName(member.Status));
        }

        return [.. byName.Values];
    }

    /// <summary>True when <paramref name="node"/> has an active silo (embedded: when it is this silo's node).</summary>
    public bool IsAlive(string node) => Nodes().Any(n => n.Alive && n.Name == node);

    /// <summary>Checks the audit chain of every node membership knows: each live node checks its own; a node that is down is listed as not reached.</summary>
    public async Task<IReadOnlyList<NodeAuditCheck>> VerifyAuditAsync()
    {
        var checks = new List<NodeAuditCheck>();
        foreach (var node in Nodes())
        {
            if (!node.Alive)
            {
                checks.Add(new NodeAuditCheck(node.Name, false, 0, $"node '{node.Name}' is {node.Status}: its chain is checked when it is back", "", Reachable: false));
                continue;
            }

            try
            {
                checks.Add(await grains.GetGrain<INodeWorkerGrain>(node.Name).VerifyAuditAsync().WaitAsync(CallLimit).ConfigureAwait(false));
            }
            catch (Exception e) when (e is OrleansException or TimeoutException or SiloUnavailableException)
            {
                checks.Add(new NodeAuditCheck(node.Name, false, 0, $"node '{node.Name}' did not answer: {e.Message}", "", Reachable: false));
            }
        }

        return checks;
    }

    /// <inheritdoc />
    public async ValueTask<NodeBlobEndpoint> ResolveAsync(string node, CancellationToken cancellationToken)
    {
        if (_endpoints.TryGetValue(node, out var known) && IsAlive(node))
        {
            return known;
        }

        if (!IsAlive(node))
        {
            _endpoints.TryRemove(node, out _);
            throw new StorageUnavailableException($"Node '{node}' is not alive in the cluster; the bytes on its drives cannot be read until it is back.");
        }

        try
        {
            var access = await grains.GetGrain<INodeWorkerGrain>(node).BlobEndpointAsync().WaitAsync(CallLimit, cancellationToken).ConfigureAwait(false);
            var endpoint = new NodeBlobEndpoint(new Uri(access.BaseAddress), access.Token);
            _endpoints[node] = endpoint;
            return endpoint;
        }
        catch (Exception e) when (e is OrleansException or TimeoutException or SiloUnavailableException or InvalidOperationException)
        {
            throw new StorageUnavailableException($"Node '{node}' did not say where it serves its drives: {e.Message}", e);
        }
    }

    /// <inheritdoc />
    public void Forget(string node) => _endpoints.TryRemove(node, out _);

    private static string StatusName(SiloStatus status) => status switch
    {
        SiloStatus.Active => "active",
        SiloStatus.Created or SiloStatus.Joining => "joining",
        SiloStatus.ShuttingDown or SiloStatus.Stopping => "shutting_down",
        _ => "dead",
    };
}
