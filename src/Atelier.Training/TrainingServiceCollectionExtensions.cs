using Atelier.Training.Checkpoints;
using Atelier.Training.Datasets;
using Atelier.Training.Evaluation;
using Atelier.Training.Execution;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace Atelier.Training;

/// <summary>How the training services of one node are set up.</summary>
public sealed record TrainingOptions
{
    /// <summary>Where jobs stage their data and adapters, and how much curation may drop.</summary>
    public required FineTuningWorkOptions FineTuning { get; init; }

    /// <summary>Where dataset builds stage their versions.</summary>
    public required DatasetBuildServiceOptions DatasetBuilds { get; init; }

    /// <summary>Where checkpoints go, and how they are written.</summary>
    public required CheckpointStoreOptions Checkpoints { get; init; }

    /// <summary>Where model evaluations stage their windows; null for <c>evaluations</c> beside the jobs' staging directory.</summary>
    public ModelEvaluationOptions? Evaluations { get; init; }
}

/// <summary>Registers the training services with a host's services.</summary>
public static class TrainingServiceCollectionExtensions
{
    /// <summary>
    /// Adds, as singletons built by constructor injection: the <see cref="CheckpointStore"/>; the
    /// node-local <see cref="FineTuningWork"/>, also as the <see cref="IFineTuningWork"/> the cluster
    /// drives; the <see cref="DatasetBuildService"/>, also run as a hosted service; and the
    /// <see cref="FileExpirySweeper"/> as a hosted service; the <see cref="ModelEvaluator"/>. The sweeper is added first, so hosted
    /// services registered after this call (a cluster, a recovery step) start after both.
    /// </summary>
    /// <param name="services">The host's services.</param>
    /// <param name="options">Staging directories, curation and checkpoint settings.</param>
    /// <remarks>
    /// Each service takes the narrow dependencies it needs from what the host registers: the catalog's
    /// repositories, the <see cref="Storage.Placement.PlacementGuard"/> and
    /// <see cref="Storage.Placement.StorageLocations"/>, the <see cref="Core.Topology.TopologyMap"/>, the
    /// model registry, a <see cref="TimeProvider"/> (the system clock when none is registered), an
    /// <see cref="IFineTuningReports"/> (the cluster's grains) and an <see cref="IDerivedDatasetBuilder"/>
    /// (semantic dedup, from the feature store). A host awaits <see cref="CheckpointStore.RecoverAsync"/>
    /// once while it starts.
    /// </remarks>
    public static IServiceCollection AddAtelierTraining(this IServiceCollection services, TrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(options);
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton(options.FineTuning);
        services.AddSingleton(options.DatasetBuilds);
        services.AddSingleton(options.Checkpoints);

        services.AddHostedService<FileExpirySweeper>();
        services.AddSingleton<DatasetBuildService>();
        services.AddHostedService(provider => provider.GetRequiredService<DatasetBuildService>());

        services.AddSingleton<CheckpointStore>();
        services.AddSingleton<JobMetricsLog>();
        services.AddSingleton<FineTuningCatalog>();
        services.AddSingleton<FineTuningStorage>();
        services.AddSingleton<FineTuningWork>();
        services.AddSingleton<IFineTuningWork>(provider => provider.GetRequiredService<FineTuningWork>());
        services.AddSingleton<Lineage.LineageGraphService>();
        services.AddSingleton<Erasure.ErasureService>();
        services.AddSingleton(options.Evaluations ?? new ModelEvaluationOptions
        {
            StagingDirectory = Path.Combine(Path.GetDirectoryName(Path.TrimEndingDirectorySeparator(options.FineTuning.StagingDirectory)) ?? options.FineTuning.StagingDirectory, "evaluations"),
        });
        services.AddSingleton<ModelEvaluator>();
        return services;
    }
}
