using Atelier.Cluster.Jobs;
using Atelier.Core;
using Atelier.Server.Auth;

namespace Atelier.Server.Jobs;

/// <summary>A training node as <c>GET /api/v1/nodes</c> shows it.</summary>
/// <param name="Name">Its name in the topology.</param>
/// <param name="Slots">Jobs it trains at once.</param>
/// <param name="Running">Jobs on its slots now.</param>
/// <param name="Free">Slots free now.</param>
public sealed record NodeObject(string Name, int Slots, int Running, int Free);

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
        app.MapGet("/api/v1/nodes", async (HttpContext context, IGrainFactory grains) =>
        {
            // Any key may look: slots and counts are the installation's, not a workspace's data.
            // Job ids are left out, since the queue holds every workspace's jobs.
            ApiKeyAuthentication.Caller(context);
            var state = await grains.GetGrain<IJobSchedulerGrain>(0).GetStateAsync().ConfigureAwait(false);
            return Results.Json(
                new NodeList([.. state.Nodes.Select(n => new NodeObject(n.Node, n.Slots, n.Running, n.Free))], state.Queue.Count, state.Running.Count),
                AtelierJson.Options);
        }).Produces<NodeList>().WithTags("Nodes").WithName("listNodes").WithSummary("Training nodes with their slots and load, and how many jobs wait for a slot.");
    }
}
