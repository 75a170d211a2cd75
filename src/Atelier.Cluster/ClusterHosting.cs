using System.Net;
using Atelier.Cluster.Placement;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Configuration;
using Orleans.Hosting;

namespace Atelier.Cluster;

/// <summary>How a silo finds the others.</summary>
public sealed record ClusterSettings
{
    /// <summary>This node's name: the silo's name, the key of its worker grain, its place in the topology.</summary>
    public required string Node { get; init; }

    /// <summary>Every node of one cluster shares it; a node of another id never joins.</summary>
    public required string ClusterId { get; init; }

    /// <summary>
    /// The PostgreSQL connection string of the membership table (cluster mode); null for the embedded
    /// default, one silo alone on loopback.
    /// </summary>
    public string? PostgreSqlConnectionString { get; init; }

    /// <summary>The silo-to-silo port.</summary>
    public required int SiloPort { get; init; }

    /// <summary>The port Orleans clients connect to.</summary>
    public required int GatewayPort { get; init; }

    /// <summary>The address other silos reach this one at (cluster mode); loopback when null.</summary>
    public IPAddress? AdvertisedAddress { get; init; }

    /// <summary>
    /// How long a silo may miss its probes before the others declare it dead; Orleans' default (about
    /// half a minute) when null. Tests shorten it.
    /// </summary>
    public TimeSpan? ProbeTimeout { get; init; }
}

/// <summary>Configures Atelier's silo: membership, the silo's name and the node placement.</summary>
public static class ClusterHosting
{
    /// <summary>The ADO.NET invariant of Npgsql, which Orleans' provider loads by name.</summary>
    public const string NpgsqlInvariant = "Npgsql";

    /// <summary>
    /// Membership on PostgreSQL (the tables of the PostgreSQL catalog's migration 9,
    /// <c>Atelier.Catalog.PostgreSql.ClusterMembershipSchema</c>) when a connection string is given, else localhost clustering;
    /// the silo is named after its node, and <see cref="NodePlacement"/> places node-keyed grains there.
    /// </summary>
    /// <param name="silo">The silo.</param>
    /// <param name="settings">Where and who this node is.</param>
    public static ISiloBuilder UseAtelierCluster(this ISiloBuilder silo, ClusterSettings settings)
    {
        ArgumentNullException.ThrowIfNull(silo);
        ArgumentNullException.ThrowIfNull(settings);
        silo.Configure<SiloOptions>(o => o.SiloName = settings.Node);
        silo.Services.AddPlacementDirector<NodePlacement, NodePlacementDirector>();
        silo.Services.AddSingleton(new NodePlacementMode(Embedded: settings.PostgreSqlConnectionString is null));
        if (settings.PostgreSqlConnectionString is not { } connectionString)
        {
            return silo.UseLocalhostClustering(settings.SiloPort, settings.GatewayPort, serviceId: "atelier", clusterId: settings.ClusterId);
        }

        silo.Configure<ClusterOptions>(o =>
        {
            o.ClusterId = settings.ClusterId;
            o.ServiceId = "atelier";
        });
        silo.ConfigureEndpoints(settings.AdvertisedAddress ?? IPAddress.Loopback, settings.SiloPort, settings.GatewayPort);
        silo.UseAdoNetClustering(o =>
        {
            o.Invariant = NpgsqlInvariant;
            o.ConnectionString = connectionString;
        });
        if (settings.ProbeTimeout is { } probe)
        {
            silo.Configure<ClusterMembershipOptions>(o =>
            {
                o.ProbeTimeout = probe;
                o.IAmAliveTablePublishTimeout = probe;
                o.TableRefreshTimeout = probe;
                o.DeathVoteExpirationTimeout = probe * 4;
            });
        }

        return silo;
    }
}
