using Atelier.Catalog;
using Atelier.Core.Errors;
using Atelier.Training.Execution;
using Atelier.Training.Jobs;
using Microsoft.Extensions.Logging;
using static Atelier.Training.Jobs.FineTuningStatus;

namespace Atelier.Cluster.Jobs;

/// <summary>The job's state machine; see <see cref="IFineTuningJobGrain"/>.</summary>
public sealed partial class FineTuningJobGrain(IJobRepository jobs, IFineTuningWork work, ClusterNodes nodes, ILogger<FineTuningJobGrain> logger) : Grain, IFineTuningJobGrain
{
    private string Id => this.GetPrimaryKeyString();

    private IJobSchedulerGrain Scheduler => GrainFactory.GetGrain<IJobSchedulerGrain>(0);

    /// <inheritdoc />
    public async Task SubmitAsync()
    {
        if (await MoveAsync([Queued], Validating))
        {
            await StartValidationAsync();
        }
    }

    /// <inheritdoc />
    public async Task ValidationFinishedAsync(string? error)
    {
        if (error is not null)
        {
            await MoveAsync([Validating], FailedValidation, error);
            return;
        }

        if (!await MoveAsync([Validating], Validated))
        {
            return;
        }

        var job = await JobAsync();
        if (job.AutoStart || job.Started)
        {
            await QueueForSlotAsync();
        }
    }

    /// <inheritdoc />
    public async Task StartAsync()
    {
        var job = await JobAsync();
        switch (job.Status)
        {
            case Validated:
                await QueueForSlotAsync();
                break;
            case Queued or Validating when job.MetadataJson is null:
                // Still validating: it starts as soon as it is validated.
                await jobs.MarkStartedAsync(Id);
                break;
            default:
                throw new ConflictException($"Job '{Id}' is {job.Status}; only a VALIDATED job can be started.");
        }
    }

    /// <inheritdoc />
    public async Task CancelAsync()
    {
        var job = await JobAsync();
        if (job.Status is Running)
        {
            if (await MoveAsync([Running], CancellationRequested) && job.Node is { } node)
            {
                await GrainFactory.GetGrain<INodeWorkerGrain>(node).CancelAsync(Id);
            }

            return;
        }

        if (await MoveAsync([Queued, Validating, Validated], Cancelled))
        {
            work.Cancel(Id);
            if (job.Status is Validating && await ValidationNodeAsync() is { } validator)
            {
                await GrainFactory.GetGrain<INodeWorkerGrain>(validator).CancelAsync(Id);
            }

            await Scheduler.WithdrawAsync(Id);
            return;
        }

        if (job.Status is not (CancellationRequested or Cancelled))
        {
            throw new ConflictException($"Job '{Id}' is {job.Status} and can no longer be cancelled.");
        }
    }

    /// <inheritdoc />
    public async Task PlacedAsync(string node)
    {
        await jobs.MarkPlacedAsync(Id, node);
        if (await MoveAsync([Queued], Running))
        {
            await GrainFactory.GetGrain<INodeWorkerGrain>(node).RunAsync(Id);
        }
        else
        {
            // Cancelled while it waited for this placement.
            await Scheduler.ReleaseAsync(Id);
        }
    }

    /// <inheritdoc />
    public async Task RunFinishedAsync(RunEnd end, string? error)
    {
        switch (end)
        {
            case RunEnd.Succeeded:
                await MoveAsync([Running, CancellationRequested], Success);
                break;
            case RunEnd.Failed:
                await MoveAsync([Running, CancellationRequested], Failed, error);
                break;
            case RunEnd.Cancelled:
                await MoveAsync([Running, CancellationRequested], Cancelled);
                break;
            case RunEnd.Interrupted:
                // The node is stopping: the job stays RUNNING in the catalog and the next start
                // of a silo puts it back in the queue (RecoverAsync).
                break;
        }

        await Scheduler.ReleaseAsync(Id);
    }

