using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Threading.Channels;
using Atelier.Catalog;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Data.Building;
using Atelier.Data.Readers;
using Atelier.Data.Tokenization;
using Atelier.Registry;
using Atelier.Storage.Placement;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Atelier.Training.Datasets;

/// <summary>The body of <c>POST /api/v1/datasets</c>, stored with the dataset so a restart can resume it.</summary>
public sealed record CreateDatasetRequest
{
    /// <summary>A display name.</summary>
    public string? Name { get; init; }

    /// <summary>Ids of uploaded fine-tune files to train on, in order.</summary>
    public IReadOnlyList<string> TrainingFiles { get; init; } = [];

    /// <summary>Ids of validation/eval files: training examples that overlap them are dropped.</summary>
    public IReadOnlyList<string> ValidationFiles { get; init; } = [];

    /// <summary><c>o200k_base</c> (default) or <c>cl100k_base</c>; ignored when <see cref="Model"/> is given.</summary>
    public string Tokenizer { get; init; } = "o200k_base";

    /// <summary>
    /// A registered base model whose own tokeniser (tekken.json or tokenizer.model) and chat format
    /// build the shards, so a job on that model can train on this version as it is.
    /// </summary>
    public string? Model { get; init; }

    /// <summary>Window length of the packed shards; overrides <c>options.sequence_length</c>.</summary>
    public int? SeqLen { get; init; }

    /// <summary>Stage options (normalisation, dedup, decontamination, quality, packing).</summary>
    public DatasetBuildOptions Options { get; init; } = new();
}

