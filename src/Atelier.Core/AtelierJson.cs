using System.Text.Json;

namespace Atelier.Core;

/// <summary>
/// The JSON conventions of the API and of what the catalog stores as JSON (requests, plans,
/// summaries): snake_case, as Mistral's. One set of options, so that what the host serialises
/// and what a domain service reads back agree.
/// </summary>
public static class AtelierJson
{
    /// <summary>Serializer options for every response body.</summary>
    public static JsonSerializerOptions Options { get; } = new(JsonSerializerDefaults.Web)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DictionaryKeyPolicy = null,

        // Bodies are JSON for API clients, never embedded in HTML, so quotes and angle brackets
        // can stay readable in error messages.
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };
}
