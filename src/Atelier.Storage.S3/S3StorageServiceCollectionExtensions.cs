using Atelier.Storage.Blobs;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Atelier.Storage.S3;

/// <summary>Registers S3-compatible locations with a host's services.</summary>
public static class S3StorageServiceCollectionExtensions
{
    /// <summary>
    /// Adds the <see cref="S3BlobStoreProvider"/>, so that the <c>StorageLocations</c> of
    /// <c>AddAtelierStorage</c> opens locations of kind <c>s3</c>; writes still go through the
    /// placement guard. The clock of the orphan sweep is the registered <see cref="TimeProvider"/>.
    /// </summary>
    public static IServiceCollection AddAtelierS3Storage(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IBlobStoreProvider, S3BlobStoreProvider>());
        return services;
    }
}
