using Atelier.Catalog;
using Atelier.Core.Topology;
using Atelier.Training.Execution;
using Atelier.Training.Jobs;

namespace Atelier.Cluster.Jobs;

/// <summary>The scheduler; see <see cref="IJobSchedulerGrain"/>.</summary>
/// <remarks>
/// It stays active for the silo's life. Should it ever be activated anew, it rebuilds its running
/// set and queue from the catalog, which is the durable state; nodes register again on start.
/// </remarks>
[CollectionAgeLimit(AlwaysActive = true)]
public sealed class JobSchedulerGrain(IJobRepository jobs, TopologyMap topology, IFineTuningWork work) : Grain, IJobSchedulerGrain
{
    private readonly Dictionary<string, int> _slots = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _running = new(StringComparer.Ordinal);
    private readonly List<(string JobId, string? DataNode)> _queue = [];

    /// <inheritdoc />
    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        // In a cluster this activation may replace one that died with its node: the queue, like the
        // running set, comes back from the catalog (a validated job is QUEUED only while it waits
        // for a slot), and each live node registers its slots again as membership changes.
        foreach (var job in await jobs.UnfinishedAsync(cancellationToken))
        {
            if (job.Status is FineTuningStatus.Running or FineTuningStatus.CancellationRequested && job.Node is { } node)
            {
                _running[job.Id] = node;
            }
            else if (job.Status == FineTuningStatus.Queued && job.MetadataJson is not null)
            {
                _queue.Add((job.Id, await work.DataNodeAsync(job.Id)));
            }
        }
    }

    /// <inheritdoc />
    public Task NodeLostAsync(string node)
    {
        _slots.Remove(node);
        foreach (var job in _running.Where(r => r.Value == node).Select(r => r.Key).ToList())
        {
            _running.Remove(job);
        }

        return DispatchAsync();
    }

    /// <inheritdoc />
    public Task RegisterNodeAsync(string node, int slots)
    {
        _slots[node] = slots;
        return DispatchAsync();
    }

    /// <inheritdoc />
    public Task SubmitAsync(string jobId, string? dataNode)
    {
        // A job submitted again is not training any more (its trainer died with a process), even
        // if this scheduler, rebuilt from the catalog, still counted it on its old slot.
        _running.Remove(jobId);
        if (!_queue.Exists(q => q.JobId == jobId))
        {
            _queue.Add((jobId, dataNode));
        }

        return DispatchAsync();
    }

    /// <inheritdoc />
    public Task WithdrawAsync(string jobId)
    {
        _queue.RemoveAll(q => q.JobId == jobId);
        return Task.CompletedTask;
    }

    /// <inheritdoc />
    public Task ReleaseAsync(string jobId)
    {
        _running.Remove(jobId);
        return DispatchAsync();
    }

    /// <inheritdoc />
    public Task<SchedulerState> GetStateAsync() =>
        Task.FromResult(new SchedulerState(Nodes(), [.. _queue.Select(q => q.JobId)], [.. _running.Select(r => new Placement(r.Key, r.Value))]));

    private List<NodeSlots> Nodes() =>
        [.. _slots.OrderBy(s => s.Key, StringComparer.Ordinal).Select(s => new NodeSlots(s.Key, s.Value, _running.Values.Count(n => n == s.Key)))];

    /// <summary>Places queued jobs, oldest first, while slots are free.</summary>
    private async Task DispatchAsync()
    {
        while (_queue.Count > 0)
        {
            var (jobId, dataNode) = _queue[0];
            var node = SlotPlacement.Choose(Nodes(), dataNode, topology);
            if (node is null)
            {
                return;
            }

            _queue.RemoveAt(0);
            _running[jobId] = node;
            var job = await jobs.GetByIdAsync(jobId);
            if (job is null || job.Status != FineTuningStatus.Queued)
            {
                _running.Remove(jobId);
                continue;
            }

            await jobs.AddEventAsync(jobId, "placed", System.Text.Json.JsonSerializer.Serialize(new Dictionary<string, object?> { ["node"] = node, ["data_node"] = dataNode }));

            // The job's grain is another activation: calling it from here cannot deadlock, because
            // it never calls back into the scheduler and waits for the answer in the same turn.
            _ = GrainFactory.GetGrain<IFineTuningJobGrain>(jobId).PlacedAsync(node);
        }
    }
}
