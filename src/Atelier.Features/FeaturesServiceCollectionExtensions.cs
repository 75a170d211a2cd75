using Atelier.Catalog;
using Atelier.Features.Semantic;
using Atelier.Storage.Placement;
using Atelier.Training.Datasets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Atelier.Features;

/// <summary>Registers the feature store and semantic dedup with a host's services.</summary>
public static class FeaturesServiceCollectionExtensions
{
    /// <summary>
    /// Adds the <see cref="FeatureStore"/> as a singleton over the catalog's
    /// <see cref="IFeatureRepository"/> and <see cref="IOnlineFeatureRows"/>, the placement guard and a
    /// <see cref="TimeProvider"/> (the system clock when none is registered),
    /// with the installation's residency policies (the registered <see cref="PolicyCatalog"/>) read
    /// at each use, so policies the operator defines while the server runs can be chosen for views;
    /// and <see cref="SemanticDedupBuild"/> as the <see cref="IDerivedDatasetBuilder"/> that dataset
    /// builds run for the <c>semantic_dedup</c> operation.
    /// </summary>
    /// <param name="services">The host's services.</param>
    /// <param name="options">Default location and policy, cache size and limits.</param>
    /// <remarks>
    /// A host should resolve the store while it starts and await
    /// <see cref="FeatureStore.CatchUpOnlineAsync"/> once, before it serves a lookup, so the online
    /// store holds every committed segment. The container owns (and disposes) the store.
    /// </remarks>
    public static IServiceCollection AddAtelierFeatures(this IServiceCollection services, FeatureStoreOptions options)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(options);
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton(provider =>
        {
            var policies = provider.GetRequiredService<PolicyCatalog>();
            return new FeatureStore(
                provider.GetRequiredService<IFeatureRepository>(),
                provider.GetRequiredService<IOnlineFeatureRows>(),
                provider.GetRequiredService<PlacementGuard>(),
                () => policies.All,
                options,
                provider.GetRequiredService<TimeProvider>());
        });
        services.AddSingleton<IDerivedDatasetBuilder, SemanticDedupBuild>();
        return services;
    }
}
