using Atelier.Core.Topology;

namespace Atelier.Cluster.Jobs;

/// <summary>A worker node as the scheduler sees it: its slots and the jobs on them.</summary>
/// <param name="Node">The node's name, as the topology lists it.</param>
/// <param name="Slots">Training slots it offers.</param>
/// <param name="Running">Jobs on its slots now.</param>
[GenerateSerializer]
public sealed record NodeSlots([property: Id(0)] string Node, [property: Id(1)] int Slots, [property: Id(2)] int Running)
{
    /// <summary>Slots free now.</summary>
    public int Free => Math.Max(0, Slots - Running);
}

/// <summary>
/// Where a job should train: on a node with a free slot, as close as possible to the node that
/// holds its data (same node, then same rack, then same site, then anywhere), then on the least
/// loaded such node, then by name so that the choice is deterministic.
/// </summary>
public static class SlotPlacement
{
    /// <summary>The chosen node, or null when no slot is free.</summary>
    /// <param name="nodes">Worker nodes and their load.</param>
    /// <param name="dataNode">The node whose local location holds the job's data, if known.</param>
    /// <param name="topology">Sites, racks and nodes.</param>
    public static string? Choose(IReadOnlyList<NodeSlots> nodes, string? dataNode, TopologyMap topology)
    {
        ArgumentNullException.ThrowIfNull(nodes);
        ArgumentNullException.ThrowIfNull(topology);
        NodeSlots? best = null;
        var bestDistance = int.MaxValue;
        foreach (var node in nodes)
        {
            if (node.Free == 0)
            {
                continue;
            }

            var distance = dataNode is null ? 0 : topology.Distance(node.Node, dataNode);
            if (best is null
                || distance < bestDistance
                || (distance == bestDistance && (node.Running < best.Running || (node.Running == best.Running && string.CompareOrdinal(node.Node, best.Node) < 0))))
            {
                best = node;
                bestDistance = distance;
            }
        }

        return best?.Node;
    }
}
