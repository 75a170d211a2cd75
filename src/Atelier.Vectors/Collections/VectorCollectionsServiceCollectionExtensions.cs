using Atelier.Storage.Placement;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Atelier.Vectors.Collections;

/// <summary>Registers the vector collection store with a host's services.</summary>
public static class VectorCollectionsServiceCollectionExtensions
{
    /// <summary>
    /// Adds the <see cref="CollectionStore"/> as a singleton. It is built from what the host registers: an
    /// <see cref="ICollectionCatalog"/> (its catalog rows), the <see cref="PlacementGuard"/> (the only path to
    /// bytes), a <see cref="ResidencyPolicyResolver"/> and a <see cref="TimeProvider"/> (the system clock when
    /// none is registered).
    /// </summary>
    /// <param name="services">The host's services.</param>
    /// <param name="options">Tuning of the store; the defaults when null.</param>
    /// <remarks>
    /// A host should resolve the store while it starts and await <see cref="CollectionStore.RemoveOrphansAsync"/>
    /// once, before it serves a request that could be creating a collection, to sweep what a crash left.
    /// </remarks>
    public static IServiceCollection AddAtelierVectorCollections(this IServiceCollection services, CollectionStoreOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var tuning = options ?? new CollectionStoreOptions();
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton(provider => new CollectionStore(
            provider.GetRequiredService<ICollectionCatalog>(),
            provider.GetRequiredService<PlacementGuard>(),
            provider.GetRequiredService<ResidencyPolicyResolver>(),
            provider.GetRequiredService<TimeProvider>(),
            tuning));
        return services;
    }
}
