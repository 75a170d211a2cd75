using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Atelier.Core.IO;
using Atelier.Data.Decontamination;
using Atelier.Data.Dedup;
using Atelier.Data.Formatting;
using Atelier.Data.Model;
using Atelier.Data.Packing;
using Atelier.Data.Quality;
using Atelier.Data.Readers;
using Atelier.Data.Shards;
using Parquet;
using Parquet.Serialization;

namespace Atelier.Data.Building;

/// <summary>
/// Builds a dataset version from input files: read, normalise, exact dedup, near dedup,
/// decontaminate, quality-filter, tokenise with the chat format, pack, and write Arrow shards,
/// Parquet features, a report, and the manifest last.
/// </summary>
/// <remarks>
/// <para>Streaming: inputs are read in batches of <see cref="DatasetBuildOptions.BatchSize"/>; memory is a
/// few batches, the dedup indexes (about 40 bytes per distinct example and 30 bytes per band per kept
/// example) and one shard of windows.</para>
/// <para>Deterministic: per-example work runs in parallel, but every decision that depends on earlier
/// examples (dedup, packing) is taken in input order on one thread, so the bytes do not depend on the
/// thread count.</para>
/// <para>Crash-safe: everything is written under <c>DIR.partial</c>; a checkpoint follows each shard;
/// the manifest is written last and the directory renamed to <c>DIR</c>. A build started again with
/// the same inputs and options resumes after the last committed shard: it replays the cheap stages
/// (read, normalise, dedup) to rebuild the indexes and skips tokenising and writing what was already
/// committed. A different fingerprint starts over.</para>
/// </remarks>
public sealed partial class DatasetBuilder
{
    private const string CheckpointFile = "checkpoint.json";
    private const string ManifestFile = "manifest.json";

    private readonly DatasetBuildRequest _request;
    private readonly DatasetBuildOptions _options;
    private readonly TextNormalizer _normalizer;
    private readonly MinHasher? _minHasher;
    private readonly MinHashLshIndex _lsh = new();
    private readonly ExactDeduplicator _exact = new();
    private readonly Decontaminator _decontaminator;
    private readonly int _nearDedupRoles;
    private readonly GopherQualityFilter _quality;
    private readonly MistralInstructFormatter _formatter;
    private readonly DatasetCounters _counters = new();
    private readonly List<DataIssue> _reportIssues = [];
    private readonly HashSet<long> _clustersWithDuplicates = [];
    private readonly DatasetBuildTimings _timings = new();

    private DatasetBuilder(DatasetBuildRequest request)
    {
        _request = request;
        _options = request.Options;
        _normalizer = new TextNormalizer(_options.Normalization);
        _minHasher = _options.NearDedup.Enabled ? new MinHasher(_options.NearDedup) : null;
        _nearDedupRoles = WordHasher.RoleMask(_options.NearDedup.Roles);
        _decontaminator = new Decontaminator(_options.Decontamination);
        _quality = new GopherQualityFilter(_options.Quality);
        _formatter = new MistralInstructFormatter(request.Tokenizer);
    }

    /// <summary>Test hook: called after each shard commit with the shard count; throwing simulates a crash.</summary>
    internal Action<int>? AfterShardCommitted { get; set; }

    /// <summary>
    /// Builds (or resumes building) a dataset version into <paramref name="outputDirectory"/>, which
    /// must not exist yet: it appears, complete, only at the end.
    /// </summary>
    /// <param name="request">Inputs, tokeniser, options.</param>
    /// <param name="outputDirectory">Where the version goes.</param>
    /// <param name="progress">Receives progress after each batch.</param>
    /// <param name="cancellationToken">Stops the build; what was committed is kept for a resume.</param>
    public static Task<DatasetBuildResult> BuildAsync(DatasetBuildRequest request, string outputDirectory, IProgress<DatasetBuildProgress>? progress = null, CancellationToken cancellationToken = default) =>
        BuildAsync(request, outputDirectory, progress, null, cancellationToken);

