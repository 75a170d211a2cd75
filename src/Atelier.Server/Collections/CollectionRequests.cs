using System.Text.Json;
using System.Text.RegularExpressions;
using Atelier.Catalog;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Server.Hosting;
using Atelier.Storage.Placement;
using Atelier.Vectors;
using Atelier.Vectors.Collections;

namespace Atelier.Server.Collections;

/// <summary>A parsed create-collection request.</summary>
/// <param name="Name">The collection name.</param>
/// <param name="Config">Its configuration.</param>
/// <param name="Policy">Its residency policy name.</param>
public sealed record CreateCollectionRequest(string Name, CollectionConfig Config, string Policy);

/// <summary>A parsed search request.</summary>
/// <param name="Vector">The query.</param>
/// <param name="Limit">How many results.</param>
/// <param name="Filter">The payload filter, if any.</param>
/// <param name="Ef">The candidate list size, if given.</param>
/// <param name="WithPayload">Whether results carry payloads.</param>
/// <param name="WithVector">Whether results carry vectors.</param>
public sealed record SearchRequest(float[] Vector, int Limit, PayloadFilter? Filter, int? Ef, bool WithPayload, bool WithVector);

/// <summary>
/// Reads the JSON bodies of <c>/api/v1/collections</c> by hand, so that every problem names its field and
/// index (<c>points[3].vector[17]</c>) and a bad batch is refused whole, before anything is written.
/// </summary>
public static partial class CollectionRequests
{
    /// <summary>Most points one upsert request may carry.</summary>
    public const int MaxPointsPerRequest = 100_000;

    /// <summary>Most results one search may ask for.</summary>
    public const int MaxLimit = 10_000;

    /// <summary>Largest dimension a collection may have.</summary>
    public const int MaxDimension = 65_536;

    /// <summary>Most shards a collection may have.</summary>
    public const int MaxShards = 256;

    private const int MaxProblems = 20;
    private const int MaxPayloadFields = 256;

