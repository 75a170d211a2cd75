using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Nodes;
using Atelier.Catalog;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Core.Topology;
using Atelier.Data.Building;
using Atelier.Data.Readers;
using Atelier.Data.Shards;
using Atelier.Data.Tokenization;
using Atelier.Registry;
using Atelier.Storage.Placement;
using Atelier.Training.Checkpoints;
using Atelier.Training.Datasets;
using Atelier.Training.Jobs;
using Atelier.Training.Loading;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Atelier.Training.Execution;

/// <summary>A file of a job's dataset as placed through the guard.</summary>
/// <param name="Key">Its blob key.</param>
/// <param name="Name">Its path within the dataset version (the data loader's fingerprint uses it, so it must not name the job).</param>
/// <param name="Rows">Windows it holds.</param>
/// <param name="Sha256">Its content hash, from the dataset manifest.</param>
public sealed record JobShard(string Key, string Name, long Rows, string Sha256);

/// <summary>What validation fixed for a job, stored as its <c>metadata_json</c>.</summary>
public sealed record JobPlanRecord
{
    /// <summary>The trainer's plan.</summary>
    public required FineTuningPlan Plan { get; init; }

    /// <summary>Tokens in the training data.</summary>
    public required long DataTokens { get; init; }

    /// <summary>Tokens the job trains on.</summary>
    public required long TrainTokens { get; init; }

    /// <summary>Estimated duration.</summary>
    public required long ExpectedDurationSeconds { get; init; }

    /// <summary>Passes over the data.</summary>
    public required double Epochs { get; init; }

    /// <summary>The training shards, in order.</summary>
    public required IReadOnlyList<JobShard> TrainingShards { get; init; }

    /// <summary>The validation shards.</summary>
    public required IReadOnlyList<JobShard> ValidationShards { get; init; }

    /// <summary>The training pipeline's counters (kept, duplicates, contaminated, invalid).</summary>
    public required DatasetCounters Counters { get; init; }

    /// <summary>The dataset version trained on, when the job named one instead of files.</summary>
    public string? DatasetId { get; init; }

    /// <summary>
    /// Where the job's shards were placed, in the order they are read: the job's location (or, when
    /// it was validated on another node than its location's, the shared one), then the copy on the
    /// cluster's shared location that lets the job resume on another node. Null for records written
    /// before there were copies: the job's location alone.
    /// </summary>
    public IReadOnlyList<string>? DataLocations { get; init; }

}

