using System.Text.Json;
using System.Text.Json.Serialization;
using Atelier.Catalog;
using Atelier.Core.Errors;
using Atelier.Data.Building;
using Atelier.Data.Readers;
using Atelier.Data.Shards;
using Atelier.Data.Tokenization;
using Atelier.Modeling.Mistral;
using Atelier.Registry;
using Atelier.Storage.Placement;
using Atelier.Training.Datasets;
using Atelier.Training.Jobs;

namespace Atelier.Training.Evaluation;

/// <summary>How <see cref="ModelEvaluator"/> is set up.</summary>
public sealed record ModelEvaluationOptions
{
    /// <summary>The node-local directory where an evaluation builds its validation windows (removed after each).</summary>
    public required string StagingDirectory { get; init; }

    /// <summary>The largest validation file an evaluation reads, in bytes: it runs while its request waits.</summary>
    public long MaxFileBytes { get; init; } = 16 << 20;

    /// <summary>The most windows measured (the first ones, as a job's validation measures them).</summary>
    public int MaxWindows { get; init; } = 32;
}

/// <summary>Loss and token accuracy of one model on the evaluation's windows.</summary>
/// <param name="ModelId">The model measured.</param>
/// <param name="Loss">Mean masked cross-entropy per trained token.</param>
/// <param name="TokenAccuracy">Share of trained tokens predicted exactly (greedy).</param>
public sealed record EvaluationScore(string ModelId, double? Loss, double? TokenAccuracy);

/// <summary>What an evaluation of a version measured, stored with the version.</summary>
/// <param name="Model">The version's model.</param>
/// <param name="Base">Its base model on the same windows (the model itself for a base model's version).</param>
/// <param name="Windows">Windows measured.</param>
/// <param name="SequenceLength">Tokens per window.</param>
public sealed record EvaluationResult(EvaluationScore Model, EvaluationScore Base, int Windows, [property: JsonPropertyName("seq_len")] int SequenceLength);

