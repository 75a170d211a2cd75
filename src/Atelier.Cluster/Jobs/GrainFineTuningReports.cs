using Atelier.Training.Execution;

namespace Atelier.Cluster.Jobs;

/// <summary>Reports the end of a job's validation or training to the job's grain.</summary>
/// <param name="grains">The grain factory of the silo the work runs in.</param>
public sealed class GrainFineTuningReports(IGrainFactory grains) : IFineTuningReports
{
    /// <inheritdoc />
    public Task ValidationFinishedAsync(string jobId, string? error) =>
        grains.GetGrain<IFineTuningJobGrain>(jobId).ValidationFinishedAsync(error);

    /// <inheritdoc />
    public Task RunFinishedAsync(string jobId, TrainingEnd end, string? error) =>
        grains.GetGrain<IFineTuningJobGrain>(jobId).RunFinishedAsync(
            end switch
            {
                TrainingEnd.Succeeded => RunEnd.Succeeded,
                TrainingEnd.Failed => RunEnd.Failed,
                TrainingEnd.Cancelled => RunEnd.Cancelled,
                TrainingEnd.Interrupted => RunEnd.Interrupted,
                _ => throw new ArgumentOutOfRangeException(nameof(end), end, null),
            },
            error);
}
