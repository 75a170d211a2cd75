using Atelier.Core.Residency;
using Atelier.Inference.Serving;
using Atelier.Registry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Atelier.Inference;

/// <summary>Registers serving with a host's services.</summary>
public static class InferenceServiceCollectionExtensions
{
    /// <summary>
    /// Adds the <see cref="ServingRouter"/> as a singleton: one in-process <see cref="ModelServer"/> per
    /// replica, each over the host's <see cref="ModelRegistry"/>; the host disposes them (and every
    /// engine they loaded) when it stops. When the host registers an <see cref="IRemoteReplicas"/> (a
    /// cluster's other nodes), the router considers those too.
    /// </summary>
    /// <param name="services">The host's services.</param>
    /// <param name="options">The engine options of every replica.</param>
    /// <param name="replicas">Each replica's name and where it runs (at least one).</param>
    /// <param name="policies">Resolves a model's policy name.</param>
    public static IServiceCollection AddAtelierInference(this IServiceCollection services, ServingOptions options, IReadOnlyList<(string Id, LocationDescriptor Location)> replicas, Func<string, ResidencyPolicy> policies)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(replicas);
        services.AddSingleton(options);
        services.AddSingleton(provider =>
        {
            var registry = provider.GetRequiredService<ModelRegistry>();
            var logger = provider.GetRequiredService<ILogger<ModelServer>>();
            return new ServingRouter([.. replicas.Select(r => new Replica(r.Id, r.Location, new ModelServer(registry, options, logger)))], registry, policies, provider.GetService<Atelier.Catalog.IErasureRepository>(), provider.GetService<IRemoteReplicas>());
        });
        return services;
    }
}
