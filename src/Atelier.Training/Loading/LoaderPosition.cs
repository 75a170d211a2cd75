using System.Text.Json;
using System.Text.Json.Serialization;

namespace Atelier.Training.Loading;

/// <summary>
/// Where a loader stands: the next window it hands out is window <paramref name="Index"/> of epoch
/// <paramref name="Epoch"/>'s permutation. Saved in each checkpoint (<see cref="ToJson"/>) so that a
/// loader opened with it continues on exactly the next batch.
/// </summary>
/// <param name="Epoch">The epoch (0-based).</param>
/// <param name="Index">The position within the epoch, in <c>[0, WindowsPerEpoch)</c>.</param>
/// <param name="Seed">The shuffle seed.</param>
/// <param name="ShardFingerprint">The fingerprint of the shard list (<see cref="ShardSources.Fingerprint"/>).</param>
public sealed record LoaderPosition(int Epoch, long Index, ulong Seed, string ShardFingerprint)
{
    /// <summary>Serialises to JSON (snake_case), e.g. <c>{"epoch":1,"index":42,"seed":7,"shard_fingerprint":"sha256:..."}</c>.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, LoaderJsonContext.Default.LoaderPosition);

    /// <summary>Reads a position written by <see cref="ToJson"/>.</summary>
    /// <exception cref="InvalidDataException">The text is not a loader position.</exception>
    public static LoaderPosition FromJson(string json)
    {
        ArgumentNullException.ThrowIfNull(json);
        LoaderPosition? position;
        try
        {
            position = JsonSerializer.Deserialize(json, LoaderJsonContext.Default.LoaderPosition);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"Not a loader position: {e.Message}", e);
        }

        if (position is null || string.IsNullOrEmpty(position.ShardFingerprint) || position.Epoch < 0 || position.Index < 0)
        {
            throw new InvalidDataException("Not a loader position: it needs epoch >= 0, index >= 0, seed and shard_fingerprint.");
        }

        return position;
    }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, RespectRequiredConstructorParameters = true)]
[JsonSerializable(typeof(LoaderPosition))]
internal sealed partial class LoaderJsonContext : JsonSerializerContext;
