namespace Atelier.Core.Topology;

/// <summary>
/// The latency of one round trip between nodes (<c>topology</c> in <c>atelier.json</c>): by tier
/// (<c>latency_ms.same_rack</c>, <c>.cross_rack</c>, <c>.cross_site</c>) and, between two named
/// sites, an override (<c>site_latency_ms: [{a, b, ms}]</c>), since a metro pair and two sites on
/// other continents are both "across sites". The data loader sizes its read-ahead from it.
/// </summary>
public sealed record TopologyConfig
{
    /// <summary>Latency by tier, in milliseconds.</summary>
    public LatencyTiers LatencyMs { get; init; } = new();

    /// <summary>Latency between two named sites, in milliseconds; either order matches.</summary>
    public IReadOnlyList<SiteLatency> SiteLatencyMs { get; init; } = [];
}

/// <summary>One round trip's latency by how far apart two nodes are, in milliseconds.</summary>
/// <remarks>
/// The defaults are typical figures: a top-of-rack switch hop (tens of microseconds), a
/// spine hop between racks, and a metro link between sites. Measure and configure real ones.
/// </remarks>
public sealed record LatencyTiers
{
    /// <summary>Two nodes in the same rack (default 0.05 ms).</summary>
    public double SameRack { get; init; } = 0.05;

    /// <summary>Two racks of the same site (default 0.2 ms).</summary>
    public double CrossRack { get; init; } = 0.2;

    /// <summary>
    /// Two sites without a <see cref="TopologyConfig.SiteLatencyMs"/> entry, and any node the
    /// topology does not know (default 5 ms).
    /// </summary>
    public double CrossSite { get; init; } = 5;
}

/// <summary>The latency between sites <paramref name="A"/> and <paramref name="B"/>, in milliseconds.</summary>
/// <param name="A">A site id.</param>
/// <param name="B">Another site id.</param>
/// <param name="Ms">One round trip, in milliseconds.</param>
public sealed record SiteLatency(string A, string B, double Ms);
