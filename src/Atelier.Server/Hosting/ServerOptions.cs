namespace Atelier.Server.Hosting;

/// <summary>Where and how one Atelier server runs.</summary>
public sealed record ServerOptions
{
    /// <summary>The data directory: catalog, configuration, locations, audit log, keys.</summary>
    public required string DataDirectory { get; init; }

    /// <summary>Overrides the configured bind address.</summary>
    public string? Bind { get; init; }

    /// <summary>Overrides the configured port (0 picks a free one).</summary>
    public int? Port { get; init; }

    /// <summary>The country of the default location when the data directory is new (ISO 3166-1 alpha-2).</summary>
    public string DefaultCountry { get; init; } = "FR";

    /// <summary>Overrides the configured log format (<c>text</c> or <c>json</c>).</summary>
    public string? LogFormat { get; init; }

    /// <summary>Overrides the configured node name (<c>cluster.node</c>, else the machine's name).</summary>
    public string? Node { get; init; }

    /// <summary>
    /// Cluster mode: the Npgsql connection string of the PostgreSQL database every node shares, for
    /// the catalog and Orleans' membership; overrides <c>catalog</c> in <c>atelier.json</c>.
    /// </summary>
    public string? Cluster { get; init; }

    /// <summary>
    /// Overrides the configured advertised address (<c>cluster.advertised_address</c>): the IP address
    /// other nodes reach this node's silo at, which a shared <c>atelier.json</c> cannot hold for every
    /// node (in Kubernetes, the pod's IP).
    /// </summary>
    public string? AdvertisedAddress { get; init; }

    /// <summary>The clock; tests pass a fake one.</summary>
    public TimeProvider Clock { get; init; } = TimeProvider.System;
}
