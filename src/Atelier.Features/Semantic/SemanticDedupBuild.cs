using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Atelier.Catalog;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Data.Building;
using Atelier.Data.Model;
using Atelier.Data.Readers;
using Atelier.Data.Shards;
using Atelier.Data.Tokenization;
using Atelier.Modeling.Mistral;
using Atelier.Registry;
using Atelier.Storage.Placement;
using Atelier.Training.Datasets;
using Parquet.Serialization;

namespace Atelier.Features.Semantic;

/// <summary>
/// Builds a dataset version derived from a succeeded one by semantic dedup and decontamination:
/// embeds every kept example of the source with a base model (mean-pooled final hidden state,
/// L2-normalised), drops training examples whose nearest eval item is too similar, keeps the first
/// example of each cluster of near-identical embeddings, and rebuilds the version from the kept
/// examples' original lines with the source's tokeniser and options.
/// </summary>
/// <remarks>
/// The kept lines are copied into filtered copies of the source files in which every other line is
/// blank; the reader skips blank lines, so the new version's features keep the source's file names
/// and line numbers. <c>semantic-dedup.json</c> (lineage, clusters, contaminated examples) joins the
/// manifest's reports. Deterministic: the same source, model, eval items and thresholds give the
/// same bytes.
/// </remarks>
/// <param name="datasets">The dataset catalog: the source and eval datasets.</param>
/// <param name="files">Uploaded files: the source's inputs and the eval files.</param>
/// <param name="guard">The placement guard, through which every byte is read.</param>
/// <param name="registry">The model registry: the base model that embeds.</param>
public sealed class SemanticDedupBuild(IDatasetRepository datasets, IFileRepository files, PlacementGuard guard, ModelRegistry registry) : IDerivedDatasetBuilder
{
    /// <summary>The report file added to the version.</summary>
    public const string ReportFile = "semantic-dedup.json";

    // Sequences per forward pass, bounded in tokens too, so memory stays a few activations.
    private const int EmbedBatchSequences = 16;
    private const int EmbedBatchTokens = 8192;

    private static readonly JsonWriterOptions ReportWriter = new() { Indented = true };

    /// <inheritdoc />
    public string Operation => SemanticDedupRequest.OperationName;

    /// <inheritdoc />
    public string SummaryProperty => "semantic_dedup";

    /// <inheritdoc />
    public async Task<(DatasetBuildResult Result, JsonObject Summary)> BuildAsync(DatasetRecord dataset, string staging, string output, IProgress<DatasetBuildProgress> progress, CancellationToken cancel)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        ArgumentNullException.ThrowIfNull(progress);
        var request = JsonSerializer.Deserialize<SemanticDedupRequest>(dataset.RequestJson, AtelierJson.Options)!;
        var resolved = await ResolvedSemanticDedup.ResolveAsync(datasets, files, registry, dataset.WorkspaceId, request, cancel).ConfigureAwait(false);
        var (training, validation) = await DatasetBuildService.ResolveAsync(files, dataset.WorkspaceId, resolved.SourceRequest, cancel).ConfigureAwait(false);
        var options = resolved.SourceRequest.SeqLen is { } seqLen ? resolved.SourceRequest.Options with { SequenceLength = seqLen } : resolved.SourceRequest.Options;

        progress.Report(new DatasetBuildProgress("reading-source", 0, 0, 0, 0, 0, 0, 0));
        var examples = await KeptExamplesAsync(resolved.Source, training, options.MaxLineBytes, cancel).ConfigureAwait(false);
        var evalItems = new List<(string Name, TrainingExample Example)>();
        foreach (var file in resolved.EvalFiles)
        {
            await using var stream = await guard.OpenFileAsync(file, cancel).ConfigureAwait(false);
            foreach (var read in FineTuneJsonlReader.Read(stream, file.Filename, 0, options.MaxLineBytes))
            {
                if (read.Example is { } e)
                {
                    evalItems.Add(($"{file.Id}:{e.Line.ToString(CultureInfo.InvariantCulture)}", e));
                }
            }
        }

        if (resolved.EvalDataset is { } evalDataset)
        {
            var evalRequest = JsonSerializer.Deserialize<CreateDatasetRequest>(evalDataset.RequestJson, AtelierJson.Options)!;
            var (evalTraining, _) = await DatasetBuildService.ResolveAsync(files, dataset.WorkspaceId, evalRequest, cancel).ConfigureAwait(false);
            foreach (var kept in await KeptExamplesAsync(evalDataset, evalTraining, evalRequest.Options.MaxLineBytes, cancel).ConfigureAwait(false))
            {
                evalItems.Add(($"{evalDataset.Id}/{evalTraining[kept.Input].Id}:{kept.Example.Line.ToString(CultureInfo.InvariantCulture)}", kept.Example));
            }
        }

