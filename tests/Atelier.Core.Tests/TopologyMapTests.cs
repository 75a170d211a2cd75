using Atelier.Core.Topology;

namespace Atelier.Core.Tests;

/// <summary>Latency between nodes: by tier, with site-pair overrides, from the configuration file.</summary>
public sealed class TopologyMapTests
{
    private static readonly Site[] Sites =
    [
        new Site("paris", "FR", [new Rack("p-r1", ["p1a", "p1b"]), new Rack("p-r2", ["p2a"])]),
        new Site("lyon", "FR", [new Rack("l-r1", ["l1a"])]),
        new Site("berlin", "DE", [new Rack("b-r1", ["b1a"])]),
    ];

    [Fact]
    public void Latency_WithDefaults_GrowsFromNodeToRackToSite_AndAnUnknownNodeIsFar()
    {
        var map = new TopologyMap(Sites);
        Assert.Equal(TimeSpan.Zero, map.Latency("p1a", "p1a"));
        Assert.Equal(TimeSpan.FromMilliseconds(0.05), map.Latency("p1a", "p1b"));
        Assert.Equal(TimeSpan.FromMilliseconds(0.2), map.Latency("p1a", "p2a"));
        Assert.Equal(TimeSpan.FromMilliseconds(5), map.Latency("p1a", "l1a"));
        Assert.Equal(TimeSpan.FromMilliseconds(5), map.Latency("p1a", "nowhere"));
        Assert.Equal(TimeSpan.FromMilliseconds(5), map.Latency("nowhere", "p1a"));
    }

    [Fact]
    public void Latency_UsesConfiguredTiers_AndSitePairOverridesInEitherOrder()
    {
        var map = new TopologyMap(Sites, new TopologyConfig
        {
            LatencyMs = new LatencyTiers { SameRack = 0.1, CrossRack = 0.5, CrossSite = 20 },
            SiteLatencyMs = [new SiteLatency("paris", "lyon", 4)],
        });

        Assert.Equal(TimeSpan.FromMilliseconds(0.1), map.Latency("p1b", "p1a"));
        Assert.Equal(TimeSpan.FromMilliseconds(0.5), map.Latency("p2a", "p1a"));
        Assert.Equal(TimeSpan.FromMilliseconds(4), map.Latency("p1a", "l1a"));
        Assert.Equal(TimeSpan.FromMilliseconds(4), map.Latency("l1a", "p2a"));
        Assert.Equal(TimeSpan.FromMilliseconds(20), map.Latency("p1a", "b1a"));
        Assert.Equal(TimeSpan.FromMilliseconds(20), map.Latency("l1a", "ghost"));
    }

    [Fact]
    public void Distance_KeepsItsMeaning_WhateverTheLatencies()
    {
        // Placement ranks by Distance; a site pair closer than another site's racks must not reorder it.
        var map = new TopologyMap(Sites, new TopologyConfig { SiteLatencyMs = [new SiteLatency("paris", "lyon", 0.01)] });
        Assert.Equal((0, 1, 2, 3, 4), (map.Distance("p1a", "p1a"), map.Distance("p1a", "p1b"), map.Distance("p1a", "p2a"), map.Distance("p1a", "l1a"), map.Distance("p1a", "x")));
    }

    [Theory]
    [InlineData(-1.0)]
    [InlineData(double.NaN)]
    [InlineData(double.PositiveInfinity)]
    public void NegativeOrNonFiniteLatency_IsRefusedByName(double ms)
    {
        var error = Assert.Throws<ArgumentException>(() => new TopologyMap(Sites, new TopologyConfig { LatencyMs = new LatencyTiers { CrossRack = ms } }));
        Assert.Contains("cross_rack", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SiteOverride_NamingAnUnknownSite_IsRefusedWithTheKnownOnes()
    {
        var error = Assert.Throws<ArgumentException>(() => new TopologyMap(Sites, new TopologyConfig { SiteLatencyMs = [new SiteLatency("paris", "lyom", 3)] }));
        Assert.Contains("'lyom'", error.Message, StringComparison.Ordinal);
        Assert.Contains("paris, lyon, berlin", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TopologySection_IsAbsentFromTheDefaultFile_AndReadsBackFromSnakeCase()
    {
        var dir = Atelier.Testing.TestCleanup.CreateDirectory("atelier-config");
        Assert.Null(AtelierConfig.LoadOrCreate(dir).Topology);
        Assert.DoesNotContain("topology", File.ReadAllText(Path.Combine(dir, AtelierConfig.FileName)), StringComparison.Ordinal);

        File.WriteAllText(Path.Combine(dir, AtelierConfig.FileName), """
            {
              "sites": [
                { "id": "paris", "country": "FR", "racks": [ { "id": "r1", "nodes": ["a", "b"] }, { "id": "r2", "nodes": ["c"] } ] },
                { "id": "lyon", "country": "FR", "racks": [ { "id": "r1", "nodes": ["d"] } ] }
              ],
              "topology": {
                "latency_ms": { "same_rack": 0.02, "cross_rack": 0.3 },
                "site_latency_ms": [ { "a": "lyon", "b": "paris", "ms": 3.5 } ]
              }
            }
            """);
        var config = AtelierConfig.LoadOrCreate(dir);
        var map = new TopologyMap(config.Sites, config.Topology);
        Assert.Equal(TimeSpan.FromMilliseconds(0.02), map.Latency("a", "b"));
        Assert.Equal(TimeSpan.FromMilliseconds(0.3), map.Latency("a", "c"));
        Assert.Equal(TimeSpan.FromMilliseconds(3.5), map.Latency("c", "d"));

        // A tier left out keeps its default.
        Assert.Equal(5, config.Topology!.LatencyMs.CrossSite);
    }
}
