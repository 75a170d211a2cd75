using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using Atelier.Storage.Chunks;

namespace Atelier.Training.Checkpoints;

/// <summary>
/// The manifest blob of a checkpoint: the only thing that makes it exist. Written last, through the
/// guard's atomic rename, after every chunk it names is committed at the same location. It carries
/// its own checksum so a damaged manifest is told apart from a missing one.
/// </summary>
internal sealed record CheckpointManifest
{
    public const string CurrentFormat = "atelier.checkpoint/1";
    public const string KeyPrefix = "checkpoints/";

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    public string Format { get; init; } = CurrentFormat;

    public required string Workspace { get; init; }

    public required string JobId { get; init; }

    public required long Step { get; init; }

    public required DateTimeOffset CreatedAt { get; init; }

    public required string Policy { get; init; }

    public required int ChunkSize { get; init; }

    public required CheckpointMetrics Metrics { get; init; }

    public required IReadOnlyList<CheckpointEntryInfo> Entries { get; init; }

    /// <summary>SHA-256 of the manifest serialised with this field null.</summary>
    public string? Checksum { get; init; }

    public static string IdOf(string jobId, long step) => $"{jobId}@{step.ToString(CultureInfo.InvariantCulture)}";

    public static string JobPrefix(string jobId) => $"{KeyPrefix}{jobId}/";

    // Fixed-width steps keep keys in step order when listed.
    public static string KeyOf(string jobId, long step) => $"{JobPrefix(jobId)}{step.ToString("D12", CultureInfo.InvariantCulture)}.json";

    /// <summary>Parses the job and step back out of a manifest key; false for anything else under the prefix.</summary>
    public static bool TryParseKey(string key, out string jobId, out long step)
    {
        jobId = "";
        step = -1;
        if (!key.StartsWith(KeyPrefix, StringComparison.Ordinal) || !key.EndsWith(".json", StringComparison.Ordinal))
        {
            return false;
        }

        var rest = key.AsSpan(KeyPrefix.Length, key.Length - KeyPrefix.Length - ".json".Length);
        var slash = rest.IndexOf('/');
        if (slash <= 0 || rest[(slash + 1)..].Contains('/'))
        {
            return false;
        }

        if (!long.TryParse(rest[(slash + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out step))
        {
            return false;
        }

        jobId = rest[..slash].ToString();
        return true;
    }

    public byte[] Serialize()
    {
        var unsigned = this with { Checksum = null };
        var body = JsonSerializer.SerializeToUtf8Bytes(unsigned, JsonOptions);
        return JsonSerializer.SerializeToUtf8Bytes(unsigned with { Checksum = Convert.ToHexStringLower(SHA256.HashData(body)) }, JsonOptions);
    }

    /// <summary>Parses and verifies a manifest; null with a reason when it is damaged.</summary>
    public static CheckpointManifest? TryParse(ReadOnlySpan<byte> bytes, out string? problem)
    {
        CheckpointManifest? manifest;
        try
        {
            manifest = JsonSerializer.Deserialize<CheckpointManifest>(bytes, JsonOptions);
        }
        catch (JsonException e)
        {
            problem = $"not valid JSON ({e.Message})";
            return null;
        }

        if (manifest is null || manifest.Format != CurrentFormat)
        {
            problem = $"unknown format '{manifest?.Format}'";
            return null;
        }

        var body = JsonSerializer.SerializeToUtf8Bytes(manifest with { Checksum = null }, JsonOptions);
        if (!string.Equals(manifest.Checksum, Convert.ToHexStringLower(SHA256.HashData(body)), StringComparison.Ordinal))
        {
            problem = "checksum mismatch";
            return null;
        }

        foreach (var entry in manifest.Entries)
        {
            var expected = entry.Length == 0 ? 0 : ((entry.Length - 1) / manifest.ChunkSize) + 1;
            if (entry.Chunks.Count != expected || !entry.Chunks.All(ChunkStore.IsHash))
            {
                problem = $"entry '{entry.Name}' lists {entry.Chunks.Count} chunks for {entry.Length} bytes";
                return null;
            }
        }

        problem = null;
        return manifest;
    }

    public CheckpointInfo ToInfo(IReadOnlyList<string> locations) => new()
    {
        Id = IdOf(JobId, Step),
        Workspace = Workspace,
        JobId = JobId,
        Step = Step,
        CreatedAt = CreatedAt,
        PolicyName = Policy,
        Metrics = Metrics,
        ChunkSize = ChunkSize,
        Entries = Entries,
        Locations = locations,
    };
}
