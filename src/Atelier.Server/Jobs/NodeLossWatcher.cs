using Atelier.Catalog;
using Atelier.Cluster;
using Atelier.Cluster.Jobs;
using Atelier.Training.Jobs;

namespace Atelier.Server.Jobs;

/// <summary>
/// Cluster mode: follows Orleans membership. On every change it offers this node's slots to the
/// scheduler again (a scheduler that came back on another silo after its own died knows the live
/// nodes at once), and when a node is declared dead it takes that node's slots away and hands each
/// job that was training there to its grain, which queues it to resume elsewhere from the newest
/// checkpoint a live node can read. Every live node does this; the job's conditional transition
/// makes it happen once.
/// </summary>
public sealed partial class NodeLossWatcher(
    TrainingNode node,
    ClusterNodes cluster,
    IClusterMembershipService membership,
    IJobRepository jobs,
    IGrainFactory grains,
    ILogger<NodeLossWatcher> logger) : BackgroundService
{
    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (cluster.Embedded)
        {
            return;
        }

        var handled = new HashSet<string>(StringComparer.Ordinal);
        await foreach (var _ in membership.MembershipUpdates.WithCancellation(stoppingToken).ConfigureAwait(false))
        {
            try
            {
                var scheduler = grains.GetGrain<IJobSchedulerGrain>(0);
                await scheduler.RegisterNodeAsync(node.Name, node.Slots).ConfigureAwait(false);
                foreach (var member in cluster.Nodes())
                {
                    if (member.Alive)
                    {
                        handled.Remove(member.Name);
                        continue;
                    }

                    if (handled.Contains(member.Name))
                    {
                        continue;
                    }

                    await scheduler.NodeLostAsync(member.Name).ConfigureAwait(false);
                    foreach (var job in await jobs.UnfinishedAsync(stoppingToken).ConfigureAwait(false))
                    {
                        if ((job.Node == member.Name && job.Status is FineTuningStatus.Running or FineTuningStatus.CancellationRequested) || job.Status == FineTuningStatus.Validating)
                        {
                            await grains.GetGrain<IFineTuningJobGrain>(job.Id).NodeLostAsync(member.Name).ConfigureAwait(false);
                        }
                    }

                    handled.Add(member.Name);
                    LogNodeLost(logger, member.Name);
                }
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested && e is not OutOfMemoryException)
            {
                // The next membership change tries again; meanwhile the jobs stay where they were.
                LogWatchFailed(logger, e);
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Node {Node} is dead in the cluster's membership: its slots are gone and its jobs resume elsewhere")]
    private static partial void LogNodeLost(ILogger logger, string node);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Handling a membership change failed; the next change retries")]
    private static partial void LogWatchFailed(ILogger logger, Exception exception);
}
