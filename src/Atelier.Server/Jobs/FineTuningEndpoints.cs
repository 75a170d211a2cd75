using System.Globalization;
using System.Text.Json;
using Atelier.Catalog;
using Atelier.Cluster.Jobs;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Registry;
using Atelier.Server.Auth;
using Atelier.Server.Errors;
using Atelier.Server.Hosting;
using Atelier.Storage.Placement;
using Atelier.Training.Execution;
using Atelier.Training.Jobs;

namespace Atelier.Server.Jobs;

/// <summary><c>metadata</c> of a job, as Mistral's <c>JobMetadata</c>, with what curation did to the training data (Atelier's extension).</summary>
public sealed record JobMetadataObject(long? ExpectedDurationSeconds, double? Cost, string? CostCurrency, long? TrainTokensPerStep, long? TrainTokens, long? DataTokens, long? EstimatedStartTime, JobDataCuration? DataCuration);

/// <summary><c>hyperparameters</c> of a job as it will run.</summary>
public sealed record HyperparametersObject(int? TrainingSteps, double LearningRate, double? WeightDecay, double? WarmupFraction, double? Epochs, int? SeqLen, double? FimRatio);

/// <summary>An event of a job.</summary>
public sealed record JobEventObject(string Name, JsonElement? Data, long CreatedAt);

/// <summary>A checkpoint's metrics, as Mistral names them.</summary>
public sealed record CheckpointMetricsObject(double? TrainLoss, double? ValidLoss, double? ValidMeanTokenAccuracy);

/// <summary>A checkpoint of a job; <paramref name="Pruned"/> (Atelier's extension) says retention deleted its bytes, so it can no longer be restored.</summary>
public sealed record JobCheckpointObject(CheckpointMetricsObject Metrics, long StepNumber, long CreatedAt, bool Pruned);

/// <summary>A completion fine-tuning job, field for field as the SDK's <c>CompletionFineTuningJobDetails</c> (events and checkpoints only in details).</summary>
public sealed record JobObject
{
    /// <summary>Id.</summary>
    public required string Id { get; init; }

    /// <summary>Whether it starts once validated.</summary>
    public required bool AutoStart { get; init; }

    /// <summary>Base model.</summary>
    public required string Model { get; init; }

    /// <summary>Status.</summary>
    public required string Status { get; init; }

    /// <summary>Unix seconds.</summary>
    public required long CreatedAt { get; init; }

    /// <summary>Unix seconds.</summary>
    public required long ModifiedAt { get; init; }

    /// <summary>Training file ids.</summary>
    public required IReadOnlyList<string> TrainingFiles { get; init; }

    /// <summary>Validation file ids.</summary>
    public required IReadOnlyList<string> ValidationFiles { get; init; }

    /// <summary>Always <c>job</c>.</summary>
    public string Object => "job";

    /// <summary>The model it produced.</summary>
    public string? FineTunedModel { get; init; }

    /// <summary>Suffix.</summary>
    public string? Suffix { get; init; }

    /// <summary>Always empty: metrics stay on site.</summary>
    public IReadOnlyList<object> Integrations => [];

    /// <summary>Tokens trained so far.</summary>
    public long? TrainedTokens { get; init; }

    /// <summary>Validation's figures.</summary>
    public JobMetadataObject? Metadata { get; init; }

    /// <summary>Always <c>completion</c>.</summary>
    public string JobType => "completion";

    /// <summary>Hyperparameters.</summary>
    public required HyperparametersObject Hyperparameters { get; init; }

    /// <summary>Always empty.</summary>
    public IReadOnlyList<object> Repositories => [];

    /// <summary>Events, oldest first (details only).</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<JobEventObject>? Events { get; init; }

    /// <summary>Checkpoints, newest first (details only).</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public IReadOnlyList<JobCheckpointObject>? Checkpoints { get; init; }

    /// <summary>Why it failed (Atelier's addition).</summary>
    public string? Error { get; init; }
}

/// <summary>A page of jobs.</summary>
public sealed record JobList(IReadOnlyList<JobObject> Data, string Object, long Total);

