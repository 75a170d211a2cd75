using System.Text.Json;
using System.Text.Json.Serialization;
using Atelier.Data.Model;
using Atelier.Data.Packing;

namespace Atelier.Data.Building;

/// <summary>A file of a dataset version with its size and SHA-256.</summary>
/// <param name="Path">Path relative to the dataset directory.</param>
/// <param name="Bytes">Size.</param>
/// <param name="Sha256">Hex SHA-256 of the content.</param>
/// <param name="Rows">Windows (shards), examples (feature parts) or lines (<c>issues.jsonl</c>, <c>dropped.jsonl</c>); 0 for <c>report.json</c>.</param>
public sealed record DatasetFile(string Path, long Bytes, string Sha256, long Rows);

/// <summary>An input of the build as the manifest records it.</summary>
/// <param name="Name">Name.</param>
/// <param name="Role"><c>train</c> or <c>eval</c>.</param>
/// <param name="Format">Format.</param>
/// <param name="Bytes">Size.</param>
/// <param name="Sha256">Hex SHA-256 of the content.</param>
public sealed record DatasetInputRecord(string Name, string Role, string Format, long Bytes, string Sha256);

/// <summary>Counters of every stage.</summary>
public sealed record DatasetCounters
{
    /// <summary>Examples read (valid).</summary>
    public long ExamplesRead { get; set; }

    /// <summary>Source bytes read.</summary>
    public long BytesRead { get; set; }

    /// <summary>Invalid examples (issues).</summary>
    public long Issues { get; set; }

    /// <summary>Examples changed by normalisation.</summary>
    public long NormalizationChanged { get; set; }

    /// <summary>Examples empty after normalisation (dropped).</summary>
    public long NormalizationEmpty { get; set; }

    /// <summary>Exact duplicates dropped.</summary>
    public long ExactDuplicates { get; set; }

    /// <summary>Near duplicates dropped.</summary>
    public long NearDuplicates { get; set; }

    /// <summary>Near-dup clusters with more than one member.</summary>
    public long NearDuplicateClusters { get; set; }

    /// <summary>Eval items indexed for decontamination.</summary>
    public long EvalItems { get; set; }

    /// <summary>Eval items too short to check for contamination (not indexed).</summary>
    public long EvalItemsTooShort { get; set; }

    /// <summary>Contaminated examples dropped.</summary>
    public long Contaminated { get; set; }