    /// <summary>Parses the body of the request as JSON; a malformed body is a 400.</summary>
    public static async Task<JsonDocument> ReadAsync(HttpRequest request, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(request);
        try
        {
            var document = await JsonDocument.ParseAsync(request.Body, new JsonDocumentOptions { MaxDepth = 32 }, cancellationToken).ConfigureAwait(false);
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                document.Dispose();
                throw new BadRequestException("The request body must be a JSON object.");
            }

            return document;
        }
        catch (JsonException e)
        {
            throw new BadRequestException($"The request body is not valid JSON (line {(e.LineNumber ?? 0) + 1}, byte {(e.BytePositionInLine ?? 0) + 1}).");
        }
    }

    /// <summary>Reads a create-collection body, naming each bad field.</summary>
    /// <remarks>The policy is the workspace's default when none is named, and must be one the workspace may use.</remarks>
    public static async Task<CreateCollectionRequest> ParseCreateAsync(JsonElement body, StorageLocations configured, PolicyCatalog policies, AtelierConfig config, string workspaceId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(configured);
        ArgumentNullException.ThrowIfNull(policies);
        ArgumentNullException.ThrowIfNull(config);
        var problems = new List<Problem>();
        string? name = null;
        int dimension = 0, shards = 1, m = 16, efConstruction = 128, efSearch = 64, productQuantization = 0;
        DistanceMetric? metric = null;
        var storage = VectorStorage.Float32;
        string? policy = null;
        var locations = new List<string>();
        foreach (var property in body.EnumerateObject())
        {
            var value = property.Value;
            switch (property.Name)
            {
                case "name":
                    name = value.ValueKind == JsonValueKind.String ? value.GetString() : null;
                    if (name is null || !NamePattern().IsMatch(name))
                    {
                        problems.Add(new Problem("Must be 1 to 64 characters of letters, digits, '-', '_' or '.', starting with a letter or digit.", Field: "name"));
                    }

                    break;
                case "dimension":
                    dimension = Int(value, "dimension", 1, MaxDimension, problems);
                    break;
                case "metric":
                    metric = (value.ValueKind == JsonValueKind.String ? value.GetString() : null) switch
                    {
                        "cosine" => DistanceMetric.Cosine,
                        "dot" => DistanceMetric.Dot,
                        "l2" => DistanceMetric.L2,
                        _ => null,
                    };
                    if (metric is null)
                    {
                        problems.Add(new Problem("Must be one of cosine, dot, l2.", Field: "metric"));
                    }

                    break;
                case "storage":
                    switch (value.ValueKind == JsonValueKind.String ? value.GetString() : null)
                    {
                        case "float32": storage = VectorStorage.Float32; break;
                        case "float16": storage = VectorStorage.Float16; break;
                        case "int8": storage = VectorStorage.Int8; break;
                        default: problems.Add(new Problem("Must be one of float32, float16, int8.", Field: "storage")); break;
                    }

                    break;
                case "shards":
                    shards = Int(value, "shards", 1, MaxShards, problems);
                    break;
                case "product_quantization":
                    // Bytes of PQ code a vector; whether they fit the dimension and the storage is the
                    // library's rule, checked below once both are known.
                    productQuantization = Int(value, "product_quantization", 0, MaxDimension, problems);
                    break;
                case "locations":
                    if (value.ValueKind != JsonValueKind.Array || value.GetArrayLength() == 0)
                    {
                        problems.Add(new Problem("Must be a non-empty array of location ids.", Field: "locations"));
                        break;
                    }

                    int i = 0;
                    foreach (var item in value.EnumerateArray())
                    {
                        var id = item.ValueKind == JsonValueKind.String ? item.GetString()! : null;
                        if (id is null || !configured.Contains(id))
                        {
                            problems.Add(new Problem($"No location '{item}' is configured; configured: {string.Join(", ", configured.All.Select(l => l.Id))}.", Field: $"locations[{i}]"));
                        }
                        else
                        {
                            locations.Add(id);
                        }

                        i++;
                    }

                    break;
                case "policy":
                    policy = value.ValueKind == JsonValueKind.String ? value.GetString()! : "";
                    if (policy.Length == 0 || policies.Find(policy) is null)
                    {
                        problems.Add(new Problem($"No residency policy '{value}' is defined; defined: {string.Join(", ", policies.All.Select(p => p.Name))}.", Field: "policy"));
                    }

                    break;
                case "hnsw":
                    if (value.ValueKind != JsonValueKind.Object)
                    {
                        problems.Add(new Problem("Must be an object with m, ef_construction and/or ef_search.", Field: "hnsw"));
                        break;
                    }

                    foreach (var knob in value.EnumerateObject())
                    {
                        switch (knob.Name)
                        {
                            case "m": m = Int(knob.Value, "hnsw.m", 2, 256, problems); break;
                            case "ef_construction": efConstruction = Int(knob.Value, "hnsw.ef_construction", 1, 4096, problems); break;
                            case "ef_search": efSearch = Int(knob.Value, "hnsw.ef_search", 1, 4096, problems); break;
                            default: problems.Add(new Problem("Unknown field; use m, ef_construction or ef_search.", Field: "hnsw." + knob.Name)); break;
                        }
                    }

                    break;
                default:
                    problems.Add(new Problem("Unknown field.", Field: property.Name));
                    break;
            }
        }

        if (name is null && !problems.Any(p => p.Field == "name"))
        {
            problems.Add(new Problem("Required.", Field: "name"));
        }

        if (dimension == 0 && !problems.Any(p => p.Field == "dimension"))
        {
            problems.Add(new Problem("Required: the number of components of every vector.", Field: "dimension"));
        }

        if (metric is null && !problems.Any(p => p.Field == "metric"))
        {
            problems.Add(new Problem("Required: cosine, dot or l2.", Field: "metric"));
        }

        ThrowIfAny(problems, "The collection definition is not valid.", "invalid_collection");
        var collectionConfig = new CollectionConfig
        {
            Dimension = dimension,
            Metric = metric!.Value,
            Storage = storage,
            Shards = shards,
            Locations = locations.Count > 0 ? locations : [config.Defaults.FileLocation],
            M = m,
            EfConstruction = efConstruction,
            EfSearch = efSearch,
            ProductQuantization = productQuantization,
        };
        try
        {
            collectionConfig.Validate();
        }
        catch (BadRequestException e)
        {
            // The only cross-field rule today is product quantisation's (int8 storage, a divisor of the dimension).
            problems.Add(new Problem(e.Message, Field: "product_quantization"));
            ThrowIfAny(problems, "The collection definition is not valid.", "invalid_collection");
        }

        return new CreateCollectionRequest(name!, collectionConfig, await policies.ChooseAsync(workspaceId, policy, cancellationToken).ConfigureAwait(false));
    }

    /// <summary>Reads an upsert body: <c>{"points": [{"id", "vector", "payload"}]}</c>. Any problem refuses the whole batch.</summary>
    public static List<CollectionPoint> ParsePoints(JsonElement body, int dimension)
    {
        var problems = new List<Problem>();
        int total = 0;
        if (!body.TryGetProperty("points", out var points) || points.ValueKind != JsonValueKind.Array)
        {
            throw Invalid("The body needs 'points': an array of {\"id\", \"vector\", \"payload\"}.", new Problem("Required: an array of points.", Field: "points"), "invalid_points");
        }

        int count = points.GetArrayLength();
        if (count == 0 || count > MaxPointsPerRequest)
        {
            throw Invalid($"An upsert carries 1 to {MaxPointsPerRequest} points; this one has {count}.", new Problem($"Must hold 1 to {MaxPointsPerRequest} points.", Field: "points"), "invalid_points");
        }

        var result = new List<CollectionPoint>(count);
        int index = 0;
        foreach (var point in points.EnumerateArray())
        {
            var path = $"points[{index++}]";
            int before = total;
            if (point.ValueKind != JsonValueKind.Object)
            {
                Add(problems, ref total, new Problem("Must be an object with 'id', 'vector' and optionally 'payload'.", Field: path));
                continue;
            }

            long id = -1;
            float[]? vector = null;
            var payload = Payload.Empty;
            bool hasId = false, hasVector = false;
            foreach (var property in point.EnumerateObject())
            {
                switch (property.Name)
                {
                    case "id":
                        hasId = true;
                        if (!TryId(property.Value, out id))
                        {
                            Add(problems, ref total, new Problem("Must be a non-negative integer.", Field: path + ".id"));
                        }

                        break;
                    case "vector":
                        hasVector = true;
                        vector = ParseVector(property.Value, dimension, path + ".vector", problems, ref total);
                        break;
                    case "payload":
                        payload = ParsePayload(property.Value, path + ".payload", problems, ref total) ?? Payload.Empty;
                        break;
                    default:
                        Add(problems, ref total, new Problem("Unknown field; a point has id, vector and payload.", Field: $"{path}.{property.Name}"));
                        break;
                }
            }

            if (!hasId)
            {
                Add(problems, ref total, new Problem("Required: a non-negative integer.", Field: path + ".id"));
            }

            if (!hasVector)
            {
                Add(problems, ref total, new Problem($"Required: an array of {dimension} numbers.", Field: path + ".vector"));
            }

            if (total == before && vector is not null)
            {
                result.Add(new CollectionPoint(id, vector, payload));
            }
        }

        ThrowIfAny(problems, $"{total} problem(s) in the points; nothing was written.", "invalid_points", total);
        return result;
    }

    /// <summary>Reads a delete body: <c>{"points": [id, ...]}</c>.</summary>
    public static List<long> ParseIds(JsonElement body)
    {
        if (!body.TryGetProperty("points", out var points) || points.ValueKind != JsonValueKind.Array || points.GetArrayLength() is 0 or > MaxPointsPerRequest)
        {
            throw Invalid("The body needs 'points': an array of point ids.", new Problem($"Required: an array of 1 to {MaxPointsPerRequest} ids.", Field: "points"), "invalid_points");
        }

        var problems = new List<Problem>();
        int total = 0;
        var ids = new List<long>();
        int i = 0;
        foreach (var item in points.EnumerateArray())
        {
            if (TryId(item, out var id))
            {
                ids.Add(id);
            }
            else
            {
                Add(problems, ref total, new Problem("Must be a non-negative integer.", Field: $"points[{i}]"));
            }

            i++;
        }

        ThrowIfAny(problems, $"{total} bad id(s); nothing was deleted.", "invalid_points", total);
        return ids;
    }

    /// <summary>Reads a search body: <c>{"vector", "limit", "filter", "ef", "with_payload", "with_vector"}</c>.</summary>
    public static SearchRequest ParseSearch(JsonElement body, int dimension)
    {
        var problems = new List<Problem>();
        int total = 0;
        float[]? vector = null;
        int limit = 10;
        int? ef = null;
        PayloadFilter? filter = null;
        bool withPayload = true, withVector = false;
        foreach (var property in body.EnumerateObject())
        {
            var value = property.Value;
            switch (property.Name)
            {
                case "vector":
                    vector = ParseVector(value, dimension, "vector", problems, ref total);
                    break;
                case "limit":
                    limit = Int(value, "limit", 1, MaxLimit, problems);
                    break;
                case "ef":
                    ef = Int(value, "ef", 1, 65_536, problems);
                    break;
                case "filter":
                    filter = PayloadFilter.Parse(value, "filter", problems);
                    break;
                case "with_payload" when value.ValueKind is JsonValueKind.True or JsonValueKind.False:
                    withPayload = value.GetBoolean();
                    break;
                case "with_vector" when value.ValueKind is JsonValueKind.True or JsonValueKind.False:
                    withVector = value.GetBoolean();
                    break;
                case "with_payload" or "with_vector":
                    problems.Add(new Problem("Must be true or false.", Field: property.Name));
                    break;
                default:
                    problems.Add(new Problem("Unknown field; a search has vector, limit, filter, ef, with_payload, with_vector.", Field: property.Name));
                    break;
            }
        }

        if (vector is null && !problems.Any(p => p.Field?.StartsWith("vector", StringComparison.Ordinal) == true))
        {
            problems.Add(new Problem($"Required: an array of {dimension} numbers.", Field: "vector"));
        }

        ThrowIfAny(problems, "The search request is not valid.", "invalid_search", Math.Max(total, problems.Count));
        return new SearchRequest(vector!, limit, filter, ef, withPayload, withVector);
    }

    /// <summary>Reads a point id from a route segment.</summary>
    public static long ParseRouteId(string id) =>
        long.TryParse(id, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var value)
            ? value
            : throw Invalid($"Point id '{id}' is not a non-negative integer.", new Problem("Must be a non-negative integer.", Field: "id"), "invalid_points");

    private static float[]? ParseVector(JsonElement element, int dimension, string path, List<Problem> problems, ref int total)
    {
        if (element.ValueKind != JsonValueKind.Array)
        {
            Add(problems, ref total, new Problem($"Must be an array of {dimension} numbers.", Field: path));
            return null;
        }

        int length = element.GetArrayLength();
        if (length != dimension)
        {
            Add(problems, ref total, new Problem($"Has dimension {length}; the collection expects {dimension}.", Field: path));
            return null;
        }

        var vector = new float[dimension];
        int i = 0;
        bool ok = true;
        foreach (var item in element.EnumerateArray())
        {
            // JSON has no NaN or Infinity; a client that sends them as strings, or a number beyond float's
            // range (which would become Infinity), gets the component named.
            if (item.ValueKind == JsonValueKind.Number && item.TryGetDouble(out var d) && float.IsFinite((float)d))
            {
                vector[i] = (float)d;
            }
            else
            {
                Add(problems, ref total, new Problem(item.ValueKind == JsonValueKind.Number ? "Is outside the range of a float32." : $"Must be a finite number, not {item.GetRawText()}.", Field: $"{path}[{i}]"));
                ok = false;
            }

            i++;
        }

        return ok ? vector : null;
    }

    private static Payload? ParsePayload(JsonElement element, string path, List<Problem> problems, ref int total)
    {
        if (element.ValueKind == JsonValueKind.Null)
        {
            return Payload.Empty;
        }

        if (element.ValueKind != JsonValueKind.Object)
        {
            Add(problems, ref total, new Problem("Must be an object of string, number or boolean fields.", Field: path));
            return null;
        }

        var fields = new List<KeyValuePair<string, PayloadValue>>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        bool ok = true;
        foreach (var property in element.EnumerateObject())
        {
            if (property.Name.Length is 0 or > 128 || !seen.Add(property.Name))
            {
                Add(problems, ref total, new Problem("Field names are 1 to 128 characters and appear once.", Field: $"{path}.{property.Name}"));
                ok = false;
            }
            else if (PayloadValue.TryFrom(property.Value, out var value))
            {
                fields.Add(new(property.Name, value));
            }
            else
            {
                Add(problems, ref total, new Problem($"Must be a string, a finite number or a boolean, not {property.Value.ValueKind.ToString().ToLowerInvariant()}.", Field: $"{path}.{property.Name}"));
                ok = false;
            }
        }

        if (fields.Count > MaxPayloadFields)
        {
            Add(problems, ref total, new Problem($"At most {MaxPayloadFields} fields.", Field: path));
            ok = false;
        }

        return ok ? new Payload(fields) : null;
    }

    private static bool TryId(JsonElement element, out long id)
    {
        id = -1;
        return element.ValueKind == JsonValueKind.Number && element.TryGetInt64(out id) && id >= 0;
    }

    private static int Int(JsonElement element, string field, int min, int max, List<Problem> problems)
    {
        if (element.ValueKind == JsonValueKind.Number && element.TryGetInt32(out var value) && value >= min && value <= max)
        {
            return value;
        }

        problems.Add(new Problem($"Must be an integer from {min} to {max}.", Field: field));
        return 0;
    }

    private static void Add(List<Problem> problems, ref int total, Problem problem)
    {
        total++;
        if (problems.Count < MaxProblems)
        {
            problems.Add(problem);
        }
    }

    private static void ThrowIfAny(List<Problem> problems, string message, string code, int? total = null)
    {
        if (problems.Count > 0 || total > 0)
        {
            var first = problems.Count > 0 ? $" First: {problems[0]}." : "";
            throw new ValidationFailedException(message + first, problems, total ?? problems.Count, code);
        }
    }

    private static ValidationFailedException Invalid(string message, Problem problem, string code) => new(message, [problem], 1, code);

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    private static partial Regex NamePattern();
}