/// <summary>
/// Evaluates a registered model version on a validation file: the file is built into windows with the
/// base model's own tokeniser exactly as a job's validation files are
/// (<see cref="FineTuningPreparation.BuildValidationAsync"/>), and measured with the trainer's own
/// <see cref="FineTuningRunner.Validate"/>, once with the version's adapter and once without it, so the
/// numbers are comparable with a job's checkpoint metrics. One evaluation runs at a time on a node: it
/// holds a model in memory and the CPU for its forward passes.
/// </summary>
/// <param name="options">Staging and bounds.</param>
/// <param name="files">Uploaded files (the validation file).</param>
/// <param name="guard">Reads the file's bytes.</param>
/// <param name="registry">The model registry: the version's model, its base and its adapter.</param>
/// <param name="clock">The clock.</param>
public sealed class ModelEvaluator(ModelEvaluationOptions options, IFileRepository files, PlacementGuard guard, ModelRegistry registry, TimeProvider clock)
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };
    private readonly SemaphoreSlim _gate = new(1, 1);

    /// <summary>
    /// Evaluates version <paramref name="version"/> of <paramref name="name"/> on file <paramref name="fileId"/>
    /// and stores the result with the version (under the caller's workspace).
    /// </summary>
    /// <param name="workspace">The caller's workspace id.</param>
    /// <param name="actor">Who asks (recorded with the result).</param>
    /// <param name="name">The registered name.</param>
    /// <param name="version">The version.</param>
    /// <param name="fileId">A file of the workspace in the fine-tuning format.</param>
    /// <param name="sequenceLength">Tokens per window; default 2048, at most the model's context.</param>
    /// <param name="ct">Cancellation (the request's).</param>
    /// <exception cref="NotFoundException">No such name, version (or its model was deleted) or file in the caller's view.</exception>
    /// <exception cref="ValidationFailedException">The file is too large or holds nothing to measure.</exception>
    public async Task<(ModelEvaluationRecord Record, EvaluationResult Result)> EvaluateAsync(
        string workspace, string actor, string name, int version, string fileId, int? sequenceLength, CancellationToken ct)
    {
        var found = await registry.GetVersionAsync(workspace, name, version, ct).ConfigureAwait(false);
        var model = found.Model ?? throw new NotFoundException("model", found.Version.ModelId);
        var file = await files.GetAsync(workspace, fileId, ct).ConfigureAwait(false) ?? throw new NotFoundException("file", fileId);
        if (file.Bytes > options.MaxFileBytes)
        {
            throw Invalid($"File '{fileId}' is {file.Bytes} bytes; an evaluation reads at most {options.MaxFileBytes} (it runs while the request waits).", "file_id");
        }

        var root = model.Kind == ModelKind.Base ? model : await registry.FindBaseAsync(model.Root!, ct).ConfigureAwait(false) ?? throw new NotFoundException("base model", model.Root!);
        var seqLen = Math.Min(sequenceLength ?? FineTuningPreparation.DefaultSeqLen, root.MaxContextLength);
        if (seqLen < 2)
        {
            throw Invalid("'seq_len' must be at least 2.", "seq_len");
        }

        await _gate.WaitAsync(ct).ConfigureAwait(false);
        var staging = Path.Combine(options.StagingDirectory, Guid.NewGuid().ToString("N"));
        try
        {
            var directory = await registry.ModelDirectoryAsync(root, ct).ConfigureAwait(false);
            var tokenizer = ModelTokenizers.Load(directory);
            DatasetBuildResult built;
            try
            {
                built = (await FineTuningPreparation.BuildValidationAsync(
                    [new DatasetInput(file.Filename, c => guard.OpenFileAsync(file, c), DataFormat.FineTuneJsonl)], tokenizer, seqLen, staging, ct).ConfigureAwait(false))!;
            }
            catch (ValidationFailedException e)
            {
                throw Invalid(e.Message, "file_id");
            }

            var windows = new List<ShardWindow>();
            foreach (var shard in built.Manifest.Shards)
            {
                await using var stream = File.OpenRead(Path.Combine(built.Directory, shard.Path));
                await foreach (var window in ArrowShardReader.ReadAsync(stream, shard.Path, ct).ConfigureAwait(false))
                {
                    windows.Add(window);
                    if (windows.Count >= options.MaxWindows)
                    {
                        break;
                    }
                }

                if (windows.Count >= options.MaxWindows)
                {
                    break;
                }
            }

            var adapterPath = model.Kind == ModelKind.FineTuned ? await registry.LocalArtifactAsync(model, ModelRegistry.AdapterArtifact, ct).ConfigureAwait(false) : null;

            // The forward passes are CPU-bound: off the request's thread.
            var (own, ofBase) = await Task.Run(
                () =>
                {
                    using var weights = MistralModel.Load(directory);
                    var baseMetrics = FineTuningRunner.Validate(weights, windows, options.MaxWindows, ct);
                    if (adapterPath is null)
                    {
                        return (baseMetrics, baseMetrics);
                    }

                    weights.Adapter = LoraAdapter.LoadFile(weights.Args, adapterPath);
                    return (FineTuningRunner.Validate(weights, windows, options.MaxWindows, ct), baseMetrics);
                },
                ct).ConfigureAwait(false);

            var result = new EvaluationResult(
                new EvaluationScore(model.Id, own.ValidLoss, own.ValidMeanTokenAccuracy),
                new EvaluationScore(root.Id, ofBase.ValidLoss, ofBase.ValidMeanTokenAccuracy),
                Math.Min(windows.Count, options.MaxWindows),
                seqLen);
            var record = new ModelEvaluationRecord(
                Guid.CreateVersion7().ToString(),
                workspace,
                found.Version.Name,
                version,
                model.Id,
                file.Id,
                JsonSerializer.Serialize(result, Json),
                clock.GetUtcNow().ToUnixTimeSeconds(),
                actor);
            await registry.AddEvaluationAsync(record, CancellationToken.None).ConfigureAwait(false);
            return (record, result);
        }
        finally
        {
            _gate.Release();
            if (Directory.Exists(staging))
            {
                Directory.Delete(staging, recursive: true);
            }
        }
    }

    /// <summary>Reads a stored result back.</summary>
    public static EvaluationResult? ReadResult(ModelEvaluationRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        return JsonSerializer.Deserialize<EvaluationResult>(record.ResultJson, Json);
    }

    private static ValidationFailedException Invalid(string message, string field) => new(message, [new Problem(message, Field: field)], 1, "invalid_request");
}
