using Atelier.Inference.Serving;
using Microsoft.Extensions.DependencyInjection;

namespace Atelier.Inference;

/// <summary>Registers serving with a host's services.</summary>
public static class InferenceServiceCollectionExtensions
{
    /// <summary>
    /// Adds the embedded replica's <see cref="ModelServer"/> as a singleton, over the host's
    /// <see cref="Registry.ModelRegistry"/>; the host disposes it (and every engine it loaded) when it stops.
    /// </summary>
    public static IServiceCollection AddAtelierInference(this IServiceCollection services, ServingOptions options)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(options);
        services.AddSingleton(options);
        services.AddSingleton<ModelServer>();
        return services;
    }
}
