using Atelier.Training.Execution;
using Atelier.Cluster.Placement;

namespace Atelier.Cluster.Jobs;

/// <summary>A node's worker agent; see <see cref="INodeWorkerGrain"/>.</summary>
[NodePlacement]
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
