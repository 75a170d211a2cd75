using System.Text.Json.Serialization;
using Atelier.Data.Decontamination;
using Atelier.Data.Dedup;
using Atelier.Data.Quality;
using Atelier.Data.Readers;
using Atelier.Data.Tokenization;

namespace Atelier.Data.Building;

/// <summary>
/// Everything that decides a dataset version's bytes. Recorded in the manifest; two builds with the
/// same inputs, tokeniser and options give byte-identical shards.
/// </summary>
public sealed record DatasetBuildOptions
{
    /// <summary>Normalisation stage.</summary>
    public NormalizationOptions Normalization { get; init; } = new();

    /// <summary>Whether exact duplicates are dropped.</summary>
    public bool ExactDedup { get; init; } = true;

    /// <summary>Near-dup stage (MinHash LSH).</summary>
    public MinHashOptions NearDedup { get; init; } = new();

    /// <summary>Decontamination against the eval inputs.</summary>
    public DecontaminationOptions Decontamination { get; init; } = new();

    /// <summary>Gopher-style quality rules (off by default).</summary>
    public QualityOptions Quality { get; init; } = new();

    /// <summary>Window length of the packed shards (mistral-finetune's <c>seq_len</c>).</summary>
    public int SequenceLength { get; init; } = 4096;

    /// <summary>Windows per shard (a shard closes at the first example boundary past this).</summary>
    public int WindowsPerShard { get; init; } = 512;

    /// <summary>Write dropped examples, with why, to <c>dropped.jsonl</c>.</summary>
    public bool KeepDropped { get; init; } = true;

    /// <summary>Issues listed in the report (all are in <c>issues.jsonl</c>).</summary>
    public int MaxIssuesInReport { get; init; } = 100;

    /// <summary>Longest input line accepted, in bytes.</summary>
    public int MaxLineBytes { get; init; } = 64 << 20;

    /// <summary>Examples processed per parallel batch (does not change the output).</summary>
    [JsonIgnore]
    public int BatchSize { get; init; } = 256;

    /// <summary>Threads for the parallel stages (does not change the output).</summary>
    [JsonIgnore]
    public int MaxDegreeOfParallelism { get; init; } = Environment.ProcessorCount;
}

/// <summary>What to build: the inputs, the tokeniser, the options.</summary>
public sealed record DatasetBuildRequest
{
    /// <summary>Training inputs, read in this order.</summary>
    public required IReadOnlyList<DatasetInput> Training { get; init; }

    /// <summary>Eval/validation inputs: training examples overlapping them are dropped.</summary>
    public IReadOnlyList<DatasetInput> Eval { get; init; } = [];

    /// <summary>The model's tokeniser.</summary>
    public required ITextTokenizer Tokenizer { get; init; }

    /// <summary>Options.</summary>
    public DatasetBuildOptions Options { get; init; } = new();
}

/// <summary>Where a build stands, reported after every batch.</summary>
/// <param name="Stage">What runs now: <c>hashing-inputs</c>, <c>indexing-eval</c>, <c>replaying</c> (resume), <c>building</c>, <c>committing</c>, <c>done</c>.</param>
/// <param name="BytesRead">Source bytes read so far.</param>
/// <param name="TotalBytes">Source bytes of all training inputs.</param>
/// <param name="ExamplesRead">Examples read.</param>
/// <param name="ExamplesKept">Examples kept.</param>
/// <param name="Issues">Invalid examples reported.</param>
/// <param name="Tokens">Tokens of kept examples.</param>
/// <param name="ShardsWritten">Shards committed.</param>
public sealed record DatasetBuildProgress(string Stage, long BytesRead, long TotalBytes, long ExamplesRead, long ExamplesKept, long Issues, long Tokens, int ShardsWritten);
