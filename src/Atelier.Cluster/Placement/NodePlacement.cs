using Orleans.Placement;
using Orleans.Runtime;
using Orleans.Runtime.Placement;

namespace Atelier.Cluster.Placement;

/// <summary>
/// Places a grain keyed by a node's name on the silo of that node, and nowhere else: a node's worker
/// grain drives that node's trainer, its local disks and its GPUs, so activating it on another silo
/// (as <see cref="PreferLocalPlacementAttribute"/> would, on whichever silo called it first) would
/// train on the wrong machine. Each silo's name is its node's name (<c>SiloOptions.SiloName</c>,
/// set by <see cref="ClusterHosting"/>).
/// </summary>
[GenerateSerializer]
[Immutable]
[Alias("atelier.node-placement")]
public sealed class NodePlacement : PlacementStrategy
{
    /// <summary>The one instance.</summary>
    public static NodePlacement Instance { get; } = new();
}

/// <summary>Marks a grain class whose string key is a node name: it activates only on that node's silo.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class NodePlacementAttribute : PlacementAttribute
{
    /// <summary>Uses <see cref="NodePlacement"/>.</summary>
    public NodePlacementAttribute()
        : base(NodePlacement.Instance)
    {
    }
}

/// <summary>
/// Finds the silo whose name is the grain's key among the silos that can host it. No such silo
/// (the node is down or has not joined) is an error, never a silent placement elsewhere. (Moving a
/// dead node's jobs to another node from membership events is not built yet: decision 0018.)
/// </summary>
/// <remarks>
/// The embedded default is one silo and one node: there every node-keyed grain runs on that silo
/// (a topology may still name other nodes, for the scheduler's choices, as tests do), as it did
/// before nodes had silos of their own.
/// </remarks>
/// <param name="silos">The cluster's view of its silos and their names.</param>
/// <param name="mode">Whether the silo is alone (embedded) or one of a cluster.</param>
public sealed class NodePlacementDirector(ISiloStatusOracle silos, NodePlacementMode mode) : IPlacementDirector
{
    /// <inheritdoc />
    public Task<SiloAddress> OnAddActivation(PlacementStrategy strategy, PlacementTarget target, IPlacementContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (mode.Embedded)
        {
            return Task.FromResult(context.LocalSilo);
        }

        var node = target.GrainIdentity.Key.ToString();
        foreach (var silo in context.GetCompatibleSilos(target))
        {
            if (silos.TryGetSiloName(silo, out var name) && string.Equals(name, node, StringComparison.Ordinal))
            {
                return Task.FromResult(silo);
            }
        }

        throw new OrleansException($"Node '{node}' has no live silo in the cluster: it is down or has not joined.");
    }
}

/// <summary>Whether node placement runs in the embedded default (one silo) or a cluster.</summary>
/// <param name="Embedded">True when the silo uses localhost clustering, alone.</param>
public sealed record NodePlacementMode(bool Embedded);
