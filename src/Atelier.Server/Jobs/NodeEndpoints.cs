using Atelier.Cluster;
using Atelier.Cluster.Jobs;
using Atelier.Core.Topology;
using Atelier.Core;
using Atelier.Server.Auth;

namespace Atelier.Server.Jobs;

/// <summary>A training node as <c>GET /api/v1/nodes</c> shows it.</summary>
/// <param name="Name">Its name in the topology.</param>
/// <param name="Slots">Jobs it trains at once.</param>
/// <param name="Running">Jobs on its slots now.</param>
/// <param name="Free">Slots free now.</param>
/// <param name="Site">Its site in the topology, if the topology lists it.</param>
/// <param name="Rack">Its rack in the topology, if the topology lists it.</param>
/// <param name="Status">Its health from the cluster's membership: <c>active</c>, <c>joining</c>, <c>shutting_down</c> or <c>dead</c> (a dead node offers no slots).</param>
public sealed record NodeObject(string Name, int Slots, int Running, int Free, string? Site, string? Rack, string Status);

/// <summary>The answer of <c>GET /api/v1/nodes</c>.</summary>
/// <param name="Data">The training nodes.</param>
/// <param name="Queued">Jobs waiting for a slot, in every workspace.</param>
/// <param name="Running">Jobs on slots, in every workspace.</param>
public sealed record NodeList(IReadOnlyList<NodeObject> Data, int Queued, int Running);

/// <summary>The training nodes and their slots: what the console's overview shows.</summary>
public static class NodeEndpoints
{
    /// <summary>Maps <c>GET /api/v1/nodes</c>.</summary>
    public static void MapNodes(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/v1/nodes", async (HttpContext context, IGrainFactory grains, ClusterNodes cluster, TopologyMap topology) =>
        {
            // Any key may look: slots and counts are the installation's, not a workspace's data.
            // Job ids are left out, since the queue holds every workspace's jobs.
            ApiKeyAuthentication.Caller(context);
            var state = await grains.GetGrain<IJobSchedulerGrain>(0).GetStateAsync().ConfigureAwait(false);

            // Embedded, the one silo runs every node the topology names; in a cluster each node's
            // health is its silo's in the membership table, and a dead node is listed without slots.
            var members = cluster.Embedded ? [] : cluster.Nodes().ToDictionary(n => n.Name, StringComparer.Ordinal);
            var nodes = new List<NodeObject>();
            foreach (var n in state.Nodes)
            {
                var status = cluster.Embedded ? "active" : members.TryGetValue(n.Node, out var member) ? member.Status : "joining";
                nodes.Add(Describe(n.Node, n.Slots, n.Running, n.Free, status, topology));
            }

            foreach (var member in members.Values.Where(m => !state.Nodes.Any(n => n.Node == m.Name)))
            {
                nodes.Add(Describe(member.Name, 0, 0, 0, member.Status, topology));
            }

            return Results.Json(new NodeList([.. nodes.OrderBy(n => n.Name, StringComparer.Ordinal)], state.Queue.Count, state.Running.Count), AtelierJson.Options);
        }).Produces<NodeList>().WithTags("Nodes").WithName("listNodes").WithSummary("Nodes with their site, rack, health, slots and load, and how many jobs wait for a slot.");
    }

    private static NodeObject Describe(string name, int slots, int running, int free, string status, TopologyMap topology)
    {
        var known = topology.TryLocate(name, out var site, out var rack);
        return new NodeObject(name, slots, running, free, known ? site : null, known ? rack : null, status);
    }
}