/// <summary>Creating jobs and their wire form.</summary>
/// <param name="jobs">The job repository.</param>
/// <param name="fileRepository">Uploaded files, a job's inputs.</param>
/// <param name="datasets">Dataset versions, a job's other input.</param>
/// <param name="policies">Residency policies, resolved by name.</param>
/// <param name="locations">The configured locations: where a job may run.</param>
/// <param name="registry">The model registry: the base model.</param>
/// <param name="config">The installation's configuration: the checkpoint policy.</param>
/// <param name="clock">The clock.</param>
public sealed class JobRequests(
    IJobRepository jobs,
    IFileRepository fileRepository,
    IDatasetRepository datasets,
    PolicyCatalog policies,
    StorageLocations locations,
    ModelRegistry registry,
    AtelierConfig config,
    TimeProvider clock)
{
    /// <summary>
    /// Checks a create request against the catalog (the model exists and is a base model, each
    /// file exists, belongs to the workspace and has purpose <c>fine-tune</c>), and inserts the job.
    /// </summary>
    public async Task<JobRecord> CreateAsync(RequestCaller caller, FineTuningJobRequest request, CancellationToken cancel)
    {
        ArgumentNullException.ThrowIfNull(caller);
        ArgumentNullException.ThrowIfNull(request);
        request.Validate();
        var model = await registry.FindAsync(caller.WorkspaceId, request.Model!, cancel).ConfigureAwait(false)
            ?? throw new NotFoundException("model", request.Model!);
        if (model.Kind != ModelKind.Base)
        {
            throw new BadRequestException($"Model '{model.Id}' is a fine-tuned model; fine-tune its base model '{model.Root}' instead.");
        }

        var problems = new List<Problem>();
        if (request.RegisteredModelName is { } registeredName && await registry.FindBaseAsync(registeredName, cancel).ConfigureAwait(false) is not null)
        {
            // A base model's id is a registered name every workspace sees: a fine-tune under it would
            // hide it from this workspace's name@alias lookups.
            problems.Add(new Problem($"'registered_model_name' '{registeredName}' is a base model's name; choose another (e.g. '{registeredName}:{request.Suffix ?? "fine-tuned"}').", Field: "registered_model_name"));
            throw new ValidationFailedException(problems[0].Message, problems, 1, "invalid_request");
        }

        if (request.Hyperparameters?.SeqLen is { } seqLen && seqLen > model.MaxContextLength)
        {
            // Beyond the model's context the positions were never trained; the job would run
            // without ever producing a useful checkpoint.
            problems.Add(new Problem($"'seq_len' {seqLen} is longer than model '{model.Id}' supports ({model.MaxContextLength} tokens, its max_seq_len).", Field: "hyperparameters.seq_len"));
            throw new ValidationFailedException(problems[0].Message, problems, 1, "invalid_request");
        }

        var files = new List<FileRecord>();
        JobDataset? dataset = null;
        if (request.DatasetId is { } datasetId)
        {
            dataset = await JobDataset.ResolveAsync(datasets, caller.WorkspaceId, datasetId, cancel).ConfigureAwait(false);
            var tokenizer = Atelier.Data.Tokenization.ModelTokenizers.Load(await registry.ModelDirectoryAsync(model, cancel).ConfigureAwait(false));
            dataset.CheckFor(model.Id, tokenizer.Identity, request.Hyperparameters?.SeqLen);
        }

        for (var i = 0; i < (request.TrainingFiles?.Count ?? 0); i++)
        {
            await CheckAsync(request.TrainingFiles![i].FileId, $"training_files[{i}].file_id").ConfigureAwait(false);
        }

        for (var i = 0; i < (request.ValidationFiles?.Count ?? 0); i++)
        {
            await CheckAsync(request.ValidationFiles![i], $"validation_files[{i}]").ConfigureAwait(false);
        }

        if (problems.Count > 0)
        {
            throw new ValidationFailedException(problems[0].Message, problems, problems.Count, "invalid_request");
        }

        if (request.StartFrom is { } start)
        {
            var source = await jobs.GetAsync(caller.WorkspaceId, start.JobId, cancel).ConfigureAwait(false) ?? throw new NotFoundException("job", start.JobId);
            if (!(await jobs.CheckpointsAsync(source.Id, cancel).ConfigureAwait(false)).Any(c => c.StepNumber == start.Step && c.Retained))
            {
                throw new NotFoundException("checkpoint", $"{start.JobId}@{start.Step}");
            }
        }

        // Everything the job writes is at least as restricted as its data, its base model and
        // the checkpoint policy (never cloud-only).
        // A dataset's policy is already its files' (it follows lineage).
        var policy = Atelier.Core.Residency.ResidencyPolicy.DeriveName(files.Select(f => f.Policy).Append(dataset?.Record.Policy).Append(model.Policy).Append(config.Defaults.CheckpointPolicy));
        var resolved = policies.Resolve(policy);

        // The job runs where its data is: the dataset's shards, or the first training file.
        var location = dataset?.Record.LocationId ?? files[0].LocationId;
        var decision = resolved.Evaluate(locations.Describe(location), null);
        if (!decision.Allowed)
        {
            throw new PlacementRefusedException(resolved.Name, location, decision.Reason!);
        }

        var now = clock.GetUtcNow().ToUnixTimeSeconds();
        var job = new JobRecord
        {
            Id = Guid.NewGuid().ToString(),
            WorkspaceId = caller.WorkspaceId,
            Model = model.Id,
            Status = FineTuningStatus.Queued,
            AutoStart = request.AutoStart ?? true,
            RequestJson = JsonSerializer.Serialize(request, AtelierJson.Options),
            Suffix = request.Suffix,
            Policy = policy,
            LocationId = location,
            CreatedAt = now,
            ModifiedAt = now,
            CreatedBy = caller.Key.Id,
        };
        await jobs.InsertAsync(job, CancellationToken.None).ConfigureAwait(false);
        return job;

        async Task CheckAsync(string id, string field)
        {
            var file = await fileRepository.GetAsync(caller.WorkspaceId, id, cancel).ConfigureAwait(false) ?? throw new NotFoundException("file", id);
            if (file.Purpose != "fine-tune")
            {
                problems.Add(new Problem($"File '{id}' ({file.Filename}) has purpose '{file.Purpose}'; fine-tuning takes files uploaded with purpose 'fine-tune'.", Field: field));
            }
            else
            {
                files.Add(file);
            }
        }
    }

    /// <summary>The wire form of a job; with <paramref name="details"/>, its events and checkpoints too.</summary>
    public static async Task<JobObject> ToObjectAsync(IJobRepository jobs, IDatasetRepository datasets, JobRecord job, bool details, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(jobs);
        ArgumentNullException.ThrowIfNull(datasets);
        ArgumentNullException.ThrowIfNull(job);
        var request = JsonSerializer.Deserialize<FineTuningJobRequest>(job.RequestJson, AtelierJson.Options)!;
        var h = request.Hyperparameters ?? new CompletionHyperparameters();
        JobPlanRecord? plan = job.MetadataJson is { } m ? JsonSerializer.Deserialize<JobPlanRecord>(m, AtelierJson.Options) : null;
        var trainingFiles = request.DatasetId is { } datasetId
            ? await JobDataset.SourceFilesAsync(datasets, job.WorkspaceId, datasetId, cancellationToken).ConfigureAwait(false)
            : [.. (request.TrainingFiles ?? []).Select(f => f.FileId)];
        var events = details ? await jobs.EventsAsync(job.Id, cancellationToken).ConfigureAwait(false) : null;
        var checkpoints = details ? await jobs.CheckpointsAsync(job.Id, cancellationToken).ConfigureAwait(false) : null;
        return new JobObject
        {
            Id = job.Id,
            AutoStart = job.AutoStart,
            Model = job.Model,
            Status = job.Status,
            CreatedAt = job.CreatedAt,
            ModifiedAt = job.ModifiedAt,
            TrainingFiles = trainingFiles,
            ValidationFiles = request.ValidationFiles ?? [],
            FineTunedModel = job.FineTunedModel,
            Suffix = job.Suffix,
            TrainedTokens = job.TrainedTokens,
            Metadata = plan is null ? null : new JobMetadataObject(plan.ExpectedDurationSeconds, 0, "EUR", plan.Plan.TrainTokensPerStep, plan.TrainTokens, plan.DataTokens, null, JobDataCuration.From(job.Id, plan.DatasetId, plan.Counters)),
            Hyperparameters = new HyperparametersObject(
                plan?.Plan.TrainingSteps ?? h.TrainingSteps,
                h.LearningRate,
                h.WeightDecay,
                h.WarmupFraction,
                plan is null ? h.Epochs : Math.Round(plan.Epochs, 4),
                plan?.Plan.SeqLen ?? h.SeqLen,
                h.FimRatio),
            Error = job.Error,
            Events = events is null ? null : [.. events.Select(e => new JobEventObject(e.Name, e.DataJson is null ? null : JsonDocument.Parse(e.DataJson).RootElement.Clone(), e.CreatedAt))],
            Checkpoints = checkpoints is null
                ? null
                : [.. checkpoints.Select(c => new JobCheckpointObject(new CheckpointMetricsObject(c.TrainLoss, c.ValidLoss, c.ValidAccuracy), c.StepNumber, c.CreatedAt, !c.Retained))],
        };
    }
}

