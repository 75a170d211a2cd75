using System.Text.Json.Serialization;

namespace Atelier.Storage.Audit;

/// <summary>
/// One entry of the audit log. Events are chained: each carries the hash of the one before it,
/// and its own hash covers every other field, so editing, removing or reordering an entry breaks
/// the chain at that point.
/// </summary>
public sealed record AuditEvent
{
    /// <summary>Position in the log, from 1.</summary>
    [JsonPropertyOrder(0)]
    public long Seq { get; init; }

    /// <summary>When it happened (UTC, ISO 8601).</summary>
    [JsonPropertyOrder(1)]
    public DateTimeOffset Time { get; init; }

    /// <summary>What happened: <c>placement</c>, <c>placement_refused</c>, <c>deletion</c>, <c>key_created</c>, ...</summary>
    [JsonPropertyOrder(2)]
    public required string Type { get; init; }

    /// <summary>The workspace the artifact belongs to.</summary>
    [JsonPropertyOrder(3)]
    public string? Workspace { get; init; }

    /// <summary>Who did it (an API key id, or <c>system</c>).</summary>
    [JsonPropertyOrder(4)]
    public string? Actor { get; init; }

    /// <summary>The artifact's kind, e.g. <c>file</c>, <c>checkpoint</c>.</summary>
    [JsonPropertyOrder(5)]
    public string? ArtifactKind { get; init; }

    /// <summary>The artifact's id.</summary>
    [JsonPropertyOrder(6)]
    public string? ArtifactId { get; init; }

    /// <summary>The location involved.</summary>
    [JsonPropertyOrder(7)]
    public string? Location { get; init; }

    /// <summary>The residency policy judged.</summary>
    [JsonPropertyOrder(8)]
    public string? Policy { get; init; }

    /// <summary>Bytes placed.</summary>
    [JsonPropertyOrder(9)]
    public long? Bytes { get; init; }

    /// <summary>SHA-256 of the bytes placed, lower-case hex.</summary>
    [JsonPropertyOrder(10)]
    public string? Sha256 { get; init; }

    /// <summary>Free text: the reason of a refusal, or details.</summary>
    [JsonPropertyOrder(11)]
    public string? Detail { get; init; }

    /// <summary>Hash of the previous event (64 zeros for the first).</summary>
    [JsonPropertyOrder(12)]
    public string PrevHash { get; init; } = "";

    /// <summary>SHA-256 over this event's JSON without this field.</summary>
    [JsonPropertyOrder(13)]
    public string? Hash { get; init; }
}

/// <summary>The result of checking the chain of the whole log.</summary>
/// <param name="Valid">True when every event's hash and link check out.</param>
/// <param name="Events">How many events were checked.</param>
/// <param name="FirstBadSeq">The first event that does not check out, when invalid.</param>
/// <param name="Reason">Why, when invalid.</param>
/// <param name="HeadHash">The hash of the last valid event: publish it to detect truncation later.</param>
public sealed record AuditVerification(bool Valid, long Events, long? FirstBadSeq, string? Reason, string HeadHash);
