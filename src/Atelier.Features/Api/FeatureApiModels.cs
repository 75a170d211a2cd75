using System.Text.Json;
using System.Text.Json.Serialization;
using Atelier.Catalog;
using Atelier.Core.Errors;
using Atelier.Features.Materialization;
using Atelier.Features.Offline;
using Atelier.Features.Online;
using Atelier.Features.Schema;
using Atelier.Features.Storage;

namespace Atelier.Features.Api;

/// <summary>A field in a view definition on the wire.</summary>
/// <param name="Name">The column name.</param>
/// <param name="Type"><c>int64</c>, <c>float64</c>, <c>string</c>, <c>bool</c> or <c>float32_vector</c>.</param>
/// <param name="Dimension">The vector length, for vectors.</param>
public sealed record FieldBody(string? Name, string? Type, int? Dimension);

/// <summary>The body of <c>POST /api/v1/features/views</c>.</summary>
public sealed record CreateViewBody
{
    /// <summary>The view name.</summary>
    public string? Name { get; init; }

    /// <summary>The entity key column; <c>entity_key</c> when absent.</summary>
    public string? EntityKey { get; init; }

    /// <summary>The event-time column; <c>event_timestamp</c> when absent.</summary>
    public string? TimestampField { get; init; }

    /// <summary>The feature columns.</summary>
    public IReadOnlyList<FieldBody>? Fields { get; init; }

    /// <summary>The point-in-time TTL in seconds; none when absent.</summary>
    public double? TtlSeconds { get; init; }

    /// <summary><c>push</c> (default) or <c>parquet</c>.</summary>
    public string? Source { get; init; }

    /// <summary>The residency policy; the default when absent.</summary>
    public string? Policy { get; init; }

    /// <summary>Free text.</summary>
    public string? Description { get; init; }
}

/// <summary>The body of <c>POST /api/v1/features/views/{name}/rows</c>.</summary>
/// <param name="Rows">Rows as column name to value: the entity key, the event time (RFC 3339) and features.</param>
/// <param name="Version">The view version; the latest when absent.</param>
public sealed record PushBody(IReadOnlyList<Dictionary<string, JsonElement>>? Rows, int? Version);

/// <summary>The body of <c>POST /api/v1/features/views/{name}/online</c>.</summary>
/// <param name="Keys">Entity keys, at most 10,000.</param>
/// <param name="Version">The view version; the latest when absent.</param>
public sealed record OnlineBody(IReadOnlyList<string>? Keys, int? Version);

/// <summary>One entity row of a historical retrieval.</summary>
/// <param name="EntityKey">The entity key.</param>
/// <param name="EventTimestamp">The point in time (RFC 3339).</param>
public sealed record EntityRowBody(string? EntityKey, DateTimeOffset? EventTimestamp);

/// <summary>The body of <c>POST /api/v1/features/historical</c>.</summary>
/// <param name="EntityRows">The entity dataframe.</param>
/// <param name="Features">Feature references, <c>view:feature</c>.</param>
/// <param name="Format"><c>parquet</c> (default) or <c>json</c>.</param>
public sealed record HistoricalBody(IReadOnlyList<EntityRowBody>? EntityRows, IReadOnlyList<string>? Features, string? Format);

/// <summary>A filter of a training-set request.</summary>
/// <param name="Feature">The feature reference.</param>
/// <param name="Op"><c>gt</c>, <c>gte</c>, <c>lt</c>, <c>lte</c>, <c>eq</c> or <c>ne</c>.</param>
/// <param name="Value">The value to compare with.</param>
public sealed record FilterBody(string? Feature, string? Op, JsonElement Value);

/// <summary>The body of <c>POST /api/v1/features/training-sets</c>.</summary>
public sealed record TrainingSetBody
{
    /// <summary>The training set name.</summary>
    public string? Name { get; init; }

    /// <summary>The point in time.</summary>
    public DateTimeOffset? AsOf { get; init; }

    /// <summary>Output features; the first one's view is the spine.</summary>
    public IReadOnlyList<string>? Features { get; init; }

    /// <summary>Filters.</summary>
    public IReadOnlyList<FilterBody>? Filters { get; init; }

    /// <summary>The cluster feature.</summary>
    public string? OnePer { get; init; }

    /// <summary>The in-cluster preference.</summary>
    public string? PreferHighest { get; init; }

    /// <summary>The location; the default when absent.</summary>
    public string? Location { get; init; }
}

/// <summary>A view as the API shows it.</summary>
public sealed record ViewResponse
{
    /// <summary>Always <c>feature_view</c>.</summary>
    public string Object => "feature_view";

    /// <summary>The version's id.</summary>
    public required string Id { get; init; }

    /// <summary>The name.</summary>
    public required string Name { get; init; }

    /// <summary>The version.</summary>
    public required int Version { get; init; }

