using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Atelier.Storage.Audit;

/// <summary>
/// A signed statement that the audit log's event <see cref="Seq"/> had hash <see cref="Hash"/>.
/// The chain proves that no event was edited, removed or reordered relative to the others, but a
/// log rewritten whole is a chain of its own; a head kept away from the machine pins the history
/// up to its event, so a rewrite shows as a different hash at that sequence number. See
/// <c>docs/decisions/0004-signed-audit-heads.md</c>.
/// </summary>
public sealed record AuditHead
{
    /// <summary>The format of the signed bytes (<see cref="SignedBytes(long, string, DateTimeOffset)"/>) this version writes.</summary>
    public const string FormatV1 = "atelier-audit-head-v1";

    /// <summary>The format of the signed bytes; a verifier refuses one it does not know.</summary>
    [JsonPropertyOrder(0)]
    public string Format { get; init; } = FormatV1;

    /// <summary>The sequence number of the event the head names (0 for an empty log).</summary>
    [JsonPropertyOrder(1)]
    public required long Seq { get; init; }

    /// <summary>That event's hash, lower-case hex (<see cref="AuditLog.GenesisHash"/> for an empty log).</summary>
    [JsonPropertyOrder(2)]
    public required string Hash { get; init; }

    /// <summary>When the head was signed (UTC).</summary>
    [JsonPropertyOrder(3)]
    public required DateTimeOffset SignedAt { get; init; }

    /// <summary>SHA-256 of <see cref="PublicKey"/>'s bytes, lower-case hex: a short name for the key.</summary>
    [JsonPropertyOrder(4)]
    public required string KeyId { get; init; }

    /// <summary>The signing key's public half: an ECDSA P-256 SubjectPublicKeyInfo, base64.</summary>
    [JsonPropertyOrder(5)]
    public required string PublicKey { get; init; }

    /// <summary>ECDSA P-256 with SHA-256 over <see cref="SignedBytes()"/>, IEEE P1363 (r ‖ s), base64.</summary>
    [JsonPropertyOrder(6)]
    public required string Signature { get; init; }

    /// <summary>How heads are written as JSON: snake_case, as the API and the log.</summary>
    public static JsonSerializerOptions JsonOptions { get; } = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
    };

    /// <summary>The bytes the signature covers.</summary>
    public byte[] SignedBytes() => SignedBytes(Seq, Hash, SignedAt);

    /// <summary>
    /// The canonical bytes of a v1 head: <c>atelier-audit-head-v1\n{seq}\n{hash}\n{signed_at}</c>,
    /// with the time as UTC to the tick (<c>yyyy-MM-ddTHH:mm:ss.fffffffZ</c>). Built from the values,
    /// never from the JSON, so a head re-serialised with other spacing or another UTC offset for
    /// the same instant still verifies.
    /// </summary>
    public static byte[] SignedBytes(long seq, string hash, DateTimeOffset signedAt)
    {
        ArgumentNullException.ThrowIfNull(hash);
        var time = signedAt.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fffffff'Z'", CultureInfo.InvariantCulture);
        return Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{FormatV1}\n{seq}\n{hash}\n{time}"));
    }

    /// <summary>The head as JSON.</summary>
    public byte[] ToJson() => JsonSerializer.SerializeToUtf8Bytes(this, JsonOptions);

    /// <summary>Reads a head written by <see cref="ToJson"/> or returned by <c>GET /api/v1/audit/head</c>.</summary>
    /// <exception cref="InvalidDataException">The bytes are not a head.</exception>
    public static AuditHead Parse(ReadOnlySpan<byte> json)
    {
        try
        {
            return JsonSerializer.Deserialize<AuditHead>(json, JsonOptions) ?? throw new InvalidDataException("The audit head is empty (JSON null).");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"Not an audit head: {e.Message}", e);
        }
    }
}