    internal static Task<DatasetBuildResult> BuildAsync(DatasetBuildRequest request, string outputDirectory, IProgress<DatasetBuildProgress>? progress, Action<int>? afterShardCommitted, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentException.ThrowIfNullOrEmpty(outputDirectory);
        if (request.Training.Count == 0)
        {
            throw new ArgumentException("at least one training input is needed", nameof(request));
        }

        var builder = new DatasetBuilder(request) { AfterShardCommitted = afterShardCommitted };
        return builder.RunAsync(Path.GetFullPath(outputDirectory), progress, cancellationToken);
    }

    private async Task<DatasetBuildResult> RunAsync(string output, IProgress<DatasetBuildProgress>? progress, CancellationToken cancellationToken)
    {
        if (Directory.Exists(output))
        {
            throw new IOException($"dataset directory {output} already exists; a version is immutable");
        }

        long prepStart = System.Diagnostics.Stopwatch.GetTimestamp();
        progress?.Report(new DatasetBuildProgress("hashing-inputs", 0, 0, 0, 0, 0, 0, 0));
        List<DatasetInputRecord> inputs = await HashInputsAsync(cancellationToken).ConfigureAwait(false);
        string fingerprint = Fingerprint(inputs);
        long totalBytes = inputs.Where(i => i.Role == "train").Sum(i => i.Bytes);

        string staging = output + ".partial";
        BuildCheckpoint? checkpoint = PrepareStaging(staging, fingerprint);
        Directory.CreateDirectory(Path.Combine(staging, "shards"));
        Directory.CreateDirectory(Path.Combine(staging, "features"));

        progress?.Report(new DatasetBuildProgress("indexing-eval", 0, totalBytes, 0, 0, 0, 0, 0));
        await IndexEvalAsync(cancellationToken).ConfigureAwait(false);
        _timings.Preparation = System.Diagnostics.Stopwatch.GetElapsedTime(prepStart);

        var run = new RunState(staging, fingerprint, totalBytes, checkpoint, _options.SequenceLength, _request.Tokenizer.Control.Pad);
        if (_options.KeepDropped)
        {
            run.Dropped = OpenLog(Path.Combine(staging, "dropped.jsonl"));
        }

        run.IssueLog = OpenLog(Path.Combine(staging, "issues.jsonl"));
        try
        {
            await ProcessAsync(run, progress, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            run.Dropped?.Dispose();
            run.IssueLog.Dispose();
        }

        if (_counters.ExamplesKept == 0)
        {
            // Nothing to commit: leave no partial version behind, and say what dropped everything.
            Directory.Delete(staging, recursive: true);
            throw new EmptyDatasetException(_counters);
        }

        progress?.Report(run.Progress("committing", _counters));
        DatasetManifest manifest = await CommitAsync(run, inputs, cancellationToken).ConfigureAwait(false);
        Directory.Move(staging, output);
        AtomicFile.FsyncDirectory(Path.GetDirectoryName(output)!);
        progress?.Report(run.Progress("done", _counters));
        return new DatasetBuildResult(output, manifest, BuildReport(), checkpoint is null ? 0 : checkpoint.Shards.Count) { Timings = _timings };
    }

    private BuildCheckpoint? PrepareStaging(string staging, string fingerprint)
    {
        if (!Directory.Exists(staging))
        {
            return null;
        }

        BuildCheckpoint? checkpoint = DatasetJson.ReadCheckpoint(Path.Combine(staging, CheckpointFile));
        if (checkpoint is null || checkpoint.Fingerprint != fingerprint)
        {
            // Another build's leftovers, or one that never committed a shard: start clean.
            Directory.Delete(staging, recursive: true);
            return null;
        }

        // Remove anything written after the last checkpoint (a shard renamed before its checkpoint).
        var committed = new HashSet<string>(checkpoint.Shards.Select(s => s.Path).Concat(checkpoint.Features.Select(f => f.Path)), StringComparer.Ordinal);
        foreach (string file in Directory.EnumerateFiles(staging, "*", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(staging, file).Replace('\\', '/');
            if (relative != CheckpointFile && !committed.Contains(relative))
            {
                File.Delete(file);
            }
        }

        return checkpoint;
    }

    private async Task<List<DatasetInputRecord>> HashInputsAsync(CancellationToken cancellationToken)
    {
        var records = new List<DatasetInputRecord>();
        foreach ((IReadOnlyList<DatasetInput> list, string role) in new[] { (_request.Training, "train"), (_request.Eval, "eval") })
        {
            foreach (DatasetInput input in list)
            {
                await using Stream stream = await input.OpenReadAsync(cancellationToken).ConfigureAwait(false);
                using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
                byte[] buffer = new byte[1 << 20];
                long bytes = 0;
                int read;
                while ((read = await stream.ReadAsync(buffer, cancellationToken).ConfigureAwait(false)) > 0)
                {
                    hash.AppendData(buffer, 0, read);
                    bytes += read;
                }

                records.Add(new DatasetInputRecord(input.Name, role, input.Format.ToString(), bytes, Convert.ToHexStringLower(hash.GetHashAndReset())));
            }
        }

        return records;
    }

    private string Fingerprint(List<DatasetInputRecord> inputs)
    {
        var text = new StringBuilder();
        text.Append(_request.Tokenizer.Identity).Append('\n');
        text.Append(Encoding.UTF8.GetString(DatasetJson.Serialize(_options))).Append('\n');
        foreach (DatasetInputRecord input in inputs)
        {
            text.Append(input.Role).Append(' ').Append(input.Name).Append(' ').Append(input.Format).Append(' ').Append(input.Sha256).Append('\n');
        }

        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())));
    }

    private async Task IndexEvalAsync(CancellationToken cancellationToken)
    {
        foreach (DatasetInput input in _request.Eval)
        {
            await foreach (ReadResult result in ReadInputAsync(input, 0, cancellationToken).ConfigureAwait(false))
            {
                if (result.Issue is not null)
                {
                    AddIssue(result.Issue, null);
                    continue;
                }

                _decontaminator.AddEvalItem(_normalizer.Normalize(result.Example!));
            }
        }

        _counters.EvalItems = _decontaminator.ItemCount;
        _counters.EvalItemsTooShort = _decontaminator.ShortItemCount;
    }

    private async IAsyncEnumerable<ReadResult> ReadInputAsync(DatasetInput input, long firstOrdinal, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        Stream stream = await input.OpenReadAsync(cancellationToken).ConfigureAwait(false);
        await using (stream.ConfigureAwait(false))
        {
            if (input.Format == DataFormat.Parquet)
            {
                await foreach (ReadResult result in ParquetCorpusReader.ReadAsync(stream, input.Name, input.ParquetTextColumn, firstOrdinal, cancellationToken).ConfigureAwait(false))
                {
                    yield return result;
                }

                yield break;
            }

            IEnumerable<ReadResult> results = input.Format == DataFormat.FineTuneJsonl
                ? FineTuneJsonlReader.Read(stream, input.Name, firstOrdinal, _options.MaxLineBytes)
                : TextCorpusReader.Read(stream, input.Name, input.TextSplit, firstOrdinal, _options.MaxLineBytes);
            foreach (ReadResult result in results)
            {
                cancellationToken.ThrowIfCancellationRequested();
                yield return result;
            }
        }
    }

    /// <summary>
    /// Reads batches in input order and starts the analysis of each on the worker scheduler; the
    /// tasks go into <paramref name="writer"/> in order, so the decider sees results in order while
    /// up to the channel's capacity of batches are analysed at once.
    /// </summary>
    private async Task ProduceAsync(ChannelWriter<Task<Candidate[]>> writer, TaskScheduler workers, CancellationToken cancellationToken)
    {
        Exception? failure = null;
        try
        {
            long ordinal = 0;
            var batch = new List<ReadResult>(_options.BatchSize);
            foreach (DatasetInput input in _request.Training)
            {
                await foreach (ReadResult result in ReadInputAsync(input, ordinal, cancellationToken).ConfigureAwait(false))
                {
                    batch.Add(result);
                    if (result.Example is not null)
                    {
                        ordinal = result.Example.Ordinal + 1;
                    }

                    if (batch.Count == _options.BatchSize)
                    {
                        await writer.WriteAsync(StartAnalysis(batch, workers, cancellationToken), cancellationToken).ConfigureAwait(false);
                        batch = new List<ReadResult>(_options.BatchSize);
                    }
                }
            }

            if (batch.Count > 0)
            {
                await writer.WriteAsync(StartAnalysis(batch, workers, cancellationToken), cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception e)
        {
            failure = e;
        }

        writer.TryComplete(failure);
    }

    private void AddIssue(DataIssue issue, RunState? run)
    {
        _counters.Issues++;
        if (_reportIssues.Count < _options.MaxIssuesInReport)
        {
            _reportIssues.Add(issue);
        }

        run?.IssueLog.WriteLine(Encoding.UTF8.GetString(DatasetJson.Serialize(issue)));
    }

    private DatasetReport BuildReport() => new()
    {
        Counters = _counters,
        Issues = _reportIssues,
        IssueCount = _counters.Issues,
    };

    private static StreamWriter OpenLog(string path) =>
        new(new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16), new UTF8Encoding(false)) { NewLine = "\n" };

    private async Task<DatasetManifest> CommitAsync(RunState run, List<DatasetInputRecord> inputs, CancellationToken cancellationToken)
    {
        var windows = new List<PackedWindow>();
        run.Packer.Flush(windows);
        _counters.Windows += windows.Count;
        run.PendingWindows.AddRange(windows);
        await CommitShardAsync(run, run.NextOrdinalToEmit, final: true, cancellationToken).ConfigureAwait(false);

        var reports = new List<DatasetFile>();
        string reportPath = Path.Combine(run.Staging, "report.json");
        await AtomicFile.WriteAllBytesAsync(reportPath, DatasetJson.Serialize(BuildReport()), cancellationToken).ConfigureAwait(false);
        reports.Add(await DescribeAsync(run.Staging, "report.json", 0, cancellationToken).ConfigureAwait(false));
        reports.Add(await DescribeAsync(run.Staging, "issues.jsonl", _counters.Issues, cancellationToken).ConfigureAwait(false));
        if (_options.KeepDropped)
        {
            reports.Add(await DescribeAsync(run.Staging, "dropped.jsonl", _counters.ExamplesDropped, cancellationToken).ConfigureAwait(false));
        }

        var manifest = new DatasetManifest
        {
            Fingerprint = run.Fingerprint,
            Tokenizer = _request.Tokenizer.Identity,
            Options = _options,
            Inputs = inputs,
            Counters = _counters,
            Shards = run.Shards,
            Features = run.Features,
            Reports = reports,
        };

        // The manifest goes last: a directory without one is not a dataset.
        File.Delete(Path.Combine(run.Staging, CheckpointFile));
        await AtomicFile.WriteAllBytesAsync(Path.Combine(run.Staging, ManifestFile), DatasetJson.Serialize(manifest), cancellationToken).ConfigureAwait(false);
        return manifest;
    }

    private static async Task<DatasetFile> DescribeAsync(string root, string relative, long rows, CancellationToken cancellationToken)
    {
        string path = Path.Combine(root, relative);
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None, 1 << 16, FileOptions.Asynchronous);
        stream.Flush(flushToDisk: true);
        byte[] hash = await SHA256.HashDataAsync(stream, cancellationToken).ConfigureAwait(false);
        return new DatasetFile(relative, stream.Length, Convert.ToHexStringLower(hash), rows);
    }

    private async Task CommitShardAsync(RunState run, long nextOrdinal, bool final, CancellationToken cancellationToken)
    {
        int index = run.Shards.Count;
        if (run.PendingWindows.Count > 0)
        {
            string relative = $"shards/shard-{index:D5}.arrow";
            List<PackedWindow> windows = run.PendingWindows;
            await AtomicFile.WriteAsync(Path.Combine(run.Staging, relative), s => ArrowShardWriter.WriteAsync(s, windows, cancellationToken), cancellationToken).ConfigureAwait(false);
            run.Shards.Add(await DescribeAsync(run.Staging, relative, windows.Count, cancellationToken).ConfigureAwait(false));
            run.PendingWindows = [];
        }

        if (run.PendingFeatures.Count > 0 || (final && run.Features.Count == 0))
        {
            string relative = $"features/part-{run.Features.Count:D5}.parquet";
            List<ExampleFeatures> rows = run.PendingFeatures;
            await AtomicFile.WriteAsync(
                Path.Combine(run.Staging, relative),
                s => ParquetSerializer.SerializeAsync(rows, s, new ParquetOptions { CompressionMethod = CompressionMethod.Snappy }, cancellationToken: cancellationToken),
                cancellationToken).ConfigureAwait(false);
            run.Features.Add(await DescribeAsync(run.Staging, relative, rows.Count, cancellationToken).ConfigureAwait(false));
            run.PendingFeatures = [];
        }

        if (final)
        {
            return;
        }

        var checkpoint = new BuildCheckpoint
        {
            Fingerprint = run.Fingerprint,
            NextOrdinal = nextOrdinal,
            Packer = run.Packer.SaveState(),
            Tokens = _counters.Tokens,
            TrainedTokens = _counters.TrainedTokens,
            Windows = _counters.Windows,
            Shards = [.. run.Shards],
            Features = [.. run.Features],
        };
        await AtomicFile.WriteAllBytesAsync(Path.Combine(run.Staging, CheckpointFile), DatasetJson.Serialize(checkpoint), cancellationToken).ConfigureAwait(false);
        AfterShardCommitted?.Invoke(run.Shards.Count);
    }

    /// <summary>Mutable state of one run.</summary>
    private sealed class RunState
    {
        public RunState(string staging, string fingerprint, long totalBytes, BuildCheckpoint? checkpoint, int sequenceLength, int padId)
        {
            Staging = staging;
            Fingerprint = fingerprint;
            TotalBytes = totalBytes;
            Packer = new SequencePacker(sequenceLength, padId);
            if (checkpoint is not null)
            {
                ResumeOrdinal = checkpoint.NextOrdinal;
                NextOrdinalToEmit = checkpoint.NextOrdinal;
                Packer.RestoreState(checkpoint.Packer);
                Shards = [.. checkpoint.Shards];
                Features = [.. checkpoint.Features];
                RestoredTokens = (checkpoint.Tokens, checkpoint.TrainedTokens, checkpoint.Windows);
            }
        }

        public string Staging { get; }

        public string Fingerprint { get; }

        public long TotalBytes { get; }

        public long ResumeOrdinal { get; }

        public long NextOrdinalToEmit { get; set; }

        public (long Tokens, long Trained, long Windows)? RestoredTokens { get; }

        public SequencePacker Packer { get; }

        public List<PackedWindow> PendingWindows { get; set; } = [];

        public List<ExampleFeatures> PendingFeatures { get; set; } = [];

        public List<DatasetFile> Shards { get; } = [];

        public List<DatasetFile> Features { get; } = [];

        public StreamWriter? Dropped { get; set; }

        public StreamWriter IssueLog { get; set; } = StreamWriter.Null;

        public DatasetBuildProgress Progress(string stage, DatasetCounters counters) =>
            new(stage, counters.BytesRead, TotalBytes, counters.ExamplesRead, counters.ExamplesKept, counters.Issues, counters.Tokens, Shards.Count);
    }
}
