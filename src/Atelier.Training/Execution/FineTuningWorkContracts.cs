using Atelier.Catalog;
using Atelier.Core.Topology;
using Atelier.Data.Building;
using Atelier.Storage.Placement;

namespace Atelier.Training.Execution;

/// <summary>
/// The work behind the job grains, done by the node that hosts them: validation and training run on
/// their own threads, never inside a grain turn, and report back through <see cref="IFineTuningReports"/>.
/// </summary>
/// <remarks>Defined here, below the cluster, so that the cluster's grains drive it without Training knowing about grains.</remarks>
public interface IFineTuningWork
{
    /// <summary>Starts validating a job in the background; ends with <see cref="IFineTuningReports.ValidationFinishedAsync"/>.</summary>
    void StartValidation(string jobId);

    /// <summary>Starts training a job in the background; ends with <see cref="IFineTuningReports.RunFinishedAsync"/>.</summary>
    void StartTraining(string jobId, string node);

    /// <summary>Cancels a job's validation or training, if running here.</summary>
    void Cancel(string jobId);

    /// <summary>The node that holds the job's data, for placement.</summary>
    Task<string?> DataNodeAsync(string jobId);
}

/// <summary>How a training attempt ended.</summary>
public enum TrainingEnd
{
    /// <summary>Trained to the last step; the model is registered.</summary>
    Succeeded,

    /// <summary>Failed; the error says why.</summary>
    Failed,

    /// <summary>Stopped by a cancel.</summary>
    Cancelled,

    /// <summary>Stopped because the node is shutting down: the job runs again from its last checkpoint.</summary>
    Interrupted,
}

/// <summary>Where <see cref="FineTuningWork"/> reports the end of its work: the job's grain, in a cluster.</summary>
public interface IFineTuningReports
{
    /// <summary>A job's validation ended; <paramref name="error"/> is null when it passed.</summary>
    Task ValidationFinishedAsync(string jobId, string? error);

    /// <summary>A job's training attempt ended (never called for <see cref="TrainingEnd.Interrupted"/>: the job resumes on the next start).</summary>
    Task RunFinishedAsync(string jobId, TrainingEnd end, string? error);
}

/// <summary>Settings of <see cref="FineTuningWork"/>.</summary>
public sealed record FineTuningWorkOptions
{
    /// <summary>The node-local directory under which each job stages its build and adapter (<c>&lt;dir&gt;/&lt;job id&gt;</c>).</summary>
    public required string StagingDirectory { get; init; }

    /// <summary>The largest fraction of the examples curation may drop before validation fails the job.</summary>
    public required double MaxCurationDropFraction { get; init; }

    /// <summary>The node-local directory of the jobs' per-step metrics (<see cref="JobMetricsLog"/>: <c>&lt;dir&gt;/&lt;job id&gt;.jsonl</c>).</summary>
    public required string MetricsDirectory { get; init; }

    /// <summary>
    /// In a cluster, the location every node reads and writes (<c>cluster.shared_location</c>, e.g. a
    /// Ceph RGW bucket): a job's data placed on one node's drive gets a second copy there, so that
    /// the job can resume on another node; null in the embedded mode.
    /// </summary>
    public string? SharedLocation { get; init; }
}

/// <summary>The catalog objects <see cref="FineTuningWork"/> reads and records in.</summary>
/// <param name="Jobs">Jobs: their requests, plans, events, checkpoints and results.</param>
/// <param name="Files">Uploaded files, the jobs' inputs.</param>
/// <param name="Datasets">Dataset versions a job may train on.</param>
/// <param name="Keys">Workspaces, whose names the audit events carry.</param>
/// <param name="Policies">Residency policies, resolved by name.</param>
public sealed record FineTuningCatalog(IJobRepository Jobs, IFileRepository Files, IDatasetRepository Datasets, ApiKeyStore Keys, PolicyCatalog Policies);

/// <summary>Where a job's data lives and how it is written.</summary>
/// <param name="Locations">The storage locations.</param>
/// <param name="Guard">The placement guard, the only write path.</param>
/// <param name="Topology">Sites, racks and nodes, to find the node next to a location.</param>
public sealed record FineTuningStorage(StorageLocations Locations, PlacementGuard Guard, TopologyMap Topology);

/// <summary>What curation kept and dropped of a job's training data, and where the full report is.</summary>
/// <param name="ExamplesRead">Valid training examples read.</param>
/// <param name="ExamplesKept">Examples the job trains on.</param>
/// <param name="ExamplesDropped">Examples dropped by curation.</param>
/// <param name="DroppedByReason">Dropped examples by reason (<c>exact_duplicate</c>, <c>near_duplicate</c>, <c>contaminated</c>, <c>empty</c>, <c>quality:RULE</c>).</param>
/// <param name="InvalidSamples">Invalid lines skipped.</param>
/// <param name="TokensKept">Tokens of the kept examples.</param>
/// <param name="TrainedTokensKept">Of those, the tokens with loss (assistant turns).</param>
/// <param name="Report">The report: counters, the first issues, and links to every dropped example with its reason.</param>
public sealed record JobDataCuration(long ExamplesRead, long ExamplesKept, long ExamplesDropped, IReadOnlyDictionary<string, long> DroppedByReason, long InvalidSamples, long TokensKept, long TrainedTokensKept, string Report)
{
    /// <summary>The curation figures of a job's training dataset: its own, or the dataset version's it trains on.</summary>
    public static JobDataCuration From(string jobId, string? datasetId, DatasetCounters counters)
    {
        ArgumentNullException.ThrowIfNull(counters);
        return new JobDataCuration(
            counters.ExamplesRead,
            counters.ExamplesKept,
            counters.ExamplesDropped,
            counters.DroppedByReason(),
            counters.Issues,
            counters.Tokens,
            counters.TrainedTokens,
            datasetId is null ? $"/api/v1/jobs/{jobId}/data-report" : $"/api/v1/datasets/{datasetId}/files/report.json");
    }
}
