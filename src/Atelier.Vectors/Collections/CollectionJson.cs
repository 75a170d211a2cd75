using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Atelier.Vectors.Collections;

/// <summary>
/// The JSON form of a collection's configuration and record, as the catalog's <c>config_json</c> column and
/// the <c>config.json</c> blob at each location hold them: snake_case names and enum values
/// (<c>{"dimension":8,"metric":"l2","storage":"float32",...}</c>). Collections written before the store moved
/// out of the host were serialised with the host's response options, which these reproduce, so both read back.
/// </summary>
public static class CollectionJson
{
    private static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DictionaryKeyPolicy = null,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    /// <summary>The configuration as JSON.</summary>
    public static string Serialize(CollectionConfig config) => JsonSerializer.Serialize(config, Options);

    /// <summary>A configuration read back from <see cref="Serialize(CollectionConfig)"/>.</summary>
    /// <exception cref="VectorStoreCorruptedException">The JSON is not a collection configuration.</exception>
    public static CollectionConfig DeserializeConfig(string json)
    {
        try
        {
            return JsonSerializer.Deserialize<CollectionConfig>(json, Options) ?? throw new JsonException("null configuration");
        }
        catch (JsonException e)
        {
            throw new VectorStoreCorruptedException($"A collection configuration cannot be read: {e.Message}");
        }
    }

    /// <summary>The record as UTF-8 JSON: the <c>config.json</c> blob that marks a collection's prefix at each location.</summary>
    internal static byte[] SerializeToUtf8Bytes(CollectionRecord record) => JsonSerializer.SerializeToUtf8Bytes(record, Options);
}
