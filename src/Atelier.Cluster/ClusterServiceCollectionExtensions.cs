using Atelier.Cluster.Jobs;
using Atelier.Training.Execution;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Atelier.Cluster;

/// <summary>Registers what the cluster's grains offer a node's services.</summary>
public static class ClusterServiceCollectionExtensions
{
    /// <summary>
    /// Adds <see cref="GrainFineTuningReports"/> as the <see cref="IFineTuningReports"/> through which a
    /// node's fine-tuning work reports the end of a validation or a run to the job's grain, and
    /// <see cref="ClusterNodes"/> (membership, each node's audit check, and the
    /// <see cref="Atelier.Storage.Blobs.INodeBlobDirectory"/> through which another node's drives are read). It needs the
    /// silo's <see cref="IGrainFactory"/>: the host configures the silo (clustering, ports) itself. A host
    /// that serves models registers its own <see cref="INodeServingLoad"/>; without one, a node publishes none.
    /// </summary>
    /// <param name="services">The host's services.</param>
    public static IServiceCollection AddAtelierCluster(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddSingleton<IFineTuningReports, GrainFineTuningReports>();
        services.AddSingleton<ClusterNodes>();
        services.TryAddSingleton<INodeServingLoad, NoServingLoad>();
        services.AddSingleton<Atelier.Storage.Blobs.INodeBlobDirectory>(provider => provider.GetRequiredService<ClusterNodes>());
        return services;
    }
}