/// <summary>The Mistral-compatible fine-tuning jobs API.</summary>
public static class FineTuningEndpoints
{
    /// <summary>Maps <c>/v1/fine_tuning/jobs</c>.</summary>
    public static void MapFineTuningJobs(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/v1/fine_tuning/jobs").WithTags("Fine-tuning");

        api.MapPost("", async (HttpContext context, IDatasetRepository datasets, IJobRepository jobs, JobRequests requests, IGrainFactory grains) =>
        {
            var request = await ReadAsync<FineTuningJobRequest>(context).ConfigureAwait(false);
            var job = await requests.CreateAsync(ApiKeyAuthentication.Caller(context), request, context.RequestAborted).ConfigureAwait(false);

            // The job as created (QUEUED), as Mistral answers; validation starts right after.
            var created = await JobRequests.ToObjectAsync(jobs, datasets, job, details: false, context.RequestAborted).ConfigureAwait(false);
            await grains.GetGrain<IFineTuningJobGrain>(job.Id).SubmitAsync().ConfigureAwait(false);
            return Results.Json(created, AtelierJson.Options);
        }).WithSummary("Create a fine-tuning job: validated, then started when auto_start (the default).").WithName("createFineTuningJob").Reads<FineTuningJobRequest>().Produces<JobObject>().ProducesErrors(403, 422);

        api.MapGet("", async (HttpContext context, IJobRepository jobs, IDatasetRepository datasets) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var q = context.Request.Query;
            var page = Int(q["page"], "page", 0, int.MaxValue / 1000) ?? 0;
            var pageSize = Int(q["page_size"], "page_size", 1, 1000) ?? 100;
            var status = q["status"].ToString();
            if (status.Length > 0 && !FineTuningStatus.IsKnown(status))
            {
                throw new BadRequestException($"'status' {status} is not a job status.");
            }

            var filter = new JobFilter
            {
                Model = Text(q["model"]),
                CreatedAfter = Time(q["created_after"], "created_after"),
                CreatedBefore = Time(q["created_before"], "created_before"),
                CreatedBy = bool.TryParse(q["created_by_me"], out var mine) && mine ? caller.Key.Id : null,
                Status = Text(q["status"]),
                Suffix = Text(q["suffix"]),
            };
            if (Text(q["wandb_project"]) is not null || Text(q["wandb_name"]) is not null)
            {
                // No job has a W&B integration here: the filter matches nothing.
                return Results.Json(new JobList([], "list", 0), AtelierJson.Options);
            }

            var (list, total) = await jobs.ListAsync(caller.WorkspaceId, filter, page, pageSize, context.RequestAborted).ConfigureAwait(false);
            var objects = new List<JobObject>(list.Count);
            foreach (var job in list)
            {
                objects.Add(await JobRequests.ToObjectAsync(jobs, datasets, job, details: false, context.RequestAborted).ConfigureAwait(false));
            }

            return Results.Json(new JobList(objects, "list", total), AtelierJson.Options);
        }).WithSummary("List the workspace's jobs, newest first, with Mistral's filters and paging.").WithName("listFineTuningJobs").Produces<JobList>().Query("page", typeof(int), "Page number, from 0.").Query("page_size", typeof(int), "Jobs per page, 1 to 1000 (100).").Query("model", typeof(string), "Only jobs of this base model.").Query("created_after", typeof(DateTimeOffset), "Only jobs created after (ISO 8601).").Query("created_before", typeof(DateTimeOffset), "Only jobs created before (ISO 8601).").Query("created_by_me", typeof(bool), "Only jobs created with the caller's key.").Query("status", typeof(string), "Only jobs in this status (QUEUED, RUNNING, SUCCESS, ...).").Query("suffix", typeof(string), "Only jobs with this suffix.").Query("wandb_project", typeof(string), "W&B project (no job has one: matches nothing).").Query("wandb_name", typeof(string), "W&B run name (matches nothing).");

