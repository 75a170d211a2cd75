using System.Text.Json;
using Atelier.Catalog;
using Atelier.Cluster.Jobs;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Registry;
using Atelier.Server.Auth;
using Atelier.Server.Errors;
using Atelier.Server.Hosting;
using Atelier.Training.Checkpoints;
using Atelier.Training.Jobs;

namespace Atelier.Server.Jobs;

/// <summary>A committed checkpoint as <c>/api/v1/checkpoints</c> shows it.</summary>
/// <param name="Id">The store's id.</param>
/// <param name="JobId">The job that wrote it.</param>
/// <param name="StepNumber">Its step.</param>
/// <param name="CreatedAt">Unix seconds.</param>
/// <param name="Metrics">Train loss, validation loss and token accuracy.</param>
/// <param name="Policy">The residency policy it was placed under.</param>
/// <param name="Locations">Where complete copies are.</param>
/// <param name="Bytes">Logical size.</param>
/// <param name="Entries">Its tensors and blobs (details only).</param>
public sealed record CheckpointObject(
    string Id, string JobId, long StepNumber, long CreatedAt, CheckpointMetricsObject Metrics, string Policy,
    IReadOnlyList<string> Locations, long Bytes, IReadOnlyList<CheckpointEntryObject>? Entries);

/// <summary>One entry of a checkpoint.</summary>
/// <param name="Name">Its name.</param>
/// <param name="Kind">Tensor or blob.</param>
/// <param name="Dtype">Element type of a tensor.</param>
/// <param name="Shape">Shape of a tensor.</param>
/// <param name="Bytes">Length.</param>
/// <param name="Chunks">Content-addressed chunks it is made of.</param>
public sealed record CheckpointEntryObject(string Name, string Kind, string? Dtype, IReadOnlyList<long>? Shape, long Bytes, int Chunks);

/// <summary>Overrides for a job restored from a checkpoint.</summary>
public sealed record RestoreCheckpointRequest
{
    /// <summary>Steps of the new job (default: the source job's).</summary>
    public int? TrainingSteps { get; init; }

    /// <summary>Suffix of the new job's model.</summary>
    public string? Suffix { get; init; }

    /// <summary>Start once validated (default true).</summary>
    public bool? AutoStart { get; init; }
}

/// <summary>A list of checkpoints.</summary>
/// <param name="Data">The checkpoints, newest first for each job.</param>
/// <param name="Object">Always <c>list</c>.</param>
/// <param name="Total">How many.</param>
public sealed record CheckpointList(IReadOnlyList<CheckpointObject> Data, string Object, int Total);

/// <summary>The platform's checkpoint API: list, get, restore into a new job, delete.</summary>
public static class CheckpointEndpoints
{
    /// <summary>Maps <c>/api/v1/checkpoints</c>.</summary>
    public static void MapCheckpoints(this IEndpointRouteBuilder app)
    {
        var group = app.MapGroup("/api/v1/checkpoints").WithTags("Checkpoints");

        group.MapGet("", async (HttpContext context, IJobRepository jobs, CheckpointStore store) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var jobId = context.Request.Query["job_id"].ToString();
            IReadOnlyList<JobRecord> listed = jobId.Length > 0
                ? [await FineTuningEndpoints.FindAsync(context, jobs, jobId).ConfigureAwait(false)]
                : (await jobs.ListAsync(caller.WorkspaceId, new JobFilter(), 0, 1000, context.RequestAborted).ConfigureAwait(false)).Page;
            var list = new List<CheckpointObject>();
            foreach (var job in listed)
            {
                foreach (var info in (await store.ListAsync(job.Id, context.RequestAborted).ConfigureAwait(false)).OrderByDescending(i => i.Step))
                {
                    list.Add(ToObject(info, details: false));
                }
            }

            return Results.Json(new { data = list, @object = "list", total = list.Count }, AtelierJson.Options);
        }).WithSummary("Committed checkpoints of one job (job_id) or of every job of the workspace.").WithName("listCheckpoints").Produces<CheckpointList>().Query("job_id", typeof(string), "Only this job's checkpoints.");

        group.MapGet("/{jobId}/{step:long}", async (HttpContext context, string jobId, long step, IJobRepository jobs, CheckpointStore store) =>
        {
            var job = await FineTuningEndpoints.FindAsync(context, jobs, jobId).ConfigureAwait(false);
            var info = await store.GetAsync(job.Id, step, context.RequestAborted).ConfigureAwait(false)
                ?? throw new NotFoundException("checkpoint", CheckpointIds.Of(job.Id, step));
            return Results.Json(ToObject(info, details: true), AtelierJson.Options);
        }).WithSummary("A checkpoint with its entries and locations.").WithName("getCheckpoint").Produces<CheckpointObject>();

