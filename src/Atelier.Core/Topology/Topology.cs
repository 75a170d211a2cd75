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

    /// <summary>Builds the map from configured sites.</summary>
    public TopologyMap(IReadOnlyList<Site> sites)
    {
        ArgumentNullException.ThrowIfNull(sites);
        Sites = sites;
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
}
