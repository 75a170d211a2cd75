namespace Atelier.Core.Topology;

/// <summary>A data centre or campus.</summary>
/// <param name="Id">Stable id, e.g. <c>paris-dc1</c>.</param>
/// <param name="Country">ISO 3166-1 alpha-2 country code.</param>
/// <param name="Racks">The racks at the site.</param>
public sealed record Site(string Id, string Country, IReadOnlyList<Rack> Racks);

/// <summary>A rack of nodes within a site.</summary>
/// <param name="Id">Stable id, unique within its site.</param>
/// <param name="Nodes">The nodes in the rack.</param>
public sealed record Rack(string Id, IReadOnlyList<string> Nodes);

/// <summary>
/// The known sites, racks and nodes, and the cost of moving data between them. The scheduler uses
/// it to run work next to its data and the router to prefer replicas in the caller's rack.
/// </summary>
public sealed class TopologyMap
{
    private readonly Dictionary<string, (string Site, string Rack)> _nodes = new(StringComparer.Ordinal);
    private readonly Dictionary<(string, string), TimeSpan> _siteLatency = [];
    private readonly TimeSpan _sameRack;
    private readonly TimeSpan _crossRack;
    private readonly TimeSpan _crossSite;

    /// <summary>Builds the map from configured sites, with the default latencies of <see cref="LatencyTiers"/>.</summary>
    public TopologyMap(IReadOnlyList<Site> sites)
        : this(sites, null)
    {
    }

    /// <summary>Builds the map from configured sites and the latencies between them.</summary>
    /// <param name="sites">The sites, racks and nodes.</param>
    /// <param name="latency">Latency by tier and between named sites; null takes the defaults.</param>
    /// <exception cref="ArgumentException">A latency is negative or not a number, or a site override names an unknown site.</exception>
    public TopologyMap(IReadOnlyList<Site> sites, TopologyConfig? latency)
    {
        ArgumentNullException.ThrowIfNull(sites);
        Sites = sites;
        latency ??= new TopologyConfig();
        LatencyTiers tiers = latency.LatencyMs ?? new LatencyTiers();
        _sameRack = Milliseconds(tiers.SameRack, "topology.latency_ms.same_rack");
        _crossRack = Milliseconds(tiers.CrossRack, "topology.latency_ms.cross_rack");
        _crossSite = Milliseconds(tiers.CrossSite, "topology.latency_ms.cross_site");
        foreach (var site in sites)
        {
            foreach (var rack in site.Racks)
            {
                foreach (var node in rack.Nodes)
                {
                    _nodes[node] = (site.Id, rack.Id);
                }
            }
        }

        foreach (SiteLatency pair in latency.SiteLatencyMs ?? [])
        {
            // A typo in a site id would otherwise silently fall back to cross_site.
            foreach (string id in (string[])[pair.A, pair.B])
            {
                if (!sites.Any(s => s.Id == id))
                {
                    throw new ArgumentException($"topology.site_latency_ms names site '{id}', which is not among the configured sites ({string.Join(", ", sites.Select(s => s.Id))}).", nameof(latency));
                }
            }

            TimeSpan ms = Milliseconds(pair.Ms, $"topology.site_latency_ms ({pair.A}, {pair.B})");
            _siteLatency[(pair.A, pair.B)] = ms;
            _siteLatency[(pair.B, pair.A)] = ms;
        }
    }

    /// <summary>The configured sites.</summary>
    public IReadOnlyList<Site> Sites { get; }

    /// <summary>Where a node is, if it is known.</summary>
    public bool TryLocate(string node, out string site, out string rack)
    {
        if (_nodes.TryGetValue(node, out var where))
        {
            (site, rack) = where;
            return true;
        }

        site = rack = "";
        return false;
    }

    /// <summary>
    /// A coarse distance between two nodes: 0 the same node, 1 the same rack, 2 the same site,
    /// 3 across sites, 4 when either is unknown. Lower is closer.
    /// </summary>
    public int Distance(string a, string b)
    {
        if (a == b)
        {
            return 0;
        }

        if (!TryLocate(a, out var siteA, out var rackA) || !TryLocate(b, out var siteB, out var rackB))
        {
            return 4;
        }

        return siteA != siteB ? 3 : rackA != rackB ? 2 : 1;
    }

    /// <summary>
    /// The latency of one round trip between two nodes: zero on the same node, then the configured
    /// same-rack, cross-rack or site-pair latency; across sites without an override, and when either
    /// node is unknown, the cross-site latency (an unknown node is assumed far rather than near, so
    /// that what is sized from it errs towards reading ahead more).
    /// </summary>
    public TimeSpan Latency(string a, string b)
    {
        if (a == b)
        {
            return TimeSpan.Zero;
        }

        if (!TryLocate(a, out var siteA, out var rackA) || !TryLocate(b, out var siteB, out var rackB))
        {
            return _crossSite;
        }

        if (siteA != siteB)
        {
            return _siteLatency.TryGetValue((siteA, siteB), out TimeSpan pair) ? pair : _crossSite;
        }

        return rackA != rackB ? _crossRack : _sameRack;
    }

    private static TimeSpan Milliseconds(double ms, string name) =>
        double.IsFinite(ms) && ms >= 0 && ms <= TimeSpan.MaxValue.TotalMilliseconds / 2
            ? TimeSpan.FromMilliseconds(ms)
            : throw new ArgumentException($"{name} is {ms}; a latency is a finite number of milliseconds, at least 0.", "latency");
}
