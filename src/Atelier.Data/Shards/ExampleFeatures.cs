using System.Text.Json.Serialization;

namespace Atelier.Data.Shards;

/// <summary>
/// The per-example features of a dataset version, one Parquet row per input example (kept or
/// dropped), written to <c>features/part-NNNNN.parquet</c>.
/// </summary>
public sealed class ExampleFeatures
{
    /// <summary>Position in the build's input order.</summary>
    [JsonPropertyName("ordinal")]
    public long Ordinal { get; set; }

    /// <summary>Source file name.</summary>
    [JsonPropertyName("source_file")]
    public string SourceFile { get; set; } = string.Empty;

    /// <summary>1-based line (or Parquet row) in the source.</summary>
    [JsonPropertyName("source_line")]
    public long SourceLine { get; set; }

    /// <summary><c>chat</c> or <c>text</c>.</summary>
    [JsonPropertyName("kind")]
    public string Kind { get; set; } = string.Empty;

    /// <summary>Null when kept; otherwise the stage that dropped it: <c>exact_duplicate</c>, <c>near_duplicate</c>, <c>contaminated</c>, <c>quality:RULE</c>, <c>empty</c>.</summary>
    [JsonPropertyName("drop_reason")]
    public string? DropReason { get; set; }

    /// <summary>Hex of the 128-bit content hash of the normalised example.</summary>
    [JsonPropertyName("content_hash")]
    public string ContentHash { get; set; } = string.Empty;

    /// <summary>Tokens of the example (0 when dropped before tokenisation).</summary>
    [JsonPropertyName("token_count")]
    public int TokenCount { get; set; }

    /// <summary>Trained tokens (loss mask true).</summary>
    [JsonPropertyName("trained_token_count")]
    public int TrainedTokenCount { get; set; }

    /// <summary>Near-dup cluster: the ordinal of the cluster's kept example (-1 when near-dup detection did not run).</summary>
    [JsonPropertyName("dedup_cluster")]
    public long DedupCluster { get; set; }

    /// <summary>For an exact duplicate, the ordinal of the first occurrence; else -1.</summary>
    [JsonPropertyName("duplicate_of")]
    public long DuplicateOf { get; set; }

    /// <summary>Whether the example overlaps an eval item.</summary>
    [JsonPropertyName("contaminated")]
    public bool Contaminated { get; set; }

    /// <summary>The eval item it overlaps (<c>file:line</c>), or null.</summary>
    [JsonPropertyName("contamination_match")]
    public string? ContaminationMatch { get; set; }

    /// <summary>Gopher: whitespace words.</summary>
    [JsonPropertyName("quality_word_count")]
    public int QualityWordCount { get; set; }

    /// <summary>Gopher: mean word length.</summary>
    [JsonPropertyName("quality_mean_word_length")]
    public double QualityMeanWordLength { get; set; }

    /// <summary>Gopher: symbol-to-word ratio.</summary>
    [JsonPropertyName("quality_symbol_ratio")]
    public double QualitySymbolRatio { get; set; }

    /// <summary>Gopher: fraction of words with a letter.</summary>
    [JsonPropertyName("quality_alphabetic_fraction")]
    public double QualityAlphabeticFraction { get; set; }

    /// <summary>Gopher: English stop words.</summary>
    [JsonPropertyName("quality_stop_words")]
    public int QualityStopWords { get; set; }

    /// <summary>Gopher: fraction of duplicated lines.</summary>
    [JsonPropertyName("quality_duplicate_line_fraction")]
    public double QualityDuplicateLineFraction { get; set; }
}
