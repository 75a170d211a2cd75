namespace Atelier.Cluster.Jobs;

/// <summary>How a training attempt ended.</summary>
[GenerateSerializer]
public enum RunEnd
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

/// <summary>A placement the scheduler made.</summary>
/// <param name="JobId">The job.</param>
/// <param name="Node">Its node.</param>
[GenerateSerializer]
public sealed record Placement([property: Id(0)] string JobId, [property: Id(1)] string Node);

/// <summary>What the scheduler holds now.</summary>
/// <param name="Nodes">Worker nodes, their slots and load.</param>
/// <param name="Queue">Jobs waiting for a slot, in order.</param>
/// <param name="Running">Jobs on slots.</param>
[GenerateSerializer]
public sealed record SchedulerState(
    [property: Id(0)] IReadOnlyList<NodeSlots> Nodes,
    [property: Id(1)] IReadOnlyList<string> Queue,
    [property: Id(2)] IReadOnlyList<Placement> Running);

/// <summary>
/// One grain per fine-tuning job (keyed by its id): it owns the job's state machine, so the API,
/// validation, the scheduler and the trainer, which all move a job on, are serialised through it.
/// The catalog row is the durable state; the grain holds nothing that a restart would lose.
/// </summary>
public interface IFineTuningJobGrain : IGrainWithStringKey
{
    /// <summary>The job was created (QUEUED): validate it.</summary>
    Task SubmitAsync();

    /// <summary>Validation ended: with an error (FAILED_VALIDATION) or not (VALIDATED).</summary>
    Task ValidationFinishedAsync(string? error);

    /// <summary><c>POST /start</c>: start a validated job, or mark a job still validating to start when validated.</summary>
    Task StartAsync();

    /// <summary><c>POST /cancel</c>.</summary>
    Task CancelAsync();

    /// <summary>The scheduler placed the job on a node.</summary>
    Task PlacedAsync(string node);

    /// <summary>The trainer's attempt ended.</summary>
    Task RunFinishedAsync(RunEnd end, string? error);

    /// <summary>
    /// After a restart of <paramref name="node"/>: pick the job up again from its catalog status. A
    /// job training on another node that is alive is left to it.
    /// </summary>
    Task RecoverAsync(string node);

    /// <summary>
    /// Membership declared <paramref name="node"/> dead: if the job was training there, it goes back
    /// in the queue and resumes on another node from its newest checkpoint a live node can read.
    /// </summary>
    Task NodeLostAsync(string node);
}

/// <summary>
/// The cluster's one scheduler (key 0): it places started jobs on worker slots, nearest to their
/// data first (<see cref="SlotPlacement"/>), and queues them, first come first served, while no
/// slot is free.
/// </summary>
public interface IJobSchedulerGrain : IGrainWithIntegerKey
{
    /// <summary>A worker node offers <paramref name="slots"/> training slots.</summary>
    Task RegisterNodeAsync(string node, int slots);

    /// <summary>Queues a job for a slot; <paramref name="dataNode"/> holds its data.</summary>
    Task SubmitAsync(string jobId, string? dataNode);

    /// <summary>Takes a queued job off the queue (it was cancelled).</summary>
    Task WithdrawAsync(string jobId);

    /// <summary>A job left its slot.</summary>
    Task ReleaseAsync(string jobId);

    /// <summary>Membership declared <paramref name="node"/> dead: its slots are gone and its jobs no longer hold them.</summary>
    Task NodeLostAsync(string node);

    /// <summary>Nodes, queue and placements.</summary>
    Task<SchedulerState> GetStateAsync();
}

/// <summary>
/// A worker node's agent (keyed by node name, activated on that node's silo): it starts and
/// cancels training attempts on the node's slots. Bulk bytes never pass through it.
/// </summary>
public interface INodeWorkerGrain : IGrainWithStringKey
{
    /// <summary>Starts training the job on this node; returns at once.</summary>
    Task RunAsync(string jobId);

    /// <summary>Starts validating the job (building its data) on this node, next to the job's location; returns at once.</summary>
    Task ValidateAsync(string jobId);

    /// <summary>Asks a running attempt to stop.</summary>
    Task CancelAsync(string jobId);

    /// <summary>Where this node serves its own drives' blobs to the other nodes (HTTP), and the token it asks for.</summary>
    Task<NodeBlobAccess> BlobEndpointAsync();

    /// <summary>Checks this node's hash-chained audit log.</summary>
    Task<NodeAuditCheck> VerifyAuditAsync();

    /// <summary>What this node serves now: the base models it holds, the fine-tuned ones it served, and its engines' queues (no request data).</summary>
    Task<IReadOnlyList<NodeHeldModel>> ServingLoadAsync();
}

/// <summary>A base model a node holds for serving, as it publishes it to the other nodes' routers.</summary>
/// <param name="BaseModel">The base model's id.</param>
/// <param name="Served">The fine-tuned models of that base it served.</param>
/// <param name="Running">Sequences in its running batches.</param>
/// <param name="Waiting">Sequences waiting to be admitted.</param>
/// <param name="MaxRunning">Its batch limit.</param>
[GenerateSerializer]
public sealed record NodeHeldModel(
    [property: Id(0)] string BaseModel,
    [property: Id(1)] IReadOnlyList<string> Served,
    [property: Id(2)] int Running,
    [property: Id(3)] int Waiting,
    [property: Id(4)] int MaxRunning);

/// <summary>What this node serves now, for <see cref="INodeWorkerGrain.ServingLoadAsync"/>; the host gives the serving router's view.</summary>
public interface INodeServingLoad
{
    /// <summary>The base models held here, with what they served and their queues.</summary>
    IReadOnlyList<NodeHeldModel> Current();
}

/// <summary>A node that serves nothing (no serving router in the host): publishes no models.</summary>
public sealed class NoServingLoad : INodeServingLoad
{
    /// <inheritdoc />
    public IReadOnlyList<NodeHeldModel> Current() => [];
}

/// <summary>A node's blob endpoint: only the address and a token travel in the grain message, never the bytes.</summary>
/// <param name="BaseAddress">The node's HTTP base address.</param>
/// <param name="Token">The bearer token its blob endpoint accepts.</param>
[GenerateSerializer]
public sealed record NodeBlobAccess([property: Id(0)] string BaseAddress, [property: Id(1)] string Token);

/// <summary>The check of one node's audit chain.</summary>
/// <param name="Node">The node.</param>
/// <param name="Valid">Whether its chain verifies (false too when it could not be reached).</param>
/// <param name="Events">Events checked.</param>
/// <param name="Reason">Why it does not verify, or why it could not be checked.</param>
/// <param name="HeadHash">The hash of its last event (empty when not reached).</param>
/// <param name="Reachable">Whether the node answered.</param>
[GenerateSerializer]
public sealed record NodeAuditCheck(
    [property: Id(0)] string Node,
    [property: Id(1)] bool Valid,
    [property: Id(2)] long Events,
    [property: Id(3)] string? Reason,
    [property: Id(4)] string HeadHash,
    [property: Id(5)] bool Reachable = true);
