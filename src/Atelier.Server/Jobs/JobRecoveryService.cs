using Atelier.Catalog;
using Atelier.Cluster.Jobs;
using Atelier.Training.Checkpoints;
using Atelier.Training.Execution;

namespace Atelier.Server.Jobs;

/// <summary>
/// Runs once the silo is up: clears torn checkpoint writes, offers this node's training slots to
/// the scheduler, and hands every unfinished job back to its grain, which picks it up from its
/// catalog status (a job that was training resumes from its last committed checkpoint). On stop,
/// it stops the trainers here; their jobs stay RUNNING and resume on the next start.
/// </summary>
public sealed partial class JobRecoveryService(
    TrainingNode node,
    IJobRepository jobs,
    CheckpointStore checkpoints,
    FineTuningWork work,
    IGrainFactory grains,
    ILogger<JobRecoveryService> logger) : IHostedService
{
    /// <inheritdoc />
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var report = await checkpoints.RecoverAsync(cancellationToken).ConfigureAwait(false);
        if (report.PartialWritesRemoved > 0 || report.ChunksSwept > 0)
        {
            LogCheckpointRecovery(logger, report.PartialWritesRemoved, report.ChunksSwept);
        }

        await grains.GetGrain<IJobSchedulerGrain>(0).RegisterNodeAsync(node.Name, node.Slots).ConfigureAwait(false);
        foreach (var job in await jobs.UnfinishedAsync(cancellationToken).ConfigureAwait(false))
        {
            await grains.GetGrain<IFineTuningJobGrain>(job.Id).RecoverAsync(node.Name).ConfigureAwait(false);
        }
    }

    /// <inheritdoc />
    public Task StopAsync(CancellationToken cancellationToken) => work.StopAllAsync(cancellationToken);

    [LoggerMessage(Level = LogLevel.Information, Message = "Checkpoint recovery removed {Partial} partial writes and swept {Chunks} unreferenced chunks")]
    private static partial void LogCheckpointRecovery(ILogger logger, int partial, int chunks);
}
