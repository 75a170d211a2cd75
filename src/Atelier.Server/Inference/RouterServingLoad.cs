using Atelier.Cluster.Jobs;
using Atelier.Inference.Serving;

namespace Atelier.Server.Inference;

/// <summary>What this node publishes of its serving to the other nodes' routers: its router's view of its own replicas.</summary>
/// <param name="router">This node's serving router.</param>
public sealed class RouterServingLoad(ServingRouter router) : INodeServingLoad
{
    /// <inheritdoc />
    public IReadOnlyList<NodeHeldModel> Current() =>
        [.. router.Describe().Select(h => new NodeHeldModel(h.BaseModel, h.Served, h.Running, h.Waiting, h.MaxRunning))];
}
