using Atelier.Core.Errors;

namespace Atelier.Catalog;

/// <summary>The catalog row of a fine-tuning job.</summary>
public sealed record JobRecord
{
    /// <summary>Id, a UUID as Mistral's are.</summary>
    public required string Id { get; init; }

    /// <summary>Owning workspace.</summary>
    public required string WorkspaceId { get; init; }

    /// <summary>The base model's id.</summary>
    public required string Model { get; init; }

    /// <summary>Mistral's status name: QUEUED, VALIDATING, VALIDATED, RUNNING, SUCCESS, FAILED, FAILED_VALIDATION, CANCELLATION_REQUESTED, CANCELLED.</summary>
    public required string Status { get; init; }

    /// <summary>Whether the job was started (by <c>auto_start</c> or <c>/start</c>): a QUEUED job that is started waits for a slot.</summary>
    public bool Started { get; init; }

    /// <summary>Whether it starts by itself once validated.</summary>
    public required bool AutoStart { get; init; }

    /// <summary>The create request as the API received it (JSON).</summary>
    public required string RequestJson { get; init; }

    /// <summary>The suffix of the fine-tuned model's name.</summary>
    public string? Suffix { get; init; }

    /// <summary>The id of the model the job produced.</summary>
    public string? FineTunedModel { get; init; }

    /// <summary>Tokens trained on so far.</summary>
    public long? TrainedTokens { get; init; }

    /// <summary>Validation's figures and the job's plan (JSON).</summary>
    public string? MetadataJson { get; init; }

    /// <summary>The residency policy of everything the job writes.</summary>
    public required string Policy { get; init; }

    /// <summary>Where its data and first checkpoint copy go.</summary>
    public required string LocationId { get; init; }

    /// <summary>The node it was placed on.</summary>
    public string? Node { get; init; }

    /// <summary>How many times it was placed on a slot (more than one after a restart).</summary>
    public int Attempt { get; init; }

    /// <summary>Why it failed.</summary>
    public string? Error { get; init; }

    /// <summary>Unix seconds.</summary>
    public required long CreatedAt { get; init; }

    /// <summary>Unix seconds.</summary>
    public required long ModifiedAt { get; init; }

    /// <summary>The key that asked for it.</summary>
    public required string CreatedBy { get; init; }
}

/// <summary>An event in a job's history.</summary>
public sealed record JobEventRecord(long Seq, string Name, string? DataJson, long CreatedAt);

/// <summary>A checkpoint in a job's history, with its metrics; <see cref="Retained"/> is false once retention deleted it.</summary>
public sealed record JobCheckpointRecord(long StepNumber, string CheckpointId, double? TrainLoss, double? ValidLoss, double? ValidAccuracy, long CreatedAt, bool Retained);

/// <summary>Filters of the job list, as Mistral's <c>GET /v1/fine_tuning/jobs</c> takes them.</summary>
public sealed record JobFilter
{
    /// <summary>Only jobs on this base model.</summary>
    public string? Model { get; init; }

    /// <summary>Only jobs created after (Unix seconds).</summary>
    public long? CreatedAfter { get; init; }

    /// <summary>Only jobs created before (Unix seconds).</summary>
    public long? CreatedBefore { get; init; }

    /// <summary>Only jobs created by this key.</summary>
    public string? CreatedBy { get; init; }

    /// <summary>Only jobs in this status.</summary>
    public string? Status { get; init; }

    /// <summary>Only jobs with this suffix.</summary>
    public string? Suffix { get; init; }
}

/// <summary>
/// Fine-tuning jobs with their events and checkpoints. Status changes are compare-and-set on the
/// current status, so the API, the job's grain and a worker racing on one job cannot undo each
/// other's transitions.
/// </summary>
public interface IJobRepository
{
    /// <summary>Adds a job (not started, attempt 0) with its first <c>status-updated</c> event, atomically.</summary>
    /// <exception cref="ConflictException">The row breaks a catalog constraint (an unknown workspace, a taken id).</exception>
    Task InsertAsync(JobRecord job, CancellationToken cancellationToken = default);

    /// <summary>The job of the workspace, or null.</summary>
    Task<JobRecord?> GetAsync(string workspaceId, string id, CancellationToken cancellationToken = default);

    /// <summary>The job by id alone, for the scheduler and workers.</summary>
    Task<JobRecord?> GetByIdAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>A page of the workspace's jobs, newest first, and how many match in all.</summary>
    Task<JobPage> ListAsync(string workspaceId, JobFilter filter, int page, int pageSize, CancellationToken cancellationToken = default);

    /// <summary>Jobs that are not in a final status, oldest first: what a restarted server must pick up again.</summary>
    Task<IReadOnlyList<JobRecord>> UnfinishedAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Moves a job from one of <paramref name="from"/> to <paramref name="to"/>, recording a
    /// <c>status-updated</c> event (with the error, when given); false (and nothing written) when the
    /// job was not in one of them. Of two transitions racing from the same status, exactly one wins.
    /// </summary>
    Task<bool> TransitionAsync(string id, IReadOnlyCollection<string> from, string to, string? error = null, CancellationToken cancellationToken = default);

    /// <summary>Marks a job started (by <c>auto_start</c> or <c>/start</c>).</summary>
    Task MarkStartedAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>Records the slot a job was placed on and counts the attempt.</summary>
    Task MarkPlacedAsync(string id, string node, CancellationToken cancellationToken = default);

    /// <summary>Stores validation's figures and the job's plan (JSON).</summary>
    Task SetMetadataAsync(string id, string metadataJson, CancellationToken cancellationToken = default);

    /// <summary>Records a committed checkpoint (replacing one of the same step) and the tokens trained so far, atomically.</summary>
    Task AddCheckpointAsync(string id, JobCheckpointRecord checkpoint, long trainedTokens, CancellationToken cancellationToken = default);

    /// <summary>Marks checkpoints that retention deleted.</summary>
    Task MarkCheckpointsDeletedAsync(string id, IEnumerable<long> steps, CancellationToken cancellationToken = default);

    /// <summary>A job's checkpoints, newest (highest step) first.</summary>
    Task<IReadOnlyList<JobCheckpointRecord>> CheckpointsAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>Appends an event (not a status change) to a job's history.</summary>
    Task AddEventAsync(string id, string name, string? dataJson, CancellationToken cancellationToken = default);

    /// <summary>A job's events, oldest first, numbered from 1 in the order they were recorded.</summary>
    Task<IReadOnlyList<JobEventRecord>> EventsAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>Sets the fine-tuned model's id and the tokens trained, as the job succeeds.</summary>
    Task SetResultAsync(string id, string fineTunedModel, long trainedTokens, CancellationToken cancellationToken = default);
}

/// <summary>A page of the job list.</summary>
/// <param name="Page">The jobs of the page, newest first.</param>
/// <param name="Total">How many match in all.</param>
public sealed record JobPage(IReadOnlyList<JobRecord> Page, long Total);