        api.MapGet("/{jobId}", async (HttpContext context, string jobId, IJobRepository jobs, IDatasetRepository datasets) =>
        {
            var job = await FindAsync(context, jobs, jobId).ConfigureAwait(false);
            return Results.Json(await JobRequests.ToObjectAsync(jobs, datasets, job, details: true, context.RequestAborted).ConfigureAwait(false), AtelierJson.Options);
        })
            .WithSummary("A job with its events and checkpoints.").WithName("getFineTuningJob").Produces<JobObject>();

        api.MapPost("/{jobId}/cancel", async (HttpContext context, string jobId, IJobRepository jobs, IDatasetRepository datasets, IGrainFactory grains) =>
        {
            var job = await FindAsync(context, jobs, jobId).ConfigureAwait(false);
            await grains.GetGrain<IFineTuningJobGrain>(job.Id).CancelAsync().ConfigureAwait(false);
            var now = await jobs.GetByIdAsync(job.Id, CancellationToken.None).ConfigureAwait(false);
            return Results.Json(await JobRequests.ToObjectAsync(jobs, datasets, now!, details: true, CancellationToken.None).ConfigureAwait(false), AtelierJson.Options);
        }).WithSummary("Cancel a job: at once when it is not training, else CANCELLATION_REQUESTED until the trainer stops.").WithName("cancelFineTuningJob").Produces<JobObject>().ProducesErrors(409);

