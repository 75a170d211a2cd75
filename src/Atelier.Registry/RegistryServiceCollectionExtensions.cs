using Atelier.Catalog;
using Atelier.Storage.Placement;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Atelier.Registry;

/// <summary>How the model registry is set up.</summary>
public sealed record ModelRegistryOptions
{
    /// <summary>
    /// Where a base model whose blobs are not plain local files is materialised; null when every
    /// location is a local directory.
    /// </summary>
    public string? CacheDirectory { get; init; }

    /// <summary>
    /// The absolute directories base models may be imported from (<c>models.import_roots</c>); null
    /// refuses every import. They must exist when the registry is first resolved: each is resolved
    /// through its links then.
    /// </summary>
    public IReadOnlyList<string>? ImportRoots { get; init; }
}

/// <summary>Registers the model registry with a host's services.</summary>
public static class RegistryServiceCollectionExtensions
{
    /// <summary>
    /// Adds the <see cref="ModelRegistry"/> as a singleton, built from what the host registers: the
    /// catalog's <see cref="IModelRepository"/> (and its <see cref="IModelVersionRepository"/>, when registered), the <see cref="PlacementGuard"/> and a
    /// <see cref="TimeProvider"/> (the system clock when none is registered).
    /// </summary>
    /// <param name="services">The host's services.</param>
    /// <param name="options">Its cache directory and import roots.</param>
    /// <remarks>
    /// A host should resolve the registry while it starts and await
    /// <see cref="ModelRegistry.RemoveOrphanedBlobsAsync"/> once, before it serves an import, to remove
    /// the bytes a crashed import left.
    /// </remarks>
    public static IServiceCollection AddAtelierRegistry(this IServiceCollection services, ModelRegistryOptions options)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(options);
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton(provider => new ModelRegistry(
            provider.GetRequiredService<IModelRepository>(),
            provider.GetRequiredService<PlacementGuard>(),
            provider.GetRequiredService<TimeProvider>(),
            options.CacheDirectory,
            options.ImportRoots is { } roots ? new ModelImportRoots(roots) : null,
            provider.GetService<IModelVersionRepository>()));
        return services;
    }
}