    /// <summary>Examples dropped by quality rules, by rule.</summary>
    public SortedDictionary<string, long> QualityDropped { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Examples kept.</summary>
    public long ExamplesKept { get; set; }

    /// <summary>Tokens of kept examples.</summary>
    public long Tokens { get; set; }

    /// <summary>Trained tokens of kept examples.</summary>
    public long TrainedTokens { get; set; }

    /// <summary>Packed windows.</summary>
    public long Windows { get; set; }

    /// <summary>Valid examples dropped by curation (empty, duplicates, contaminated, quality): the lines of <c>dropped.jsonl</c>.</summary>
    public long ExamplesDropped => NormalizationEmpty + ExactDuplicates + NearDuplicates + Contaminated + QualityDropped.Values.Sum();

    /// <summary>Dropped examples by reason, as <c>dropped.jsonl</c> names the reasons; reasons that dropped nothing are left out.</summary>
    public SortedDictionary<string, long> DroppedByReason()
    {
        var reasons = new SortedDictionary<string, long>(StringComparer.Ordinal);
        Add("empty", NormalizationEmpty);
        Add("exact_duplicate", ExactDuplicates);
        Add("near_duplicate", NearDuplicates);
        Add("contaminated", Contaminated);
        foreach ((string rule, long count) in QualityDropped)
        {
            Add("quality:" + rule, count);
        }

        return reasons;

        void Add(string reason, long count)
        {
            if (count > 0)
            {
                reasons[reason] = count;
            }
        }
    }

    /// <summary>
    /// What curation did, in words: <c>kept 12 of 40 examples; dropped 20 exact_duplicate, 8
    /// contaminated; 2 invalid lines</c>.
    /// </summary>
    public string DescribeCuration()
    {
        var text = new System.Text.StringBuilder();
        text.Append(System.Globalization.CultureInfo.InvariantCulture, $"kept {ExamplesKept} of {ExamplesRead} examples");
        SortedDictionary<string, long> dropped = DroppedByReason();
        if (dropped.Count > 0)
        {
            text.Append("; dropped ").AppendJoin(", ", dropped.Select(d => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{d.Value} {d.Key}")));
        }

        if (Issues > 0)
        {
            text.Append(System.Globalization.CultureInfo.InvariantCulture, $"; {Issues} invalid lines");
        }

        return text.ToString();
    }
}

/// <summary>
/// A build that kept no example: there is nothing to train on, so no version is written (a
/// dataset of zero examples reported as a success hides that the data was all dropped).
/// </summary>
public sealed class EmptyDatasetException : Atelier.Core.Errors.AtelierException
{
    /// <summary>Creates the error from the build's counters.</summary>
    public EmptyDatasetException(DatasetCounters counters)
        : base("The build kept no example: " + (counters ?? throw new ArgumentNullException(nameof(counters))).DescribeCuration() + ".")
    {
        Counters = counters;
    }

    /// <summary>The counters of the build.</summary>
    public DatasetCounters Counters { get; }

    /// <inheritdoc />
    public override int StatusCode => 422;

    /// <inheritdoc />
    public override string Code => "empty_dataset";
}

/// <summary>The build report: counters and the first issues.</summary>
public sealed record DatasetReport
{
    /// <summary>Counters.</summary>
    public required DatasetCounters Counters { get; init; }

    /// <summary>The first issues (all are in <c>issues.jsonl</c>).</summary>
    public required IReadOnlyList<DataIssue> Issues { get; init; }

    /// <summary>All issues.</summary>
    public long IssueCount { get; init; }
}

/// <summary>
/// The manifest of a dataset version, written last: its presence means the version is complete.
/// Holds no timestamp, so the same build gives the same manifest.
/// </summary>
public sealed record DatasetManifest
{
    /// <summary>Format of this manifest.</summary>
    public string Format { get; init; } = "atelier-dataset/1";

    /// <summary>Hash of the inputs, tokeniser and options.</summary>
    public required string Fingerprint { get; init; }

    /// <summary>Tokeniser identity (name and vocabulary hash).</summary>
    public required string Tokenizer { get; init; }

    /// <summary>The options.</summary>
    public required DatasetBuildOptions Options { get; init; }

    /// <summary>The inputs.</summary>
    public required IReadOnlyList<DatasetInputRecord> Inputs { get; init; }

    /// <summary>Counters.</summary>
    public required DatasetCounters Counters { get; init; }

    /// <summary>Token shards (Arrow IPC).</summary>
    public required IReadOnlyList<DatasetFile> Shards { get; init; }

    /// <summary>Feature parts (Parquet).</summary>
    public required IReadOnlyList<DatasetFile> Features { get; init; }

    /// <summary>Report, issues, dropped examples.</summary>
    public required IReadOnlyList<DatasetFile> Reports { get; init; }
}

/// <summary>The outcome of a build.</summary>
/// <param name="Directory">The dataset directory (complete and immutable).</param>
/// <param name="Manifest">Its manifest.</param>
/// <param name="Report">Its report.</param>
/// <param name="ResumedFromShard">Shards reused from an interrupted build (0 for a fresh one).</param>
public sealed record DatasetBuildResult(string Directory, DatasetManifest Manifest, DatasetReport Report, int ResumedFromShard)
{
    /// <summary>Wall-clock time spent in each phase of the build (for benchmarks and the build log).</summary>
    public DatasetBuildTimings Timings { get; init; } = new();
}

/// <summary>
/// Time per stage. Analysis and tokenisation are summed over the worker threads (so they can
/// exceed the wall-clock time); the others are single-threaded stages.
/// </summary>
public sealed class DatasetBuildTimings
{
    private long _waiting;
    private long _analysis;
    private long _decisions;
    private long _tokenization;
    private long _packing;
    private long _writing;

    /// <summary>Hashing inputs, indexing eval files.</summary>
    public TimeSpan Preparation { get; set; }

    /// <summary>Time the pack-and-write stage waited for the stages before it.</summary>
    public TimeSpan WaitingForUpstream => TimeSpan.FromTicks(Interlocked.Read(ref _waiting));

    /// <summary>Workers: normalise, content hash, word hashes, MinHash, n-gram lookups, quality scores.</summary>
    public TimeSpan Analysis => TimeSpan.FromTicks(Interlocked.Read(ref _analysis));

    /// <summary>One thread: dedup and filter decisions, dropped log.</summary>
    public TimeSpan Decisions => TimeSpan.FromTicks(Interlocked.Read(ref _decisions));

    /// <summary>Workers: chat format and tokenisation.</summary>
    public TimeSpan Tokenization => TimeSpan.FromTicks(Interlocked.Read(ref _tokenization));

    /// <summary>One thread: features rows and packing.</summary>
    public TimeSpan Packing => TimeSpan.FromTicks(Interlocked.Read(ref _packing));

    /// <summary>One thread: shards, feature parts, checkpoints (fsync included).</summary>
    public TimeSpan Writing => TimeSpan.FromTicks(Interlocked.Read(ref _writing));

    internal void AddWaitingForUpstream(TimeSpan t) => Interlocked.Add(ref _waiting, t.Ticks);

    internal void AddAnalysis(TimeSpan t) => Interlocked.Add(ref _analysis, t.Ticks);

    internal void AddDecisions(TimeSpan t) => Interlocked.Add(ref _decisions, t.Ticks);

    internal void AddTokenization(TimeSpan t) => Interlocked.Add(ref _tokenization, t.Ticks);

    internal void AddPacking(TimeSpan t) => Interlocked.Add(ref _packing, t.Ticks);

    internal void AddWriting(TimeSpan t) => Interlocked.Add(ref _writing, t.Ticks);

    /// <inheritdoc />
    public override string ToString() =>
        FormattableString.Invariant($"prep {Preparation.TotalSeconds:F1}s, analysis {Analysis.TotalSeconds:F1}s (workers), decisions {Decisions.TotalSeconds:F1}s, tokenize {Tokenization.TotalSeconds:F1}s (workers), pack {Packing.TotalSeconds:F1}s, write {Writing.TotalSeconds:F1}s, writer waiting {WaitingForUpstream.TotalSeconds:F1}s");
}

/// <summary>The state of an interrupted build, written after each committed shard.</summary>
internal sealed record BuildCheckpoint
{
    public required string Fingerprint { get; init; }

    public required long NextOrdinal { get; init; }

    public required PackerState Packer { get; init; }

    public required long Tokens { get; init; }

    public required long TrainedTokens { get; init; }

    public required long Windows { get; init; }

    public required List<DatasetFile> Shards { get; init; }

    public required List<DatasetFile> Features { get; init; }
}

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, UseStringEnumConverter = true)]
[JsonSerializable(typeof(DatasetManifest))]
[JsonSerializable(typeof(DatasetReport))]
[JsonSerializable(typeof(BuildCheckpoint))]
[JsonSerializable(typeof(DatasetBuildOptions))]
[JsonSerializable(typeof(DataIssue))]
internal sealed partial class DatasetJsonContext : JsonSerializerContext;

/// <summary>Reads and writes the JSON artifacts of a dataset version.</summary>
public static class DatasetJson
{
    /// <summary>Reads a manifest.</summary>
    public static DatasetManifest ReadManifest(string path) =>
        JsonSerializer.Deserialize(File.ReadAllBytes(path), DatasetJsonContext.Default.DatasetManifest)
        ?? throw new InvalidDataException($"{path}: empty manifest");

