using Atelier.Training.Execution;
using Orleans.Placement;

namespace Atelier.Cluster.Jobs;

/// <summary>A node's worker agent; see <see cref="INodeWorkerGrain"/>.</summary>
[PreferLocalPlacement]
public sealed class NodeWorkerGrain(IFineTuningWork work) : Grain, INodeWorkerGrain
{
    /// <inheritdoc />
    public Task RunAsync(string jobId)
    {
        work.StartTraining(jobId, this.GetPrimaryKeyString());
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task CancelAsync(string jobId)
    {
        work.Cancel(jobId);
        return Task.CompletedTask;
    }
}
