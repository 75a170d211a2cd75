using Atelier.Core.Residency;
using Atelier.Storage.Audit;
using Atelier.Storage.Blobs;
using Atelier.Storage.Placement;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Atelier.Storage;

/// <summary>Where one installation keeps its bytes and its audit trail.</summary>
public sealed record StorageOptions
{
    /// <summary>The data directory: relative local locations are under it.</summary>
    public required string DataDirectory { get; init; }

    /// <summary>The configured locations.</summary>
    public required IReadOnlyList<LocationDescriptor> Locations { get; init; }

    /// <summary>The directory of the audit log (<c>&lt;data&gt;/audit</c> when null).</summary>
    public string? AuditDirectory { get; init; }

    /// <summary>The space kept beside the audit log so that deletions work on a full disk (0 keeps none).</summary>
    public long AuditReserveBytes { get; init; } = AuditLog.DefaultReserveBytes;

    /// <summary>
    /// This node's name in a cluster (null in the embedded mode): the local directories of other
    /// nodes are then read through their owners (an <see cref="INodeBlobDirectory"/> registered by the
    /// host finds them) and never written here.
    /// </summary>
    public string? Node { get; init; }

    /// <summary>The file of the key that signs exported audit heads (<c>&lt;data&gt;/audit-signing.key</c> when null).</summary>
    public string? AuditSigningKeyPath { get; init; }
}

/// <summary>Registers the storage layer with a host's services.</summary>
public static class StorageServiceCollectionExtensions
{
    /// <summary>
    /// Adds, as singletons, the <see cref="StorageLocations"/> (each location opened by the
    /// <see cref="IBlobStoreProvider"/> of its kind: the local directory one is always there, and a
    /// provider assembly adds its own with <c>TryAddEnumerable</c>), the <see cref="AuditLog"/>, the
    /// <see cref="PlacementGuard"/> over both (the only write path for bytes), and the
    /// <see cref="AuditHeadSigner"/>. The clock is the registered <see cref="TimeProvider"/> (the
    /// system clock when none is).
    /// </summary>
    /// <param name="services">The host's services.</param>
    /// <param name="options">The data directory, the locations and where the audit log lives.</param>
    /// <remarks>
    /// Nothing here runs recovery: a host awaits <see cref="StorageLocations.RemoveOrphansAsync"/> while
    /// it starts, before anything writes. The container owns (and disposes) the log and the signer.
    /// </remarks>
    public static IServiceCollection AddAtelierStorage(this IServiceCollection services, StorageOptions options)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(options);
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IBlobStoreProvider, LocalDirectoryBlobStoreProvider>());
        services.AddSingleton(new LocalBlobEndpoint { Node = options.Node });
        services.AddSingleton(provider => new StorageLocations(
            options.Locations,
            options.DataDirectory,
            provider.GetServices<IBlobStoreProvider>(),
            options.Node is { } node ? new ClusterView(node, provider.GetService<INodeBlobDirectory>(), NodeBlobHttp.Client) : null));
        services.AddSingleton(provider => new AuditLog(
            options.AuditDirectory ?? Path.Combine(options.DataDirectory, "audit"),
            provider.GetRequiredService<TimeProvider>(),
            options.AuditReserveBytes));
        services.AddSingleton(_ => AuditHeadSigner.LoadOrCreate(options.AuditSigningKeyPath ?? Path.Combine(options.DataDirectory, AuditHeadSigner.FileName)));
        services.AddSingleton<PlacementGuard>();
        return services;
    }
}

/// <summary>The one client of node-to-node blob streams: pooled connections, no overall timeout (a shard stream may take long), a short connect timeout.</summary>
internal static class NodeBlobHttp
{
    public static HttpClient Client { get; } = new(new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(5), PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1) }) { Timeout = Timeout.InfiniteTimeSpan };
}
