using System.Diagnostics.Metrics;
using Atelier.Catalog;
using Atelier.Cluster.Jobs;
using Atelier.Storage.Placement;

namespace Atelier.Server.Hosting;

/// <summary>
/// The platform's state as Prometheus gauges on <c>/metrics</c>: unfinished jobs by status, the
/// scheduler's queue and slots, dataset builds by status, and the bytes held at each location.
/// They are read when <c>/metrics</c> is scraped (<see cref="RefreshAsync"/>, before the exporter
/// collects), not on a timer; the bytes per location walk every key of a location, so they are
/// read again at most once per <see cref="BytesInterval"/>.
/// </summary>
/// <param name="jobs">Jobs: the unfinished ones, counted by status.</param>
/// <param name="datasets">Dataset builds: the unfinished ones, counted by status.</param>
/// <param name="grains">The scheduler grain: queue and slots.</param>
/// <param name="locations">The locations whose bytes are counted.</param>
/// <param name="guard">The placement guard, which reads the blobs' lengths.</param>
public sealed class PlatformGauges(IJobRepository jobs, IDatasetRepository datasets, IGrainFactory grains, StorageLocations locations, PlacementGuard guard) : IDisposable
{
    /// <summary>How long a count of the bytes per location is reused.</summary>
    public static readonly TimeSpan BytesInterval = TimeSpan.FromSeconds(60);

    private readonly Meter _meter = new(AtelierServer.MeterName);
    private readonly SemaphoreSlim _refresh = new(1, 1);
    private Snapshot _snapshot = new(new Dictionary<string, long>(), 0, 0, 0, new Dictionary<string, long>(), new Dictionary<string, long>());
    private long _bytesReadAt = long.MinValue;

    /// <summary>Creates the gauges; each reads the latest snapshot.</summary>
    public void Register()
    {
        _meter.CreateObservableGauge("atelier_jobs", () => _snapshot.Jobs.Select(p => new Measurement<long>(p.Value, new KeyValuePair<string, object?>("status", p.Key))), description: "Unfinished fine-tuning jobs by status.");
        _meter.CreateObservableGauge("atelier_job_queue_length", () => (long)_snapshot.QueueLength, description: "Jobs waiting for a training slot.");
        _meter.CreateObservableGauge("atelier_training_slots", () => new[]
        {
            new Measurement<long>(_snapshot.SlotsTotal, new KeyValuePair<string, object?>("state", "total")),
            new Measurement<long>(_snapshot.SlotsBusy, new KeyValuePair<string, object?>("state", "busy")),
        }, description: "Training slots of the cluster's nodes, in all and busy.");
        _meter.CreateObservableGauge("atelier_dataset_builds", () => _snapshot.DatasetBuilds.Select(p => new Measurement<long>(p.Value, new KeyValuePair<string, object?>("status", p.Key))), description: "Dataset builds queued or running.");
        _meter.CreateObservableGauge("atelier_location_bytes", () => _snapshot.LocationBytes.Select(p => new Measurement<long>(p.Value, new KeyValuePair<string, object?>("location", p.Key))), unit: "By", description: "Bytes stored at each location.");
    }

    /// <summary>Reads the catalog, the scheduler and (when due) the locations into a new snapshot.</summary>
    public async Task RefreshAsync(TimeProvider clock, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(clock);
        await _refresh.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var jobCounts = new SortedDictionary<string, long>(StringComparer.Ordinal);
            foreach (var status in new[] { Atelier.Training.Jobs.FineTuningStatus.Queued, Atelier.Training.Jobs.FineTuningStatus.Validating, Atelier.Training.Jobs.FineTuningStatus.Validated, Atelier.Training.Jobs.FineTuningStatus.Running, Atelier.Training.Jobs.FineTuningStatus.CancellationRequested })
            {
                jobCounts[status] = 0;
            }

            foreach (var job in await jobs.UnfinishedAsync(cancellationToken).ConfigureAwait(false))
            {
                jobCounts[job.Status] = jobCounts.GetValueOrDefault(job.Status) + 1;
            }

            var buildCounts = new SortedDictionary<string, long>(StringComparer.Ordinal) { ["queued"] = 0, ["running"] = 0 };
            foreach (var dataset in await datasets.UnfinishedAsync(cancellationToken).ConfigureAwait(false))
            {
                buildCounts[dataset.Status] = buildCounts.GetValueOrDefault(dataset.Status) + 1;
            }

            var scheduler = await grains.GetGrain<IJobSchedulerGrain>(0).GetStateAsync().ConfigureAwait(false);
            var bytes = _snapshot.LocationBytes;
            var now = clock.GetTimestamp();
            if (_bytesReadAt == long.MinValue || clock.GetElapsedTime(_bytesReadAt, now) >= BytesInterval)
            {
                bytes = await CountBytesAsync(cancellationToken).ConfigureAwait(false);
                _bytesReadAt = now;
            }

            _snapshot = new Snapshot(jobCounts, scheduler.Queue.Count, scheduler.Nodes.Sum(n => n.Slots), scheduler.Running.Count, buildCounts, bytes);
        }
        finally
        {
            _refresh.Release();
        }
    }

    private async Task<IReadOnlyDictionary<string, long>> CountBytesAsync(CancellationToken cancellationToken)
    {
        var bytes = new SortedDictionary<string, long>(StringComparer.Ordinal);
        // Another node's drive is that node's to count: asking it here would make this node's
        // metrics fail while that node is down.
        foreach (var location in locations.All.Select(l => l.Id).Where(id => !locations.IsElsewhere(id)))
        {
            long total = 0;
            await foreach (var key in locations.ListKeysAsync(location, "", cancellationToken).ConfigureAwait(false))
            {
                total += await guard.GetLengthAsync(location, key, cancellationToken).ConfigureAwait(false) ?? 0;
            }

            bytes[location] = total;
        }

        return bytes;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _meter.Dispose();
        _refresh.Dispose();
    }

    private sealed record Snapshot(IReadOnlyDictionary<string, long> Jobs, int QueueLength, int SlotsTotal, int SlotsBusy, IReadOnlyDictionary<string, long> DatasetBuilds, IReadOnlyDictionary<string, long> LocationBytes);
}

/// <summary>Refreshes <see cref="PlatformGauges"/> before <c>/metrics</c> is collected, so a scrape sees the platform as it is.</summary>
/// <param name="next">The rest of the pipeline.</param>
/// <param name="gauges">The gauges.</param>
/// <param name="clock">The clock.</param>
public sealed class PlatformGaugesRefresh(RequestDelegate next, PlatformGauges gauges, TimeProvider clock)
{
    /// <summary>Refreshes on a scrape of <c>/metrics</c>, then goes on.</summary>
    public async Task InvokeAsync(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (context.Request.Path.Equals("/metrics", StringComparison.Ordinal))
        {
            await gauges.RefreshAsync(clock, context.RequestAborted).ConfigureAwait(false);
        }

        await next(context).ConfigureAwait(false);
    }
}