        var directory = await registry.ModelDirectoryAsync(resolved.Model, cancel).ConfigureAwait(false);
        var tokenizer = ModelTokenizers.Load(directory);
        float[][] trainVectors;
        float[][] evalVectors;
        using (var model = MistralModel.Load(directory))
        {
            var maxTokens = Math.Min(request.EffectiveMaxTokens, resolved.Model.MaxContextLength);
            trainVectors = Embed(model, tokenizer, examples.Select(e => e.Example).ToList(), maxTokens, "embedding", progress, cancel);
            evalVectors = Embed(model, tokenizer, evalItems.Select(e => e.Example).ToList(), maxTokens, "embedding-eval", progress, cancel);
        }

        progress.Report(new DatasetBuildProgress("clustering", 0, 0, examples.Count, 0, 0, 0, 0));
        var decided = SemanticDeduplicator.Run(trainVectors, evalVectors, new SemanticDedupOptions
        {
            Threshold = request.EffectiveThreshold,
            ContaminationThreshold = request.EffectiveContaminationThreshold,
        });

        var inputs = await WriteFilteredInputsAsync(staging, training, examples, decided, cancel).ConfigureAwait(false);
        var build = new DatasetBuildRequest
        {
            Training = inputs,
            Eval = [.. validation.Select(f => new DatasetInput(f.Filename, ct => guard.OpenFileAsync(f, ct), DataFormat.FineTuneJsonl))],
            Tokenizer = await DatasetBuildService.TokenizerAsync(registry, dataset.WorkspaceId, resolved.SourceRequest, cancel).ConfigureAwait(false),
            Options = options,
        };
        var built = await DatasetBuilder.BuildAsync(build, output, progress, cancel).ConfigureAwait(false);

        var lineage = new JsonObject
        {
            ["operation"] = SemanticDedupRequest.OperationName,
            ["source_dataset"] = resolved.Source.Id,
            ["model"] = resolved.Model.Id,
            ["model_sha256"] = resolved.Model.Artifacts.FirstOrDefault(a => a.Name == "consolidated.safetensors")?.Sha256,
            ["embedding"] = "mean-pooled final RMS-normed hidden state, L2-normalised; cosine similarity",
            ["max_tokens"] = Math.Min(request.EffectiveMaxTokens, resolved.Model.MaxContextLength),
            ["threshold"] = request.EffectiveThreshold,
            ["contamination_threshold"] = request.EffectiveContaminationThreshold,
            ["eval_files"] = new JsonArray([.. resolved.EvalFiles.Select(f => (JsonNode)new JsonObject { ["id"] = f.Id, ["filename"] = f.Filename })]),
            ["eval_dataset"] = resolved.EvalDataset?.Id,
            ["search"] = decided.Exact ? "exact" : "hnsw",
        };
        var counters = new JsonObject
        {
            ["examples_in"] = examples.Count,
            ["examples_kept"] = decided.Keep.Count(k => k),
            ["eval_items"] = evalItems.Count,
            ["contaminated"] = decided.Contaminated.Count,
            ["clusters"] = decided.Clusters.Count,
            ["duplicates_dropped"] = decided.Clusters.Sum(c => c.Dropped.Count),
        };