/// <summary>
/// Runs dataset builds one at a time in the background. A build writes into a staging directory
/// under the data directory (the builder resumes there after a restart), then every artifact is
/// placed through the placement guard under <c>dataset/&lt;id&gt;/</c>, the manifest last, and only
/// then is the dataset marked succeeded: a dataset version is complete or not visible.
/// </summary>
/// <remarks>
/// In a cluster every node runs this service over the shared catalog. A node builds a dataset only
/// while it holds the build's lease in the catalog (<see cref="IDatasetRepository.TryClaimBuildAsync"/>):
/// it claims the build when the build reaches the head of its queue, renews the lease every third of
/// <see cref="DatasetBuildServiceOptions.LeaseLength"/> while it builds, and stops when a renewal finds
/// the build taken over. Every lease length it looks for unfinished builds whose owner stopped
/// renewing (it died) and queues them, so a live node picks them up without a restart (decision 0021).
/// </remarks>
/// <param name="settings">Where builds stage, this node's name and the lease length.</param>
/// <param name="datasets">The dataset catalog: requests, progress and outcomes.</param>
/// <param name="files">Uploaded files, the builds' inputs.</param>
/// <param name="policies">Residency policies, resolved by name.</param>
/// <param name="guard">The placement guard: reads the inputs, places the versions.</param>
/// <param name="registry">The model registry, for a base model's tokeniser.</param>
/// <param name="derived">Builds of versions derived by an operation (semantic dedup), if the host offers them.</param>
/// <param name="clock">The clock of leases and of their renewal and polling timers.</param>
/// <param name="logger">The log.</param>
public sealed partial class DatasetBuildService(
    DatasetBuildServiceOptions settings,
    IDatasetRepository datasets,
    IFileRepository files,
    PolicyCatalog policies,
    PlacementGuard guard,
    ModelRegistry registry,
    IDerivedDatasetBuilder? derived,
    TimeProvider clock,
    ILogger<DatasetBuildService> logger) : BackgroundService
{
    private readonly Channel<string> _queue = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleReader = true });
    private readonly ConcurrentDictionary<string, DatasetBuildProgress> _live = new(StringComparer.Ordinal);

    // Ids in the queue: the periodic scan finds the same unfinished builds again and again, and
    // queues only those not already waiting.
    private readonly ConcurrentDictionary<string, byte> _queued = new(StringComparer.Ordinal);

    /// <summary>Queues a build (once: a build already waiting is not queued again).</summary>
    public void Enqueue(string datasetId)
    {
        if (_queued.TryAdd(datasetId, 0))
        {
            _queue.Writer.TryWrite(datasetId);
        }
    }

    /// <summary>The progress of a running build, fresher than the catalog's copy.</summary>
    public DatasetBuildProgress? LiveProgress(string datasetId) => _live.TryGetValue(datasetId, out var p) ? p : null;

    /// <summary>Checks a request and resolves its files; throws a 4xx naming what is wrong.</summary>
    public static async Task<(IReadOnlyList<FileRecord> Training, IReadOnlyList<FileRecord> Validation)> ResolveAsync(IFileRepository files, string workspaceId, CreateDatasetRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(files);
        ArgumentNullException.ThrowIfNull(request);
        if (request.TrainingFiles.Count == 0)
        {
            throw new BadRequestException("'training_files' needs at least one file id.");
        }

        if (request.Model is null)
        {
            _ = CreateTokenizer(request.Tokenizer);
        }
        if (request.SeqLen is < 16 or > 1 << 20)
        {
            throw new BadRequestException($"'seq_len' must be between 16 and {1 << 20}, not {request.SeqLen}.");
        }

        var training = new FileRecord[request.TrainingFiles.Count];
        for (var i = 0; i < training.Length; i++)
        {
            training[i] = await FindAsync(request.TrainingFiles[i]).ConfigureAwait(false);
        }

        var validation = new FileRecord[request.ValidationFiles.Count];
        for (var i = 0; i < validation.Length; i++)
        {
            validation[i] = await FindAsync(request.ValidationFiles[i]).ConfigureAwait(false);
        }

        return (training, validation);

        async Task<FileRecord> FindAsync(string id)
        {
            var file = await files.GetAsync(workspaceId, id, cancellationToken).ConfigureAwait(false) ?? throw new NotFoundException("file", id);
            if (file.Purpose != "fine-tune")
            {
                throw new BadRequestException($"File '{id}' ({file.Filename}) has purpose '{file.Purpose}'; datasets are built from fine-tune files.");
            }

            return file;
        }
    }

    /// <summary>A request's tokeniser: its base model's own, or the named tiktoken encoding.</summary>
    public static async Task<ITextTokenizer> TokenizerAsync(ModelRegistry registry, string workspaceId, CreateDatasetRequest request, CancellationToken cancel)
    {
        ArgumentNullException.ThrowIfNull(registry);
        ArgumentNullException.ThrowIfNull(request);
        if (request.Model is null)
        {
            return CreateTokenizer(request.Tokenizer);
        }

        var model = await registry.FindAsync(workspaceId, request.Model, cancel).ConfigureAwait(false)
            ?? throw new NotFoundException("model", request.Model);
        if (model.Kind != ModelKind.Base)
        {
            throw new BadRequestException($"Model '{model.Id}' is a fine-tuned model; build datasets with its base model '{model.Root}'.");
        }

        return ModelTokenizers.Load(await registry.ModelDirectoryAsync(model, cancel).ConfigureAwait(false));
    }

    /// <summary>The tokeniser named in a request.</summary>
    public static ITextTokenizer CreateTokenizer(string name) => name switch
    {
        "o200k_base" => TiktokenTextTokenizer.CreateO200kBase(),
        "cl100k_base" => TiktokenTextTokenizer.CreateCl100kBase(),
        _ => throw new BadRequestException($"Unknown tokenizer '{name}'; expected o200k_base or cl100k_base."),
    };

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Builds that were queued or running when the server stopped run again; the builder
        // resumes from its staging directory after the last committed shard. In a cluster, builds
        // another node holds a live lease on are left to it.
        await EnqueueUnfinishedAsync(stoppingToken).ConfigureAwait(false);
        var polling = settings.SoleNode ? Task.CompletedTask : PollAsync(stoppingToken);

        try
        {
            await BuildQueuedAsync(stoppingToken).ConfigureAwait(false);
        }
        finally
        {
            await polling.ConfigureAwait(false);
        }
    }

    /// <summary>Every lease length, queues the unfinished builds nobody holds: a dead node's builds resume on a live one.</summary>
    private async Task PollAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(settings.LeaseLength, clock, stoppingToken).ConfigureAwait(false);
                await EnqueueUnfinishedAsync(stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // The catalog may be unreachable for a while; the next poll tries again.
                LogPollFailed(logger, e);
            }
        }
    }

    private async Task EnqueueUnfinishedAsync(CancellationToken cancel)
    {
        var now = clock.GetUtcNow().ToUnixTimeSeconds();
        foreach (var unfinished in await datasets.UnfinishedAsync(cancel).ConfigureAwait(false))
        {
            // The claim decides; this only spares queueing what another node visibly holds.
            if (settings.SoleNode || unfinished.BuildOwner is null || unfinished.BuildOwner == settings.Node || unfinished.BuildLeaseUntil is not { } until || until <= now)
            {
                Enqueue(unfinished.Id);
            }
        }
    }

    private async Task BuildQueuedAsync(CancellationToken stoppingToken)
    {
        await foreach (var id in _queue.Reader.ReadAllAsync(stoppingToken).ConfigureAwait(false))
        {
            _queued.TryRemove(id, out _);
            try
            {
                await BuildAsync(id, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                // Left 'running': the next start resumes it.
                return;
            }
            catch (Exception e)
            {
                LogFailed(logger, e, id);
                await datasets.FinishAsync(id, "failed", null, e is AtelierException or IOException or InvalidDataException or ArgumentException ? e.Message : "internal error: " + e.Message, CancellationToken.None).ConfigureAwait(false);
            }
            finally
            {
                _live.TryRemove(id, out _);
            }
        }
    }

    private async Task BuildAsync(string id, CancellationToken cancel)
    {
        var dataset = await datasets.GetForBuilderAsync(id, cancel).ConfigureAwait(false);
        if (dataset is null || dataset.Status is not ("queued" or "running"))
        {
            return;
        }

        // The sole node takes the build whatever lease the catalog holds: nobody else can own it.
        var now = clock.GetUtcNow();
        if (!await datasets.TryClaimBuildAsync(id, settings.Node, LeaseEnd(now), settings.SoleNode ? long.MaxValue : now.ToUnixTimeSeconds(), cancel).ConfigureAwait(false))
        {
            LogHeldElsewhere(logger, id);
            return;
        }

        using var owned = CancellationTokenSource.CreateLinkedTokenSource(cancel);
        var lost = new StrongBox<bool>();
        var renewal = RenewAsync(id, owned, lost);
        try
        {
            await BuildClaimedAsync(dataset, owned.Token).ConfigureAwait(false);
        }
        catch (Exception) when (lost.Value && !cancel.IsCancellationRequested)
        {
            // Another node took the build over (this one missed its renewals): it builds the same
            // bytes from the same request; this node leaves the outcome to it.
            LogLost(logger, id, settings.Node);
        }
        finally
        {
            await owned.CancelAsync().ConfigureAwait(false);
            await renewal.ConfigureAwait(false);
        }
    }

    private long LeaseEnd(DateTimeOffset now) => (now + settings.LeaseLength).ToUnixTimeSeconds();

    /// <summary>Renews the lease every third of its length until the build ends; cancels the build when the lease is gone.</summary>
    private async Task RenewAsync(string id, CancellationTokenSource build, StrongBox<bool> lost)
    {
        var every = settings.LeaseLength / 3;
        while (!build.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(every, clock, build.Token).ConfigureAwait(false);
                if (!await datasets.RenewBuildLeaseAsync(id, settings.Node, LeaseEnd(clock.GetUtcNow()), build.Token).ConfigureAwait(false))
                {
                    // Taken over, or finished: either way this node must not go on writing.
                    lost.Value = true;
                    await build.CancelAsync().ConfigureAwait(false);
                    return;
                }
            }
            catch (OperationCanceledException) when (build.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // The catalog is unreachable: go on building and retry; if the lease lapses meanwhile,
                // the next renewal says so.
                LogRenewFailed(logger, e, id);
            }
        }
    }

    private async Task BuildClaimedAsync(DatasetRecord dataset, CancellationToken cancel)
    {
        var id = dataset.Id;
        await datasets.MarkRunningAsync(id, cancel).ConfigureAwait(false);
        if (derived is not null && IsDerived(dataset, derived.Operation))
        {
            await BuildDerivedAsync(derived, dataset, cancel).ConfigureAwait(false);
            return;
        }

        var request = JsonSerializer.Deserialize<CreateDatasetRequest>(dataset.RequestJson, AtelierJson.Options)!;
        var (training, validation) = await ResolveAsync(files, dataset.WorkspaceId, request, cancel).ConfigureAwait(false);
        var options = request.SeqLen is { } seqLen ? request.Options with { SequenceLength = seqLen } : request.Options;
        var build = new DatasetBuildRequest
        {
            Training = [.. training.Select(Input)],
            Eval = [.. validation.Select(Input)],
            Tokenizer = await TokenizerAsync(registry, dataset.WorkspaceId, request, cancel).ConfigureAwait(false),
            Options = options,
        };

        var staging = Path.Combine(settings.StagingDirectory, id);
        var output = Path.Combine(staging, "version");
        if (Directory.Exists(output))
        {
            // Built before a crash but not placed: building again gives the same bytes.
            Directory.Delete(output, recursive: true);
        }

        Directory.CreateDirectory(staging);
        var saved = new OrderedWrites();
        var lastSaved = 0L;
        var progress = new Progress(p =>
        {
            _live[id] = p;
            var now = Environment.TickCount64;
            // The last stages are always saved: the catalog's copy is what lists show once the build is over.
            if (now - Interlocked.Read(ref lastSaved) > 1000 || p.Stage is "committing" or "done")
            {
                Interlocked.Exchange(ref lastSaved, now);
                var json = JsonSerializer.Serialize(p, AtelierJson.Options);
                saved.Enqueue(() => datasets.UpdateProgressAsync(id, json));
            }
        });

        var result = await DatasetBuilder.BuildAsync(build, output, progress, cancel).ConfigureAwait(false);
        var workspace = dataset.WorkspaceId;
        await PlaceAsync(dataset, workspace, result, cancel).ConfigureAwait(false);

        var summary = new
        {
            manifest = result.Manifest,
            report = result.Report,
            resumed_from_shard = result.ResumedFromShard,
        };
        await saved.FlushAsync().ConfigureAwait(false);
        await datasets.FinishAsync(id, "succeeded", JsonSerializer.Serialize(summary, AtelierJson.Options), null, CancellationToken.None).ConfigureAwait(false);
        Directory.Delete(staging, recursive: true);
        LogBuilt(logger, id, result.Manifest.Counters.ExamplesKept, result.Manifest.Shards.Count);

        DatasetInput Input(FileRecord file) => new(file.Filename, ct => guard.OpenFileAsync(file, ct), DataFormat.FineTuneJsonl);
    }

    private static bool IsDerived(DatasetRecord dataset, string operationName)
    {
        using var request = JsonDocument.Parse(dataset.RequestJson);
        return request.RootElement.TryGetProperty("operation", out var operation) && operation.ValueKind == JsonValueKind.String
            && operation.GetString() == operationName;
    }

    /// <summary>A version derived by an operation (semantic dedup): built like any other, then placed the same way.</summary>
    private async Task BuildDerivedAsync(IDerivedDatasetBuilder builder, DatasetRecord dataset, CancellationToken cancel)
    {
        var staging = Path.Combine(settings.StagingDirectory, dataset.Id);
        var output = Path.Combine(staging, "version");
        if (Directory.Exists(output))
        {
            Directory.Delete(output, recursive: true);
        }

        Directory.CreateDirectory(staging);
        var saved = new OrderedWrites();
        var lastSaved = 0L;
        var progress = new Progress(p =>
        {
            _live[dataset.Id] = p;
            var now = Environment.TickCount64;
            if (now - Interlocked.Read(ref lastSaved) > 1000 || p.Stage is "committing" or "done")
            {
                Interlocked.Exchange(ref lastSaved, now);
                var json = JsonSerializer.Serialize(p, AtelierJson.Options);
                saved.Enqueue(() => datasets.UpdateProgressAsync(dataset.Id, json));
            }
        });

        var (result, semantic) = await builder.BuildAsync(dataset, staging, output, progress, cancel).ConfigureAwait(false);
        var workspace = dataset.WorkspaceId;
        await PlaceAsync(dataset, workspace, result, cancel).ConfigureAwait(false);

        var summary = new System.Text.Json.Nodes.JsonObject
        {
            ["manifest"] = JsonSerializer.SerializeToNode(result.Manifest, AtelierJson.Options),
            ["report"] = JsonSerializer.SerializeToNode(result.Report, AtelierJson.Options),
            ["resumed_from_shard"] = result.ResumedFromShard,
            [builder.SummaryProperty] = semantic,
        };
        await saved.FlushAsync().ConfigureAwait(false);
        await datasets.FinishAsync(dataset.Id, "succeeded", summary.ToJsonString(AtelierJson.Options), null, CancellationToken.None).ConfigureAwait(false);
        Directory.Delete(staging, recursive: true);
        LogBuilt(logger, dataset.Id, result.Manifest.Counters.ExamplesKept, result.Manifest.Shards.Count);
    }

    private async Task PlaceAsync(DatasetRecord dataset, string workspace, DatasetBuildResult result, CancellationToken cancel)
    {
        // Not visible until 'succeeded', so a crash mid-placement is repaired by placing again.
        var files = result.Manifest.Shards.Concat(result.Manifest.Features).Concat(result.Manifest.Reports).Select(f => f.Path).Append("manifest.json");
        await guard.PlaceDirectoryAsync(
            new ArtifactRef("dataset", dataset.Id, workspace), policies.Resolve(dataset.Policy), dataset.LocationId, "system:dataset-build",
            $"dataset/{dataset.Id}/", result.Directory, files, cancel).ConfigureAwait(false);
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "Dataset build {DatasetId} failed")]
    private static partial void LogFailed(ILogger logger, Exception exception, string datasetId);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Dataset build {DatasetId} is held by another node")]
    private static partial void LogHeldElsewhere(ILogger logger, string datasetId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Dataset build {DatasetId} was taken over by another node; {Node} stopped building it")]
    private static partial void LogLost(ILogger logger, string datasetId, string node);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not renew the lease on dataset build {DatasetId}")]
    private static partial void LogRenewFailed(ILogger logger, Exception exception, string datasetId);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not look for unfinished dataset builds")]
    private static partial void LogPollFailed(ILogger logger, Exception exception);

    [LoggerMessage(Level = LogLevel.Information, Message = "Dataset {DatasetId} built: {Examples} examples in {Shards} shards")]
    private static partial void LogBuilt(ILogger logger, string datasetId, long examples, int shards);

    /// <summary>Progress reported synchronously on the builder's thread (no SynchronizationContext hop).</summary>
    private sealed class Progress(Action<DatasetBuildProgress> report) : IProgress<DatasetBuildProgress>
    {
        public void Report(DatasetBuildProgress value) => report(value);
    }
}