    internal static byte[] Serialize(DatasetManifest manifest) => JsonSerializer.SerializeToUtf8Bytes(manifest, DatasetJsonContext.Default.DatasetManifest);

    internal static byte[] Serialize(DatasetReport report) => JsonSerializer.SerializeToUtf8Bytes(report, DatasetJsonContext.Default.DatasetReport);

    internal static byte[] Serialize(BuildCheckpoint checkpoint) => JsonSerializer.SerializeToUtf8Bytes(checkpoint, DatasetJsonContext.Default.BuildCheckpoint);

    internal static byte[] Serialize(DatasetBuildOptions options) => JsonSerializer.SerializeToUtf8Bytes(options, DatasetJsonContext.Default.DatasetBuildOptions);

    /// <summary>One line of <c>issues.jsonl</c>: compact, so that a line is an issue.</summary>
    internal static byte[] Serialize(DataIssue issue) => JsonSerializer.SerializeToUtf8Bytes(issue, CompactContext.DataIssue);

    private static readonly DatasetJsonContext CompactContext = new(new JsonSerializerOptions(DatasetJsonContext.Default.Options) { WriteIndented = false });

    internal static BuildCheckpoint? ReadCheckpoint(string path)
    {
        try
        {
            return JsonSerializer.Deserialize(File.ReadAllBytes(path), DatasetJsonContext.Default.BuildCheckpoint);
        }
        catch (Exception e) when (e is JsonException or IOException)
        {
            return null;
        }
    }
}