        api.MapPost("/{jobId}/start", async (HttpContext context, string jobId, IJobRepository jobs, IDatasetRepository datasets, IGrainFactory grains) =>
        {
            var job = await FindAsync(context, jobs, jobId).ConfigureAwait(false);
            await grains.GetGrain<IFineTuningJobGrain>(job.Id).StartAsync().ConfigureAwait(false);
            var now = await jobs.GetByIdAsync(job.Id, CancellationToken.None).ConfigureAwait(false);
            return Results.Json(await JobRequests.ToObjectAsync(jobs, datasets, now!, details: true, CancellationToken.None).ConfigureAwait(false), AtelierJson.Options);
        }).WithSummary("Start a validated job that was created with auto_start false.").WithName("startFineTuningJob").Produces<JobObject>().ProducesErrors(409);

        // What curation did to a job's training data: the report, and every dropped example with
        // its reason. Fixed names only: nothing of the request reaches a path.
        var data = app.MapGroup("/api/v1/jobs").WithTags("Fine-tuning");
        data.MapGet("/{jobId}/data-report", (HttpContext context, string jobId, IJobRepository jobs, PlacementGuard guard) =>
            DataReportFileAsync(context, jobs, guard, jobId, "report.json", "application/json"))
            .WithSummary("The job's training data report: kept and dropped counts by reason, token counts, the first invalid lines.").WithName("getJobDataReport").ProducesBytes("application/json").ProducesErrors(507);
        data.MapGet("/{jobId}/data-report/dropped", (HttpContext context, string jobId, IJobRepository jobs, PlacementGuard guard) =>
            DataReportFileAsync(context, jobs, guard, jobId, "dropped.jsonl", "application/jsonl"))
            .WithSummary("Every training example curation dropped, one JSON line each, with its source line and reason.").WithName("listJobDroppedExamples").ProducesBytes("application/jsonl").ProducesErrors(507);
        data.MapGet("/{jobId}/data-report/issues", (HttpContext context, string jobId, IJobRepository jobs, PlacementGuard guard) =>
            DataReportFileAsync(context, jobs, guard, jobId, "issues.jsonl", "application/jsonl"))
            .WithSummary("Every invalid training line that was skipped, one JSON line each.").WithName("listJobDataIssues").ProducesBytes("application/jsonl").ProducesErrors(507);
    }

    private static async Task<IResult> DataReportFileAsync(HttpContext context, IJobRepository jobs, PlacementGuard guard, string jobId, string name, string contentType)
    {
        var job = await FindAsync(context, jobs, jobId).ConfigureAwait(false);
        var stream = await guard.OpenReadAsync(job.LocationId, $"job/{job.Id}/train-report/{name}", context.RequestAborted).ConfigureAwait(false);
        if (stream is null)
        {
            // Curation runs during validation: a job still queued has no report yet.
            throw new NotFoundException("data report for job", job.Id);
        }

        return Results.Stream(stream, contentType, name);
    }

    /// <summary>The caller's job, or 404.</summary>
    public static async Task<JobRecord> FindAsync(HttpContext context, IJobRepository jobs, string jobId)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(jobs);
        return await jobs.GetAsync(ApiKeyAuthentication.Caller(context).WorkspaceId, jobId, context.RequestAborted).ConfigureAwait(false) ?? throw new NotFoundException("job", jobId);
    }

    /// <summary>Reads a JSON body, with a 400 that says what is wrong with it.</summary>
    public static async Task<T> ReadAsync<T>(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        try
        {
            return await JsonSerializer.DeserializeAsync<T>(context.Request.Body, AtelierJson.Options, context.RequestAborted).ConfigureAwait(false)
                ?? throw new BadRequestException("The request body is empty; expected a JSON object.");
        }
        catch (JsonException e)
        {
            throw ErrorMapping.Malformed(e);
        }
    }

    /// <summary>Reads a JSON body that may be absent (null then).</summary>
    public static async Task<T?> ReadOptionalAsync<T>(HttpContext context)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(context);
        using var reader = new StreamReader(context.Request.Body);
        var text = await reader.ReadToEndAsync(context.RequestAborted).ConfigureAwait(false);
        if (string.IsNullOrWhiteSpace(text))
        {
            return null;
        }

        try
        {
            return JsonSerializer.Deserialize<T>(text, AtelierJson.Options);
        }
        catch (JsonException e)
        {
            throw ErrorMapping.Malformed(e);
        }
    }

    private static string? Text(Microsoft.Extensions.Primitives.StringValues value) => value.Count == 0 || value[0] is not { Length: > 0 } s ? null : s;

    private static int? Int(Microsoft.Extensions.Primitives.StringValues value, string name, int min, int max)
    {
        if (Text(value) is not { } s)
        {
            return null;
        }

        return int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n >= min && n <= max
            ? n
            : throw new BadRequestException($"'{name}' must be an integer between {min} and {max}, not '{s}'.");
    }

    private static long? Time(Microsoft.Extensions.Primitives.StringValues value, string name)
    {
        if (Text(value) is not { } s)
        {
            return null;
        }

        if (long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var seconds))
        {
            return seconds;
        }

        return DateTimeOffset.TryParse(s, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at)
            ? at.ToUnixTimeSeconds()
            : throw new BadRequestException($"'{name}' must be a date-time (ISO 8601) or Unix seconds, not '{s}'.");
    }
}
