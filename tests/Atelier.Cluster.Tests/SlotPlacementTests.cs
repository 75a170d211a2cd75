using Atelier.Cluster.Jobs;
using Atelier.Core.Topology;

namespace Atelier.Cluster.Tests;

/// <summary>The scheduler's choice of node: next to the data first, then the least loaded, never a full node.</summary>
public sealed class SlotPlacementTests
{
    private static readonly TopologyMap Topology = new(
    [
        new Site("paris", "FR", [new Rack("p-r1", ["p1a", "p1b"]), new Rack("p-r2", ["p2a"])]),
        new Site("lyon", "FR", [new Rack("l-r1", ["l1a"])]),
    ]);

    [Fact]
    public void PrefersTheDataNode_ThenItsRack_ThenItsSite_ThenAnywhere()
    {
        NodeSlots[] all = [new("l1a", 1, 0), new("p2a", 1, 0), new("p1b", 1, 0), new("p1a", 1, 0)];
        Assert.Equal("p1a", SlotPlacement.Choose(all, "p1a", Topology));
        Assert.Equal("p1b", SlotPlacement.Choose([.. all.Where(n => n.Node != "p1a")], "p1a", Topology));
        Assert.Equal("p2a", SlotPlacement.Choose([.. all.Where(n => n.Node is not ("p1a" or "p1b"))], "p1a", Topology));
        Assert.Equal("l1a", SlotPlacement.Choose([new("l1a", 1, 0)], "p1a", Topology));
    }

    [Fact]
    public void NeverChoosesAFullNode_AndReturnsNullWhenAllAreFull()
    {
        NodeSlots[] nodes = [new("p1a", 2, 2), new("p1b", 1, 1), new("l1a", 4, 1)];
        Assert.Equal("l1a", SlotPlacement.Choose(nodes, "p1a", Topology));
        Assert.Null(SlotPlacement.Choose([new("p1a", 2, 2), new("p1b", 1, 1)], "p1a", Topology));
    }

    [Fact]
    public void AtEqualDistance_PrefersTheLeastLoaded_ThenTheName()
    {
        Assert.Equal("p1b", SlotPlacement.Choose([new("p1a", 4, 3), new("p1b", 4, 1)], "p2a", Topology));
        Assert.Equal("p1a", SlotPlacement.Choose([new("p1b", 4, 1), new("p1a", 4, 1)], "p2a", Topology));
        Assert.Equal("p1a", SlotPlacement.Choose([new("p1b", 1, 0), new("p1a", 1, 0)], null, Topology));
    }
}