    /// <summary>The entity key column.</summary>
    public required string EntityKey { get; init; }

    /// <summary>The event-time column.</summary>
    public required string TimestampField { get; init; }

    /// <summary>The fields.</summary>
    public required IReadOnlyList<FieldBody> Fields { get; init; }

    /// <summary>The TTL in seconds.</summary>
    public double? TtlSeconds { get; init; }

    /// <summary>The source kind.</summary>
    public required string Source { get; init; }

    /// <summary>The residency policy.</summary>
    public required string Policy { get; init; }

    /// <summary>Free text.</summary>
    public string? Description { get; init; }

    /// <summary>Creation time.</summary>
    public required DateTimeOffset CreatedAt { get; init; }

    /// <summary>Segments in the log (only on a single-view read).</summary>
    public int? Segments { get; init; }

    /// <summary>Rows in the log (only on a single-view read).</summary>
    public long? Rows { get; init; }
}

/// <summary>One entity's answer in an online lookup.</summary>
/// <param name="EntityKey">The key.</param>
/// <param name="Found">Whether the store has a value.</param>
/// <param name="EventTimestamp">The value's event time.</param>
/// <param name="Features">Feature name to value (null when absent).</param>
public sealed record OnlineResult(string EntityKey, bool Found, DateTimeOffset? EventTimestamp, Dictionary<string, object?>? Features);

/// <summary>The answer of an online lookup, in the order of the keys asked.</summary>
/// <param name="View">The view.</param>
/// <param name="Version">Its version.</param>
/// <param name="Results">One per key.</param>
public sealed record OnlineResponse(string View, int Version, IReadOnlyList<OnlineResult> Results);

/// <summary>Conversions between the wire shapes and the feature store.</summary>
public static class FeatureApi
{
    /// <summary>Request and response JSON: snake_case, as the rest of <c>/api/v1</c>.</summary>
    public static JsonSerializerOptions Json { get; } = new(JsonSerializerDefaults.Web)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DictionaryKeyPolicy = null,
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    /// <summary>
    /// Reads a JSON body. A malformed one throws <see cref="JsonException"/>, which the API edge maps
    /// once, for every endpoint, to a 400 that names the field and position in words.
    /// </summary>
    public static async Task<T> ReadBodyAsync<T>(Stream body, CancellationToken cancellationToken)
        where T : class =>
        await JsonSerializer.DeserializeAsync<T>(body, Json, cancellationToken).ConfigureAwait(false)
            ?? throw new BadRequestException("The request body is null; a JSON object is expected.");

    /// <summary>The spec a create-view body asks for; problems are named by field.</summary>
    public static FeatureViewSpec ToSpec(CreateViewBody body)
    {
        ArgumentNullException.ThrowIfNull(body);
        var problems = new List<Problem>();
        var fields = new List<FeatureField>();
        if (body.Fields is null || body.Fields.Count == 0)
        {
            problems.Add(new Problem("A view needs at least one field.", Field: "fields"));
        }
        else
        {
            for (var i = 0; i < body.Fields.Count; i++)
            {
                var f = body.Fields[i];
                if (!FeatureField.TryParseType(f?.Type, out var type))
                {
                    problems.Add(new Problem($"Unknown type '{f?.Type}'; use int64, float64, string, bool or float32_vector.", Field: $"fields[{i}].type"));
                    continue;
                }

                fields.Add(new FeatureField(f!.Name ?? "", type, f.Dimension ?? 0));
            }
        }

        var source = FeatureSourceKind.Push;
        if (body.Source is not null && !Enum.TryParse(body.Source, ignoreCase: true, out source))
        {
            problems.Add(new Problem($"Unknown source '{body.Source}'; use push or parquet.", Field: "source"));
        }

        if (body.TtlSeconds is { } ttl && (!double.IsFinite(ttl) || ttl <= 0 || ttl > TimeSpan.MaxValue.TotalSeconds / 2))
        {
            problems.Add(new Problem("ttl_seconds must be a positive number.", Field: "ttl_seconds"));
        }

        if (problems.Count > 0)
        {
            throw new ValidationFailedException($"The feature view definition is not valid: {problems[0]}", problems, problems.Count, "invalid_feature_view");
        }

        return new FeatureViewSpec
        {
            Name = body.Name ?? "",
            EntityKey = body.EntityKey ?? "entity_key",
            TimestampField = body.TimestampField ?? "event_timestamp",
            Fields = fields,
            Ttl = body.TtlSeconds is { } s ? TimeSpan.FromSeconds(s) : null,
            Source = source,
            Policy = body.Policy,
            Description = body.Description,
        };
    }