        group.MapPost("/{jobId}/{step:long}/restore", async (HttpContext context, string jobId, long step, IDatasetRepository datasets, IJobRepository jobs, JobRequests requests, CheckpointStore store, IGrainFactory grains) =>
        {
            var source = await FineTuningEndpoints.FindAsync(context, jobs, jobId).ConfigureAwait(false);
            _ = await store.GetAsync(source.Id, step, context.RequestAborted).ConfigureAwait(false)
                ?? throw new NotFoundException("checkpoint", CheckpointIds.Of(source.Id, step));
            var overrides = await FineTuningEndpoints.ReadOptionalAsync<RestoreCheckpointRequest>(context).ConfigureAwait(false) ?? new RestoreCheckpointRequest();
            var request = JsonSerializer.Deserialize<FineTuningJobRequest>(source.RequestJson, AtelierJson.Options)!;
            request = request with
            {
                AutoStart = overrides.AutoStart ?? true,
                Suffix = overrides.Suffix ?? request.Suffix,
                Hyperparameters = overrides.TrainingSteps is { } steps ? request.Hyperparameters! with { TrainingSteps = steps, Epochs = null } : request.Hyperparameters,
                StartFrom = new CheckpointStart(source.Id, step),
            };
            if (request.Hyperparameters?.TrainingSteps is { } total && total <= step)
            {
                throw new ValidationFailedException(
                    $"The new job must train past the checkpoint's step {step}; 'training_steps' is {total}.",
                    [new Problem($"must be greater than {step}", Field: "training_steps")],
                    1);
            }

            var job = await requests.CreateAsync(ApiKeyAuthentication.Caller(context), request, context.RequestAborted).ConfigureAwait(false);
            await grains.GetGrain<IFineTuningJobGrain>(job.Id).SubmitAsync().ConfigureAwait(false);
            var created = await jobs.GetByIdAsync(job.Id, CancellationToken.None).ConfigureAwait(false);
            return Results.Json(await JobRequests.ToObjectAsync(jobs, datasets, created!, details: false, CancellationToken.None).ConfigureAwait(false), AtelierJson.Options, statusCode: StatusCodes.Status201Created);
        }).WithSummary("Create a new job that starts from this checkpoint (same data and hyperparameters unless overridden).").WithName("restoreCheckpoint").WithRequestBody<RouteHandlerBuilder, RestoreCheckpointRequest>("application/json", required: false).Produces<JobObject>(StatusCodes.Status201Created).ProducesErrors(403, 422);

        group.MapDelete("/{jobId}/{step:long}", async (HttpContext context, string jobId, long step, IJobRepository jobs, ILineageRepository lineage, CheckpointStore store) =>
        {
            var job = await FineTuningEndpoints.FindAsync(context, jobs, jobId).ConfigureAwait(false);
            if (job.Status is FineTuningStatus.Running or FineTuningStatus.Queued && job.Started)
            {
                throw new ConflictException($"Job '{job.Id}' is {job.Status}; its checkpoints are deleted by retention while it trains.");
            }

            // A restore that has not run yet starts from this checkpoint: deleting it would fail that job later.
            var pending = await lineage.PendingFromCheckpointAsync(job.WorkspaceId, job.Id, step, context.RequestAborted).ConfigureAwait(false);
            if (pending.Count > 0)
            {
                throw ConflictException.DerivedFrom("checkpoint", CheckpointIds.Of(job.Id, step), pending);
            }

            if (!await store.DeleteAsync(job.Id, step, context.RequestAborted).ConfigureAwait(false))
            {
                throw new NotFoundException("checkpoint", CheckpointIds.Of(job.Id, step));
            }

            // The chunks are gone: record it even if the client has left.
            await jobs.MarkCheckpointsDeletedAsync(job.Id, [step], CancellationToken.None).ConfigureAwait(false);
            return Results.Json(new { id = CheckpointIds.Of(job.Id, step), @object = "checkpoint", deleted = true }, AtelierJson.Options);
        }).WithSummary("Delete a checkpoint (its chunks are freed once no checkpoint refers to them).").WithName("deleteCheckpoint").Produces<DeletedObject>().ProducesErrors(409);
    }

    private static CheckpointObject ToObject(CheckpointInfo info, bool details) => new(
        info.Id,
        info.JobId,
        info.Step,
        info.CreatedAt.ToUnixTimeSeconds(),
        new CheckpointMetricsObject(info.Metrics.TrainLoss, info.Metrics.ValidLoss, info.Metrics.ValidMeanTokenAccuracy),
        info.PolicyName,
        info.Locations,
        info.TotalBytes,
        details ? [.. info.Entries.Select(e => new CheckpointEntryObject(e.Name, e.Kind.ToString().ToLowerInvariant(), e.DType, e.Shape, e.Length, e.Chunks.Count))] : null);
}