/// <summary>
/// The node-local work behind the job grains: validation builds a job's datasets with the base
/// model's own tokeniser and places them through the guard under <c>job/&lt;id&gt;/</c>; training
/// runs <see cref="FineTuningRunner"/> on a dedicated thread, records each durable checkpoint,
/// and on success places the adapter and registers the fine-tuned model. Both report back to the
/// job's grain; neither runs inside a grain turn.
/// </summary>
/// <param name="options">Where it stages and how much curation may drop.</param>
/// <param name="catalog">The catalog objects it reads and records in.</param>
/// <param name="storage">The locations, the guard and the topology the job's data lives in.</param>
/// <param name="registry">The model registry: base models, and the fine-tuned model a run registers.</param>
/// <param name="checkpoints">The checkpoint store.</param>
/// <param name="metrics">Where each step's metrics go.</param>
/// <param name="reports">Where validation and training report their end (the job's grain).</param>
/// <param name="lifetime">The host's lifetime: stopping interrupts the work, which resumes on the next start.</param>
/// <param name="clock">The clock.</param>
/// <param name="logger">The log.</param>
public sealed partial class FineTuningWork(
    FineTuningWorkOptions options,
    FineTuningCatalog catalog,
    FineTuningStorage storage,
    ModelRegistry registry,
    CheckpointStore checkpoints,
    JobMetricsLog metrics,
    IFineTuningReports reports,
    IHostApplicationLifetime lifetime,
    TimeProvider clock,
    ILogger<FineTuningWork> logger) : IFineTuningWork
{
    /// <summary>The meter of the training metrics: the host's own, so they are exported with the rest.</summary>
    public const string MeterName = "Atelier";

    /// <summary>The name of the activity source of jobs' validation and training (a trace per attempt).</summary>
    public const string ActivitySourceName = "Atelier.Jobs";

    private const string Actor = "system:fine-tuning";
    private static readonly System.Diagnostics.ActivitySource Activities = new(ActivitySourceName);
    private static readonly System.Diagnostics.Metrics.Meter Meter = new(MeterName);
    private static readonly System.Diagnostics.Metrics.Counter<long> Steps = Meter.CreateCounter<long>("atelier_training_steps", description: "Optimiser steps trained by fine-tuning jobs on this node.");
    private static readonly System.Diagnostics.Metrics.Counter<long> Tokens = Meter.CreateCounter<long>("atelier_training_tokens", description: "Tokens trained by fine-tuning jobs on this node.");
    private static readonly System.Diagnostics.Metrics.Histogram<double> Stall = Meter.CreateHistogram<double>("atelier_checkpoint_stall", unit: "ms", description: "Training time lost to each checkpoint (back-pressure and snapshot).");
    private static readonly System.Diagnostics.Metrics.Histogram<double> Persist = Meter.CreateHistogram<double>("atelier_checkpoint_persist", unit: "ms", description: "Background persist time of each checkpoint.");
    private static readonly System.Diagnostics.Metrics.Counter<long> CheckpointBytes = Meter.CreateCounter<long>("atelier_checkpoint_bytes_written", unit: "By", description: "Checkpoint bytes written (deduplicated chunks excluded).");
    // What validation places under job/<id>/: the curation reports and the two datasets.
    private const string ReportPart = "train-report/";
    private static readonly string[] ValidationParts = [ReportPart, "train/", "valid/"];
    private readonly ConcurrentDictionary<string, CancellationTokenSource> _work = new(StringComparer.Ordinal);

    // Every attempt's task until it ends, so stopping the host waits for its threads to let go of
    // the job's files instead of leaving them running under a host that is gone.
    private readonly ConcurrentDictionary<Task, byte> _attempts = new();

    /// <inheritdoc />
    public void StartValidation(string jobId)
    {
        if (_work.ContainsKey(jobId))
        {
            // Already validating here: a node that restarted asked the job's grain to recover it.
            return;
        }

        var cancel = Register(jobId);
        Track(Task.Run(async () =>
        {
            string? error = null;
            var cancelled = false;
            try
            {
                using var activity = Activities.StartActivity("job.validate");
                activity?.SetTag("atelier.job.id", jobId);
                await ValidateAsync(jobId, cancel.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (IsCancellation(e, cancel))
            {
                // Cancelled (the grain already moved the job on) or the node is stopping (the
                // job stays VALIDATING and is validated again on the next start).
                cancelled = true;
            }
            catch (Exception e) when (e is AtelierException or InvalidDataException or IOException or FormatException)
            {
                error = e.Message;
            }
            catch (Exception e)
            {
                LogFailed(logger, e, jobId);
                error = "internal error: " + e.Message;
            }
            finally
            {
                Unregister(jobId, cancel);
            }

            if (!cancelled)
            {
                await reports.ValidationFinishedAsync(jobId, error).ConfigureAwait(false);
            }
            else if (!lifetime.ApplicationStopping.IsCancellationRequested)
            {
                await DiscardValidationAsync(jobId).ConfigureAwait(false);
            }
        }));
    }

    /// <inheritdoc />
    public void StartTraining(string jobId, string node)
    {
        var cancel = Register(jobId);
        Track(Task.Factory.StartNew(
            async () =>
            {
                var end = TrainingEnd.Succeeded;
                string? error = null;
                try
                {
                    using var activity = Activities.StartActivity("job.train");
                    activity?.SetTag("atelier.job.id", jobId);
                    await TrainAsync(jobId, node, cancel.Token).ConfigureAwait(false);
                }
                catch (Exception e) when (IsCancellation(e, cancel))
                {
                    end = lifetime.ApplicationStopping.IsCancellationRequested ? TrainingEnd.Interrupted : TrainingEnd.Cancelled;
                }
                catch (Exception e)
                {
                    LogFailed(logger, e, jobId);
                    end = TrainingEnd.Failed;
                    error = e is AtelierException or CheckpointFailedException or InvalidDataException or IOException ? e.Message : "internal error: " + e.Message;
                }
                finally
                {
                    Unregister(jobId, cancel);
                }

                if (end != TrainingEnd.Interrupted)
                {
                    // The attempt is over and no other follows: the adapter it staged (placed, or
                    // from a cancelled or failed run) is not needed again.
                    DeleteStaging(jobId);
                    await reports.RunFinishedAsync(jobId, end, error).ConfigureAwait(false);
                }
            },
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default).Unwrap());
    }

    /// <inheritdoc />
    public void Cancel(string jobId)
    {
        if (_work.TryGetValue(jobId, out var cancel))
        {
            TryCancel(cancel);
        }
    }

    /// <inheritdoc />
    public async Task<string?> DataNodeAsync(string jobId)
    {
        var job = await catalog.Jobs.GetByIdAsync(jobId).ConfigureAwait(false);
        if (job is null)
        {
            return null;
        }

        var location = storage.Locations.Describe(job.LocationId);
        if (location.Node is { } node)
        {
            return node;
        }

        // A rack-level location: any node of its rack is next to it.
        return storage.Topology.Sites.SelectMany(s => s.Racks).FirstOrDefault(r => r.Id == location.Rack)?.Nodes.FirstOrDefault();
    }

    /// <summary>
    /// Stops every attempt on this node (the host is stopping) and waits until they have ended, or
    /// until <paramref name="cancellationToken"/> (the host's shutdown timeout) says to stop waiting;
    /// the jobs resume on the next start.
    /// </summary>
    public async Task StopAllAsync(CancellationToken cancellationToken)
    {
        foreach (var cancel in _work.Values)
        {
            TryCancel(cancel);
        }

        // Each attempt handles its own end (logged or reported there); past the host's shutdown
        // timeout the host stops without them.
        await Task.WhenAll(_attempts.Keys).WaitAsync(cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    private void Track(Task attempt)
    {
        _attempts.TryAdd(attempt, 0);
        _ = attempt.ContinueWith(static (t, state) => ((ConcurrentDictionary<Task, byte>)state!).TryRemove(t, out _), _attempts, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
    }

    /// <summary>
    /// Cancels an attempt found in <see cref="_work"/>. The attempt may end between the lookup
    /// and the cancel, and its end disposes the source: then there is nothing left to stop.
    /// </summary>
    private static void TryCancel(CancellationTokenSource cancel)
    {
        try
        {
            cancel.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The attempt finished meanwhile.
        }
    }

    /// <summary>
    /// Whether <paramref name="e"/> is how a cancel of <paramref name="cancel"/> surfaced: an
    /// <see cref="OperationCanceledException"/> from any depth, as thrown or wrapped on its way up
    /// (a faulted task's <see cref="AggregateException"/>, a pipeline channel's completion).
    /// </summary>
    private static bool IsCancellation(Exception e, CancellationTokenSource cancel)
    {
        if (!cancel.IsCancellationRequested)
        {
            return false;
        }

        for (Exception? inner = e; inner is not null; inner = inner.InnerException)
        {
            if (inner is OperationCanceledException)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// A job cancelled while validating keeps nothing half-made of its validation: neither the build
    /// it staged (kept only for a node that stops, whose validation resumes) nor the datasets it
    /// placed under <c>job/&lt;id&gt;/</c>, which an interrupted placement may have left without
    /// their manifest. The curation reports stay once the <c>data-curated</c> event says they were
    /// placed whole (they are the job's to show from then on, whatever follows).
    /// </summary>
    private async Task DiscardValidationAsync(string jobId)
    {
        try
        {
            DeleteStaging(jobId);
            var job = await catalog.Jobs.GetByIdAsync(jobId, CancellationToken.None).ConfigureAwait(false);
            if (job is null)
            {
                return;
            }

            var artifact = await ArtifactAsync(job, CancellationToken.None).ConfigureAwait(false);
            var curated = (await catalog.Jobs.EventsAsync(jobId, CancellationToken.None).ConfigureAwait(false)).Any(e => e.Name == "data-curated");
            foreach (var part in ValidationParts)
            {
                if (curated && part == ReportPart)
                {
                    continue;
                }

                // Listed first, then deleted: the listing does not run over keys being removed.
                var location = WriteLocation(job);
                var keys = new List<string>();
                await foreach (var key in storage.Locations.ListKeysAsync(location, $"job/{jobId}/{part}", CancellationToken.None).ConfigureAwait(false))
                {
                    keys.Add(key);
                }

                foreach (var key in keys)
                {
                    await storage.Guard.DeleteAsync(artifact, location, Actor, key, CancellationToken.None).ConfigureAwait(false);
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or AtelierException)
        {
            // Left for the operator: the job is CANCELLED either way, and nothing reads these.
            LogDiscardFailed(logger, e, jobId);
        }
    }

    private void DeleteStaging(string jobId)
    {
        var staging = Staging(jobId);
        try
        {
            if (Directory.Exists(staging))
            {
                Directory.Delete(staging, recursive: true);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // The job's outcome does not depend on it: logged for the operator, never fatal.
            LogStagingNotDeleted(logger, e, jobId);
        }
    }

    private CancellationTokenSource Register(string jobId)
    {
        var cancel = CancellationTokenSource.CreateLinkedTokenSource(lifetime.ApplicationStopping);
        _work[jobId] = cancel;
        return cancel;
    }

    private void Unregister(string jobId, CancellationTokenSource cancel)
    {
        _work.TryRemove(new KeyValuePair<string, CancellationTokenSource>(jobId, cancel));
        cancel.Dispose();
    }

    private async Task ValidateAsync(string jobId, CancellationToken cancel)
    {
        var job = await catalog.Jobs.GetByIdAsync(jobId, cancel).ConfigureAwait(false) ?? throw new NotFoundException("job", jobId);
        var request = JsonSerializer.Deserialize<FineTuningJobRequest>(job.RequestJson, AtelierJson.Options)!;
        var model = await registry.FindAsync(job.WorkspaceId, job.Model, cancel).ConfigureAwait(false)
            ?? throw new ValidationFailedException($"Model '{job.Model}' no longer exists.", [new Problem($"Model '{job.Model}' no longer exists.", Field: "model")], 1);
        var directory = await registry.ModelDirectoryAsync(model, cancel).ConfigureAwait(false);
        var tokenizer = ModelTokenizers.Load(directory);

        var training = new DatasetInput[request.TrainingFiles?.Count ?? 0];
        for (var i = 0; i < training.Length; i++)
        {
            training[i] = await InputAsync(job, request.TrainingFiles![i].FileId, cancel).ConfigureAwait(false);
        }

        var validation = new DatasetInput[request.ValidationFiles?.Count ?? 0];
        for (var i = 0; i < validation.Length; i++)
        {
            validation[i] = await InputAsync(job, request.ValidationFiles![i], cancel).ConfigureAwait(false);
        }

        var staging = Staging(jobId);
        try
        {
            await ValidateAsync(job, request, model, tokenizer, training, validation, staging, cancel).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // A job that failed validation is final: nothing it staged is needed again. (A
            // cancelled or interrupted one keeps its staging, so its build resumes.)
            if (Directory.Exists(staging))
            {
                Directory.Delete(staging, recursive: true);
            }

            throw;
        }
    }

    private async Task ValidateAsync(JobRecord job, FineTuningJobRequest request, RegisteredModel model, ITextTokenizer tokenizer, DatasetInput[] training, DatasetInput[] validation, string staging, CancellationToken cancel)
    {
        var jobId = job.Id;
        var artifact = await ArtifactAsync(job, cancel).ConfigureAwait(false);
        var policy = catalog.Policies.Resolve(job.Policy);
        PreparedData prepared;
        if (request.DatasetId is { } datasetId)
        {
            // A built version: its shards are trained on where they are, after checking again
            // (the model may have been replaced since the job was created) that they are this
            // model's tokens; only the validation files are built here.
            var dataset = await JobDataset.ResolveAsync(catalog.Datasets, job.WorkspaceId, datasetId, cancel).ConfigureAwait(false);
            dataset.CheckFor(model.Id, tokenizer.Identity, request.Hyperparameters!.SeqLen);
            var report = JsonNode.Parse(dataset.Record.SummaryJson!)?["report"].Deserialize<DatasetReport>(AtelierJson.Options)
                ?? new DatasetReport { Counters = dataset.Manifest.Counters, Issues = [] };
            var valid = await FineTuningPreparation.BuildValidationAsync(validation, tokenizer, dataset.Manifest.Options.SequenceLength, staging, cancel).ConfigureAwait(false);
            prepared = new PreparedData(new DatasetBuildResult("", dataset.Manifest, report, 0), valid);
        }
        else
        {
            prepared = await FineTuningPreparation.BuildAsync(training, validation, tokenizer, request.Hyperparameters!.SeqLen ?? Math.Min(FineTuningPreparation.DefaultSeqLen, model.MaxContextLength), staging, cancel).ConfigureAwait(false);

            // What curation kept and dropped is the job's to show whether or not validation
            // passes: the reports go first, then an event with the counts, then the checks.
            await storage.Guard.PlaceDirectoryAsync(artifact, policy, WriteLocation(job), Actor, $"job/{job.Id}/{ReportPart}", prepared.Training.Directory, prepared.Training.Manifest.Reports.Select(r => r.Path), cancel).ConfigureAwait(false);
        }

        var parameters = model.Artifacts.Where(a => a.Name == "consolidated.safetensors").Sum(a => a.Bytes) / 2;
        await catalog.Jobs.AddEventAsync(jobId, "data-curated", JsonSerializer.Serialize(JobDataCuration.From(jobId, request.DatasetId, prepared.Training.Manifest.Counters), AtelierJson.Options), cancel).ConfigureAwait(false);
        var planned = FineTuningPreparation.Plan(request, prepared, parameters, options.MaxCurationDropFraction);

        var dataLocations = request.DatasetId is null ? await DataLocationsAsync(artifact, policy, job, cancel).ConfigureAwait(false) : [job.LocationId];
        var trainShards = request.DatasetId is { } id
            ? [.. prepared.Training.Manifest.Shards.Select(s => new JobShard($"dataset/{id}/{s.Path}", s.Path, s.Rows, s.Sha256))]
            : await PlaceDatasetAsync(artifact, policy, job, dataLocations, "train", prepared.Training, cancel).ConfigureAwait(false);
        var validShards = prepared.Validation is { } v ? await PlaceDatasetAsync(artifact, policy, job, dataLocations, "valid", v, cancel).ConfigureAwait(false) : [];

        var record = new JobPlanRecord
        {
            Plan = planned.Plan,
            DataTokens = planned.DataTokens,
            TrainTokens = planned.TrainTokens,
            ExpectedDurationSeconds = planned.ExpectedDurationSeconds,
            Epochs = planned.Epochs,
            TrainingShards = trainShards,
            ValidationShards = validShards,
            Counters = prepared.Training.Manifest.Counters,
            DatasetId = request.DatasetId,
            DataLocations = dataLocations,
        };
        await catalog.Jobs.SetMetadataAsync(jobId, JsonSerializer.Serialize(record, AtelierJson.Options), CancellationToken.None).ConfigureAwait(false);

        // A job on a dataset version without validation files builds nothing, so it staged nothing.
        if (Directory.Exists(staging))
        {
            Directory.Delete(staging, recursive: true);
        }
    }

    private async Task<DatasetInput> InputAsync(JobRecord job, string fileId, CancellationToken cancel)
    {
        var file = await catalog.Files.GetAsync(job.WorkspaceId, fileId, cancel).ConfigureAwait(false)
            ?? throw new ValidationFailedException($"File '{fileId}' no longer exists.", [new Problem($"File '{fileId}' no longer exists.", Field: "training_files")], 1);
        return new DatasetInput(file.Filename, ct => storage.Guard.OpenFileAsync(file, ct), DataFormat.FineTuneJsonl);
    }

    private async Task<IReadOnlyList<JobShard>> PlaceDatasetAsync(ArtifactRef artifact, Atelier.Core.Residency.ResidencyPolicy policy, JobRecord job, IReadOnlyList<string> locations, string part, DatasetBuildResult result, CancellationToken cancel)
    {
        // A crash during an earlier placement is repaired by validation placing them all again.
        var prefix = $"job/{job.Id}/{part}/";
        foreach (var location in locations)
        {
            await storage.Guard.PlaceDirectoryAsync(artifact, policy, location, Actor, prefix, result.Directory, result.Manifest.Shards.Select(s => s.Path).Append("manifest.json"), cancel).ConfigureAwait(false);
        }

        return [.. result.Manifest.Shards.Select(s => new JobShard(prefix + s.Path, s.Path, s.Rows, s.Sha256))];
    }

    /// <summary>
    /// Where validation places the job's shards: where this node writes the job's bytes and, when
    /// that is one node's drive, also the cluster's shared location, so that the job can resume on
    /// another node if that one dies. A policy that forbids the shared location keeps the data on the
    /// drive alone (the refusal is audited), and the job then waits for its node to come back.
    /// </summary>
    private async Task<IReadOnlyList<string>> DataLocationsAsync(ArtifactRef artifact, Atelier.Core.Residency.ResidencyPolicy policy, JobRecord job, CancellationToken cancel)
    {
        var primary = WriteLocation(job);
        if (options.SharedLocation is not { } shared || shared == primary || storage.Locations.Describe(primary).Node is null)
        {
            return [primary];
        }

        if (!policy.Evaluate(storage.Locations.Describe(shared)).Allowed)
        {
            // Judged by the guard too, which records the refusal in the audit log.
            try
            {
                await using var probe = await storage.Guard.BeginWriteAsync(artifact, policy, shared, Actor, null, $"job/{job.Id}/train/manifest.json", cancel).ConfigureAwait(false);
            }
            catch (PlacementRefusedException)
            {
            }

            await catalog.Jobs.AddEventAsync(job.Id, "data-not-replicated", JsonSerializer.Serialize(new Dictionary<string, string> { ["location"] = primary, ["refused"] = shared, ["detail"] = $"policy {policy.Name} does not allow the shared location '{shared}': the job's data stays on '{primary}' alone and the job resumes only on its node" }, AtelierJson.Options), cancel).ConfigureAwait(false);
            return [primary];
        }

        return [primary, shared];
    }

    /// <summary>
    /// Where this node writes a job's bytes: the job's location, unless that is another node's drive
    /// (the job validates or finishes on another node than its data's), then the cluster's shared location.
    /// </summary>
    private string WriteLocation(JobRecord job) =>
        !storage.Locations.IsElsewhere(job.LocationId) ? job.LocationId
        : options.SharedLocation ?? throw new StorageUnavailableException(
            $"The job's location '{job.LocationId}' is a drive of node '{storage.Locations.Describe(job.LocationId).Node}', and no cluster.shared_location is configured for node '{storage.Locations.LocalNode}' to write the job's bytes to.");

    private async Task TrainAsync(string jobId, string node, CancellationToken cancel)
    {
        var job = await catalog.Jobs.GetByIdAsync(jobId, cancel).ConfigureAwait(false) ?? throw new NotFoundException("job", jobId);
        var record = JsonSerializer.Deserialize<JobPlanRecord>(job.MetadataJson ?? throw new InvalidOperationException($"Job {jobId} runs without being validated."), AtelierJson.Options)!;
        var request = JsonSerializer.Deserialize<FineTuningJobRequest>(job.RequestJson, AtelierJson.Options)!;
        var model = await registry.FindAsync(job.WorkspaceId, job.Model, cancel).ConfigureAwait(false)
            ?? throw new NotFoundException("model", job.Model);
        var directory = await registry.ModelDirectoryAsync(model, cancel).ConfigureAwait(false);
        var ckptJob = new CheckpointJob(job.WorkspaceId, job.Id, catalog.Policies.Resolve(job.Policy));

        // A crash between a checkpoint's commit and its catalog row leaves a checkpoint the job's
        // history does not show yet.
        var known = (await catalog.Jobs.CheckpointsAsync(jobId, cancel).ConfigureAwait(false)).Select(c => c.StepNumber).ToHashSet();
        foreach (var info in await checkpoints.ListAsync(jobId, cancel).ConfigureAwait(false))
        {
            if (!known.Contains(info.Step))
            {
                await RecordAsync(jobId, info.Step, info.Id, info.Metrics, info.Step * record.Plan.TrainTokensPerStep, info.CreatedAt.ToUnixTimeSeconds()).ConfigureAwait(false);
            }
        }

        // The trainer reports from its own thread and must not wait on the catalog: its reports
        // are written in the order made, and all of them before the run's end is reported.
        var history = new OrderedWrites();
        var dataLocations = record.DataLocations ?? [job.LocationId];

        var validation = new List<ShardWindow>();
        foreach (var shard in record.ValidationShards)
        {
            await using var stream = await OpenAsync(dataLocations, shard.Key, cancel).ConfigureAwait(false);
            await foreach (var window in ArrowShardReader.ReadAsync(stream, shard.Key, cancel).ConfigureAwait(false))
            {
                validation.Add(window);
            }
        }

        var duration = new TrainingDurationEstimate(record.Plan.TrainingSteps, record.Plan.CheckpointEvery, clock);

        // Per-step metrics: the time of a step is from the end of the one before (or the start of
        // the attempt), data loading included; elapsed time goes on from what the attempt that
        // wrote the checkpoint it resumes from had reached.
        var earlier = await metrics.ReadAsync(jobId, 0, cancel).ConfigureAwait(false);
        var elapsedBefore = 0.0;
        var stepStarted = clock.GetTimestamp();
        var attemptStarted = stepStarted;
        var adapterPath = Path.Combine(Staging(jobId), "adapter.safetensors");
        Directory.CreateDirectory(Path.GetDirectoryName(adapterPath)!);
        File.Delete(adapterPath);
        FineTuningOutcome outcome;
        try
        {
            outcome = await FineTuningRunner.RunAsync(
                new FineTuningRun
                {
                    Job = ckptJob,
                    Plan = record.Plan,
                    ModelDirectory = directory,
                    ShardReadLatency = storage.Topology.Latency(node, await DataNodeAsync(jobId).ConfigureAwait(false) ?? node),
                    TrainingShards = [.. record.TrainingShards.Select(s => new ShardSource(s.Name, s.Rows, ct => OpenAsync(dataLocations, s.Key, ct)) { ContentHash = s.Sha256 })],
                    ValidationWindows = validation,
                    Checkpoints = checkpoints,
                    StartFrom = request.StartFrom,
                    AdapterPath = adapterPath,
                    OnStep = report =>
                    {
                        var step = report.Step;
                        Steps.Add(1);
                        Tokens.Add(record.Plan.TrainTokensPerStep);
                        var now = clock.GetTimestamp();
                        var stepSeconds = clock.GetElapsedTime(stepStarted, now).TotalSeconds;
                        stepStarted = now;
                        metrics.Append(jobId, new JobStepMetrics(
                            step,
                            report.Loss,
                            report.LearningRate,
                            report.GradNorm,
                            step * record.Plan.TrainTokensPerStep,
                            stepSeconds > 0 ? record.Plan.TrainTokensPerStep / stepSeconds : 0,
                            elapsedBefore + clock.GetElapsedTime(attemptStarted, now).TotalSeconds,
                            report.Validation?.ValidLoss,
                            report.Validation?.ValidMeanTokenAccuracy,
                            clock.GetUtcNow().ToUnixTimeSeconds()));
                        if (duration.StepFinished(step) is { } seconds)
                        {
                            // metadata.expected_duration_seconds, measured from this run's own steps.
                            record = record with { ExpectedDurationSeconds = seconds };
                            var metadata = JsonSerializer.Serialize(record, AtelierJson.Options);
                            history.Enqueue(() => catalog.Jobs.SetMetadataAsync(jobId, metadata));
                        }
                    },
                    OnResume = step =>
                    {
                        elapsedBefore = earlier.LastOrDefault(r => r.Step <= step)?.ElapsedSeconds ?? 0;
                        LogResumed(logger, jobId, step);
                        history.Enqueue(() => catalog.Jobs.AddEventAsync(jobId, "resumed", $$"""{"from_step":{{step}}}"""));
                    },
                    OnCheckpoint = c =>
                    {
                        Stall.Record(c.Stall.TotalMilliseconds);
                        Persist.Record(c.PersistTime.TotalMilliseconds);
                        CheckpointBytes.Add(c.BytesWritten);
                        var at = clock.GetUtcNow().ToUnixTimeSeconds();
                        history.Enqueue(() => RecordAsync(jobId, c.Step, c.CheckpointId, c.Metrics, c.TrainedTokens, at));
                        var data = JsonSerializer.Serialize(new Dictionary<string, object>
                        {
                            ["step"] = c.Step,
                            ["id"] = c.CheckpointId,
                            ["stall_ms"] = Math.Round(c.Stall.TotalMilliseconds, 3),
                            ["persist_ms"] = Math.Round(c.PersistTime.TotalMilliseconds, 3),
                            ["bytes_written"] = c.BytesWritten,
                            ["bytes_reused"] = c.BytesReused,
                        });
                        history.Enqueue(() => catalog.Jobs.AddEventAsync(jobId, "checkpoint", data));
                        LogCheckpointed(logger, jobId, c.Step, c.CheckpointId, c.Metrics.TrainLoss, c.Metrics.ValidLoss);
                    },
                    OnRetention = steps =>
                    {
                        var deleted = steps.ToArray();
                        history.Enqueue(() => catalog.Jobs.MarkCheckpointsDeletedAsync(jobId, deleted));
                    },
                },
                cancel).ConfigureAwait(false);
        }
        finally
        {
            // Whatever ended the run, what it reported is in the catalog before the grain hears the end.
            await history.SettledAsync().ConfigureAwait(false);
        }

        // A report that could not be written fails the job, as it did when reports were written inline.
        await history.FlushAsync().ConfigureAwait(false);

        // Trained to the last step: what is left is the commit, placing the adapter and
        // registering the model, short next to a step. It runs to its end whatever a late cancel
        // says (the job then ends SUCCESS), so that a cancel never leaves an adapter without its
        // model or a model without its adapter.
        cancel = CancellationToken.None;

        // The adapter is the model's only new bytes; the base model is referenced, not copied.
        var artifact = await ArtifactAsync(job, cancel).ConfigureAwait(false);
        var key = $"job/{jobId}/adapter/lora.safetensors";
        var existing = await registry.FindByJobAsync(jobId, cancel).ConfigureAwait(false);
        if (existing is null)
        {
            var trainingFileIds = request.DatasetId is { } datasetId
                ? await JobDataset.SourceFilesAsync(catalog.Datasets, job.WorkspaceId, datasetId, cancel).ConfigureAwait(false)
                : [.. request.TrainingFiles!.Select(f => f.FileId)];
            var target = WriteLocation(job);
            if (await storage.Guard.GetLengthAsync(target, key, cancel).ConfigureAwait(false) is not null)
            {
                await storage.Guard.DeleteAsync(artifact, target, Actor, key, cancel).ConfigureAwait(false);
            }

            var receipt = await storage.Guard.PlaceFileAsync(artifact, catalog.Policies.Resolve(job.Policy), target, Actor, key, adapterPath, cancel).ConfigureAwait(false);
            existing = await registry.RegisterFineTunedAsync(
                new FineTunedModelRegistration
                {
                    Workspace = job.WorkspaceId,
                    JobId = jobId,
                    BaseModelId = job.Model,
                    Suffix = job.Suffix,
                    RegisteredName = request.RegisteredModelName,
                    Artifacts = [new ModelArtifact("lora.safetensors", receipt.LocationId, receipt.Key, receipt.Bytes, receipt.Sha256)],
                    PolicyName = job.Policy,
                    Lineage = new ModelLineage
                    {
                        TrainingFileIds = trainingFileIds,
                        DatasetId = request.DatasetId,
                        ValidationFileIds = request.ValidationFiles ?? [],
                        CheckpointId = outcome.FinalCheckpointId,
                        RootVersion = model.Artifacts.FirstOrDefault(a => a.Name == "consolidated.safetensors")?.Sha256,
                    },
                    Actor = Actor,
                },
                cancel).ConfigureAwait(false);
            LogModelRegistered(logger, existing.Id, jobId, job.Model);
        }

        await catalog.Jobs.SetResultAsync(jobId, existing.Id, outcome.TrainedTokens, cancel).ConfigureAwait(false);
        File.Delete(adapterPath);
    }

    private Task RecordAsync(string jobId, long step, string id, CheckpointMetrics metrics, long tokens, long at) =>
        catalog.Jobs.AddCheckpointAsync(jobId, new JobCheckpointRecord(step, id, metrics.TrainLoss, metrics.ValidLoss, metrics.ValidMeanTokenAccuracy, at, true), tokens, CancellationToken.None);

    // The first copy that can be read: a drive of a node that died is skipped for the shared copy.
    private async ValueTask<Stream> OpenAsync(IReadOnlyList<string> locations, string key, CancellationToken cancel)
    {
        var problems = new List<string>();
        foreach (var location in locations)
        {
            try
            {
                if (await storage.Guard.OpenReadAsync(location, key, cancel).ConfigureAwait(false) is { } stream)
                {
                    return stream.CanSeek ? stream : await SpoolAsync(stream, cancel).ConfigureAwait(false);
                }

                problems.Add($"missing from location '{location}'");
            }
            catch (StorageUnavailableException e)
            {
                problems.Add(e.Message);
            }
        }

        throw new StorageUnavailableException($"The job's data '{key}' cannot be read: {string.Join("; ", problems)}.");
    }

    /// <summary>
    /// A copy of a stream that cannot seek (a shared bucket's, another node's) in a file of the
    /// staging directory (inside the private data directory), deleted when closed: the loader reads a shard's footer first and its
    /// windows in shuffled order, so it needs to seek.
    /// </summary>
    private async Task<Stream> SpoolAsync(Stream source, CancellationToken cancel)
    {
        await using (source.ConfigureAwait(false))
        {
            var directory = Path.Combine(options.StagingDirectory, "spool");
            Directory.CreateDirectory(directory);
            var file = new FileStream(Path.Combine(directory, Guid.NewGuid().ToString("N")), new FileStreamOptions
            {
                Mode = FileMode.CreateNew,
                Access = FileAccess.ReadWrite,
                Options = FileOptions.DeleteOnClose | FileOptions.Asynchronous,
            });
            try
            {
                await source.CopyToAsync(file, cancel).ConfigureAwait(false);
                file.Position = 0;
                return file;
            }
            catch
            {
                await file.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }
    }

    private async Task<ArtifactRef> ArtifactAsync(JobRecord job, CancellationToken cancel) =>
        new("job", job.Id, (await catalog.Keys.GetWorkspaceAsync(job.WorkspaceId, cancel).ConfigureAwait(false))?.Name ?? job.WorkspaceId);

    private string Staging(string jobId) => Path.Combine(options.StagingDirectory, jobId);

    [LoggerMessage(Level = LogLevel.Information, Message = "Job {JobId} checkpointed at step {Step} as {CheckpointId} (train loss {TrainLoss}, validation loss {ValidLoss})")]
    private static partial void LogCheckpointed(ILogger logger, string jobId, long step, string checkpointId, double? trainLoss, double? validLoss);

    [LoggerMessage(Level = LogLevel.Information, Message = "Job {JobId} resumes from its checkpoint at step {Step}")]
    private static partial void LogResumed(ILogger logger, string jobId, long step);

    [LoggerMessage(Level = LogLevel.Information, Message = "Model {ModelId} registered, fine-tuned by job {JobId} from {BaseModel}")]
    private static partial void LogModelRegistered(ILogger logger, string modelId, string jobId, string baseModel);

    [LoggerMessage(Level = LogLevel.Error, Message = "Fine-tuning job {JobId} failed")]
    private static partial void LogFailed(ILogger logger, Exception exception, string jobId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The staging directory of fine-tuning job {JobId} could not be deleted")]
    private static partial void LogStagingNotDeleted(ILogger logger, Exception exception, string jobId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Fine-tuning job {JobId} was cancelled while validating; what its validation staged or placed could not all be removed")]
    private static partial void LogDiscardFailed(ILogger logger, Exception exception, string jobId);
}