    /// <summary>A view for the wire.</summary>
    public static ViewResponse ToResponse(FeatureView view, IReadOnlyList<FeatureSegment>? segments = null)
    {
        ArgumentNullException.ThrowIfNull(view);
        return new ViewResponse
        {
            Id = view.Id,
            Name = view.Name,
            Version = view.Version,
            EntityKey = view.EntityKey,
            TimestampField = view.TimestampField,
            Fields = view.Fields.Select(f => new FieldBody(f.Name, f.Type == FeatureType.Float32Vector ? "float32_vector" : f.TypeName, f.Type == FeatureType.Float32Vector ? f.Dimension : null)).ToArray(),
            TtlSeconds = view.Ttl?.TotalSeconds,
            Source = view.Source.ToString().ToLowerInvariant(),
            Policy = view.Policy,
            Description = view.Description,
            CreatedAt = view.CreatedAt,
            Segments = segments?.Count,
            Rows = segments?.Sum(s => s.Rows),
        };
    }

    /// <summary>The rows of a push body, as the store takes them.</summary>
    public static List<IReadOnlyDictionary<string, object?>> ToRows(PushBody body)
    {
        ArgumentNullException.ThrowIfNull(body);
        if (body.Rows is null)
        {
            throw new BadRequestException("The body needs 'rows': an array of objects.");
        }

        var rows = new List<IReadOnlyDictionary<string, object?>>(body.Rows.Count);
        foreach (var row in body.Rows)
        {
            var converted = new Dictionary<string, object?>(row?.Count ?? 0, StringComparer.Ordinal);
            if (row is not null)
            {
                foreach (var (name, value) in row)
                {
                    converted[name] = value;
                }
            }

            rows.Add(converted);
        }

        return rows;
    }

    /// <summary>An online answer for the wire.</summary>
    public static OnlineResponse ToResponse(FeatureView view, OnlineFeatureValue[] values)
    {
        ArgumentNullException.ThrowIfNull(view);
        ArgumentNullException.ThrowIfNull(values);
        var results = new OnlineResult[values.Length];
        for (var i = 0; i < values.Length; i++)
        {
            var value = values[i];
            if (value.Values is null)
            {
                results[i] = new OnlineResult(value.EntityKey, false, null, null);
                continue;
            }

            var features = new Dictionary<string, object?>(view.Fields.Count, StringComparer.Ordinal);
            for (var f = 0; f < view.Fields.Count; f++)
            {
                features[view.Fields[f].Name] = value.Values[f];
            }

            results[i] = new OnlineResult(value.EntityKey, true, value.EventTime, features);
        }

        return new OnlineResponse(view.Name, view.Version, results);
    }

    /// <summary>The entity rows of a historical body; problems are named by row.</summary>
    public static List<EntityRow> ToEntityRows(HistoricalBody body)
    {
        ArgumentNullException.ThrowIfNull(body);
        if (body.EntityRows is null || body.EntityRows.Count == 0)
        {
            throw new BadRequestException("The body needs 'entity_rows': an array of {entity_key, event_timestamp}.");
        }

        var problems = new List<Problem>();
        var rows = new List<EntityRow>(body.EntityRows.Count);
        for (var i = 0; i < body.EntityRows.Count; i++)
        {
            var row = body.EntityRows[i];
            if (string.IsNullOrEmpty(row?.EntityKey) || row.EventTimestamp is null)
            {
                if (problems.Count < FeatureRowValidator.MaxReportedProblems)
                {
                    problems.Add(new Problem("An entity row needs entity_key and event_timestamp.", Field: $"entity_rows[{i}]"));
                }

                continue;
            }

            rows.Add(new EntityRow(row.EntityKey, row.EventTimestamp.Value));
        }

        return problems.Count == 0
            ? rows
            : throw new ValidationFailedException($"Bad entity rows: {problems[0]}", problems, body.EntityRows.Count - rows.Count, "invalid_entity_rows");
    }

    /// <summary>The training-set request of a body.</summary>
    public static TrainingSetRequest ToRequest(TrainingSetBody body)
    {
        ArgumentNullException.ThrowIfNull(body);
        if (body.Name is null || body.AsOf is null || body.Features is null || body.Features.Count == 0)
        {
            throw new BadRequestException("A training set needs 'name', 'as_of' (RFC 3339) and 'features' (['view:feature', ...]).");
        }

        var filters = new List<FeatureFilter>();
        for (var i = 0; i < (body.Filters?.Count ?? 0); i++)
        {
            var f = body.Filters![i];
            if (f?.Feature is null || f.Op is null)
            {
                throw new BadRequestException($"filters[{i}] needs 'feature', 'op' and 'value'.", "invalid_filter");
            }

            filters.Add(new FeatureFilter(f.Feature, f.Op, f.Value));
        }

        return new TrainingSetRequest
        {
            Name = body.Name,
            AsOf = body.AsOf.Value,
            Features = body.Features,
            Filters = filters,
            OnePer = body.OnePer,
            PreferHighest = body.PreferHighest,
            Location = body.Location,
        };
    }
}