        var reportBytes = Report(lineage, counters, examples, training, evalItems, decided);
        var manifest = await AddReportAsync(built.Directory, reportBytes, cancel).ConfigureAwait(false);
        var summary = new JsonObject { ["lineage"] = lineage.DeepClone(), ["counters"] = counters.DeepClone() };
        return (built with { Manifest = manifest }, summary);
    }

    /// <summary>An example the source kept, with the index of its input file.</summary>
    private readonly record struct KeptExample(int Input, TrainingExample Example);

    /// <summary>
    /// The examples a dataset kept, in its order: the ordinals come from its feature parts, the examples
    /// from reading its input files again exactly as the builder numbered them.
    /// </summary>
    private async Task<List<KeptExample>> KeptExamplesAsync(DatasetRecord dataset, IReadOnlyList<FileRecord> training, int maxLineBytes, CancellationToken cancel)
    {
        var kept = new Dictionary<long, (string File, long Line)>();
        var manifest = JsonNode.Parse(dataset.SummaryJson ?? "{}")?["manifest"];
        foreach (var part in manifest?["features"]?.AsArray() ?? [])
        {
            var path = part!["path"]!.GetValue<string>();
            var stream = await guard.OpenReadAsync(dataset.LocationId, $"dataset/{dataset.Id}/{path}", cancel).ConfigureAwait(false)
                ?? throw new StorageUnavailableException($"The bytes of '{path}' of dataset '{dataset.Id}' are missing from location '{dataset.LocationId}'.");

            // Parquet needs a seekable stream; a feature part is a small fraction of the dataset.
            using var buffer = new MemoryStream();
            await using (stream.ConfigureAwait(false))
            {
                await stream.CopyToAsync(buffer, cancel).ConfigureAwait(false);
            }

            buffer.Position = 0;
            foreach (var row in (await ParquetSerializer.DeserializeAsync<ExampleFeatures>(buffer, cancellationToken: cancel).ConfigureAwait(false)).Data)
            {
                if (row.DropReason is null)
                {
                    kept[row.Ordinal] = (row.SourceFile, row.SourceLine);
                }
            }
        }

        var result = new List<KeptExample>(kept.Count);
        long ordinal = 0;
        for (var i = 0; i < training.Count; i++)
        {
            await using var stream = await guard.OpenFileAsync(training[i], cancel).ConfigureAwait(false);
            foreach (var read in FineTuneJsonlReader.Read(stream, training[i].Filename, ordinal, maxLineBytes))
            {
                cancel.ThrowIfCancellationRequested();
                if (read.Example is not { } example)
                {
                    continue;
                }

                ordinal = example.Ordinal + 1;
                if (kept.TryGetValue(example.Ordinal, out var where))
                {
                    if (where.File != example.SourceFile || where.Line != example.Line)
                    {
                        throw new InvalidDataException($"Dataset '{dataset.Id}' does not match its input files: ordinal {example.Ordinal} is {where.File}:{where.Line} in its features but {example.SourceFile}:{example.Line} on reading.");
                    }

                    result.Add(new KeptExample(i, example));
                }
            }
        }

        if (result.Count != kept.Count)
        {
            throw new InvalidDataException($"Dataset '{dataset.Id}' kept {kept.Count} examples but {result.Count} were found in its input files.");
        }

        return result;
    }

    private static float[][] Embed(MistralModel model, ITextTokenizer tokenizer, List<TrainingExample> examples, int maxTokens, string stage, IProgress<DatasetBuildProgress> progress, CancellationToken cancel)
    {
        var vectors = new float[examples.Count][];
        var batch = new List<int[]>(EmbedBatchSequences);
        var batchTokens = 0;
        var start = 0;
        var ids = new List<int>();
        for (var i = 0; i < examples.Count; i++)
        {
            ids.Clear();
            ids.Add(tokenizer.Control.Bos);
            tokenizer.Encode(PlainText(examples[i]), ids);
            var sequence = ids.Count > maxTokens ? ids.GetRange(0, maxTokens).ToArray() : ids.ToArray();
            if (batch.Count == EmbedBatchSequences || (batch.Count > 0 && batchTokens + sequence.Length > EmbedBatchTokens))
            {
                Flush();
            }

            batch.Add(sequence);
            batchTokens += sequence.Length;
        }

        Flush();
        return vectors;

        void Flush()
        {
            cancel.ThrowIfCancellationRequested();
            var pooled = model.PooledEmbeddings(batch);
            pooled.CopyTo(vectors, start);
            start += pooled.Length;
            batch.Clear();
            batchTokens = 0;
            progress.Report(new DatasetBuildProgress(stage, 0, 0, start, 0, 0, 0, 0));
        }
    }

    /// <summary>What the embedding reads: the text, or a conversation's contents one per line.</summary>
    private static string PlainText(TrainingExample example)
    {
        if (example.Kind == ExampleKind.Text)
        {
            return example.Text ?? "";
        }

        var text = new StringBuilder();
        foreach (var message in example.Messages!)
        {
            if (message.Content is not null)
            {
                text.Append(message.Content).Append('\n');
            }
        }

        return text.ToString();
    }

    private async Task<IReadOnlyList<DatasetInput>> WriteFilteredInputsAsync(string staging, IReadOnlyList<FileRecord> training, List<KeptExample> examples, SemanticDedupResult decided, CancellationToken cancel)
    {
        var keptLines = training.Select(_ => new HashSet<long>()).ToArray();
        for (var i = 0; i < examples.Count; i++)
        {
            if (decided.Keep[i])
            {
                keptLines[examples[i].Input].Add(examples[i].Example.Line);
            }
        }

        var folder = Path.Combine(staging, "inputs");
        if (Directory.Exists(folder))
        {
            Directory.Delete(folder, recursive: true);
        }

        Directory.CreateDirectory(folder);
        var inputs = new List<DatasetInput>(training.Count);
        for (var k = 0; k < training.Count; k++)
        {
            var path = Path.Combine(folder, $"input-{k:D4}.jsonl");
            await using (var source = await guard.OpenFileAsync(training[k], cancel).ConfigureAwait(false))
            {
                await using var target = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous);
                await CopyLinesAsync(source, target, keptLines[k], cancel).ConfigureAwait(false);
            }

            inputs.Add(new DatasetInput(training[k].Filename, () => new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan), DataFormat.FineTuneJsonl));
        }

        return inputs;
    }

    /// <summary>Copies the lines whose 1-based number is in <paramref name="keep"/>; every other line becomes empty, so numbers do not move.</summary>
    private static async Task CopyLinesAsync(Stream source, Stream target, HashSet<long> keep, CancellationToken cancel)
    {
        var input = new byte[1 << 16];
        var output = new byte[input.Length];
        long line = 1;
        int read;
        while ((read = await source.ReadAsync(input, cancel).ConfigureAwait(false)) > 0)
        {
            var written = 0;
            var keeping = keep.Contains(line);
            for (var i = 0; i < read; i++)
            {
                var b = input[i];
                if (b == (byte)'\n')
                {
                    output[written++] = b;
                    line++;
                    keeping = keep.Contains(line);
                }
                else if (keeping)
                {
                    output[written++] = b;
                }
            }

            await target.WriteAsync(output.AsMemory(0, written), cancel).ConfigureAwait(false);
        }
    }

    private static byte[] Report(JsonObject lineage, JsonObject counters, List<KeptExample> examples, IReadOnlyList<FileRecord> training, List<(string Name, TrainingExample Example)> evalItems, SemanticDedupResult decided)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, ReportWriter))
        {
            json.WriteStartObject();
            json.WriteString("format", "atelier-semantic-dedup/1");
            json.WritePropertyName("lineage");
            lineage.WriteTo(json);
            json.WritePropertyName("counters");
            counters.WriteTo(json);
            json.WriteStartArray("clusters");
            foreach (var cluster in decided.Clusters)
            {
                json.WriteStartObject();
                json.WriteNumber("size", cluster.Size);
                json.WritePropertyName("kept");
                WriteExample(json, cluster.Kept, null);
                json.WriteStartArray("dropped");
                foreach (var member in cluster.Dropped)
                {
                    WriteExample(json, member.Index, member.Similarity);
                }

                json.WriteEndArray();
                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteStartArray("contaminated");
            foreach (var c in decided.Contaminated)
            {
                json.WriteStartObject();
                WriteFields(json, c.Index, c.Similarity);
                var (name, eval) = evalItems[c.EvalIndex];
                json.WriteStartObject("eval_item");
                json.WriteString("id", name);
                json.WriteString("source_file", eval.SourceFile);
                json.WriteNumber("source_line", eval.Line);
                json.WriteEndObject();
                json.WriteEndObject();
            }

            json.WriteEndArray();
            json.WriteEndObject();
        }

        return buffer.ToArray();

        void WriteExample(Utf8JsonWriter json, int index, float? similarity)
        {
            json.WriteStartObject();
            WriteFields(json, index, similarity);
            json.WriteEndObject();
        }

        void WriteFields(Utf8JsonWriter json, int index, float? similarity)
        {
            var e = examples[index];
            json.WriteNumber("ordinal", e.Example.Ordinal);
            json.WriteString("file_id", training[e.Input].Id);
            json.WriteString("source_file", e.Example.SourceFile);
            json.WriteNumber("source_line", e.Example.Line);
            if (similarity is { } s)
            {
                json.WriteNumber("similarity", Math.Round(s, 6));
            }
        }
    }

    /// <summary>Writes the report into the built version and lists it in the manifest, which is rewritten last.</summary>
    private static async Task<DatasetManifest> AddReportAsync(string directory, byte[] report, CancellationToken cancel)
    {
        await File.WriteAllBytesAsync(Path.Combine(directory, ReportFile), report, cancel).ConfigureAwait(false);
        var manifestPath = Path.Combine(directory, "manifest.json");
        var manifest = JsonNode.Parse(await File.ReadAllBytesAsync(manifestPath, cancel).ConfigureAwait(false))!;
        manifest["reports"]!.AsArray().Add(new JsonObject
        {
            ["path"] = ReportFile,
            ["bytes"] = report.LongLength,
            ["sha256"] = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(report)),
            ["rows"] = 0,
        });
        await File.WriteAllBytesAsync(manifestPath, Encoding.UTF8.GetBytes(manifest.ToJsonString(new JsonSerializerOptions { WriteIndented = true })), cancel).ConfigureAwait(false);
        return DatasetJson.ReadManifest(manifestPath);
    }
}