    /// <inheritdoc />
    public async Task RecoverAsync(string node)
    {
        var job = await JobAsync();
        if (!nodes.Embedded && job.Status is Running or CancellationRequested && job.Node is { } trainer && trainer != node && nodes.IsAlive(trainer))
        {
            // Training on another node that is alive: the restart of this one is no news to it.
            // (Embedded, this one process ran every node's trainers, so all of them are requeued.)
            return;
        }

        switch (job.Status)
        {
            case Queued when job.MetadataJson is null:
                await SubmitAsync();
                break;
            case Validating:
                await jobs.AddEventAsync(Id, "recovered", """{"detail":"validation restarted after a restart of the server"}""");
                await StartValidationAsync();
                break;
            case Queued:
                await Scheduler.SubmitAsync(Id, await work.DataNodeAsync(Id));
                break;
            case Validated when job.AutoStart || job.Started:
                await QueueForSlotAsync();
                break;
            case Running:
                // Its trainer died with the previous process: back in the queue, to resume from
                // its newest committed checkpoint.
                if (await MoveAsync([Running], Queued))
                {
                    await jobs.AddEventAsync(Id, "recovered", """{"detail":"training resumes from the last committed checkpoint after a restart of the server"}""");
                    await Scheduler.SubmitAsync(Id, await work.DataNodeAsync(Id));
                }

                break;
            case CancellationRequested:
                await MoveAsync([CancellationRequested], Cancelled);
                break;
        }
    }

    /// <inheritdoc />
    public async Task NodeLostAsync(string node)
    {
        var job = await JobAsync();
        if (job.Status is Validating)
        {
            // It may have been validating on the node that died (next to its data, or where this
            // grain lived): start it again. A node still validating it ignores the second start.
            if (await work.DataNodeAsync(Id) == node)
            {
                await jobs.AddEventAsync(Id, "recovered", System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, string> { ["detail"] = $"node {node} died while validating; validation restarted on another node", ["lost_node"] = node }));
            }

            await StartValidationAsync();
            return;
        }

        if (job.Node != node)
        {
            return;
        }

        if (job.Status is CancellationRequested)
        {
            await MoveAsync([CancellationRequested], Cancelled);
            return;
        }

        if (await MoveAsync([Running], Queued))
        {
            await jobs.AddEventAsync(Id, "rescheduled", System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, string> { ["detail"] = $"node {node} was declared dead; training resumes on another node from the newest checkpoint it can read", ["lost_node"] = node }));
            LogRescheduled(logger, Id, node);
            await Scheduler.SubmitAsync(Id, await work.DataNodeAsync(Id));
        }
    }

    /// <summary>
    /// Validation builds the job's data where it will live: on the node whose drive the job's
    /// location is, when that node is alive (in a cluster), else here.
    /// </summary>
    private async Task StartValidationAsync()
    {
        if (await ValidationNodeAsync() is { } node)
        {
            await GrainFactory.GetGrain<INodeWorkerGrain>(node).ValidateAsync(Id);
            return;
        }

        work.StartValidation(Id);
    }

    // The live node, other than embedded, whose drive holds the job's location; null to validate here.
    private async Task<string?> ValidationNodeAsync() =>
        nodes.Embedded ? null : await work.DataNodeAsync(Id) is { } node && nodes.IsAlive(node) ? node : null;

    private async Task QueueForSlotAsync()
    {
        await jobs.MarkStartedAsync(Id);
        if (await MoveAsync([Validated], Queued))
        {
            await Scheduler.SubmitAsync(Id, await work.DataNodeAsync(Id));
        }
    }

    /// <summary>
    /// Moves the job from one of <paramref name="from"/> to <paramref name="to"/> when it is in one
    /// of them, and logs the move: one line per step of a job's life (decision 0012).
    /// </summary>
    private async Task<bool> MoveAsync(string[] from, string to, string? error = null)
    {
        if (!await jobs.TransitionAsync(Id, from, to, error))
        {
            return false;
        }

        if (error is not null)
        {
            LogFailed(logger, Id, to, error);
        }
        else
        {
            LogMoved(logger, Id, to);
        }

        return true;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Job {JobId} is {Status}")]
    private static partial void LogMoved(ILogger logger, string jobId, string status);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Job {JobId} lost its node {Node}: back in the queue to resume elsewhere")]
    private static partial void LogRescheduled(ILogger logger, string jobId, string node);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Job {JobId} is {Status}: {Error}")]
    private static partial void LogFailed(ILogger logger, string jobId, string status, string error);

    private async Task<JobRecord> JobAsync() => await jobs.GetByIdAsync(Id) ?? throw new NotFoundException("job", Id);
}
