namespace Atelier.Features.Schema;

/// <summary>The value types a feature column can hold.</summary>
public enum FeatureType
{
    /// <summary>A 64-bit signed integer.</summary>
    Int64,

    /// <summary>A 64-bit IEEE float.</summary>
    Float64,

    /// <summary>A UTF-8 string.</summary>
    String,

    /// <summary>A boolean.</summary>
    Bool,

    /// <summary>A fixed-dimension vector of 32-bit floats (an embedding).</summary>
    Float32Vector,
}

/// <summary>One typed feature column of a view. Every feature is nullable: a row may leave it out.</summary>
/// <param name="Name">The column name: letters, digits and <c>_</c>, starting with a letter.</param>
/// <param name="Type">The value type.</param>
/// <param name="Dimension">For <see cref="FeatureType.Float32Vector"/>: the vector length; 0 otherwise.</param>
public sealed record FeatureField(string Name, FeatureType Type, int Dimension = 0)
{
    /// <summary>The type as written in errors and the API, e.g. <c>float32_vector[768]</c>.</summary>
    public string TypeName => Type switch
    {
        FeatureType.Int64 => "int64",
        FeatureType.Float64 => "float64",
        FeatureType.String => "string",
        FeatureType.Bool => "bool",
        FeatureType.Float32Vector => $"float32_vector[{Dimension}]",
        _ => Type.ToString(),
    };

    /// <summary>Parses a type name of the API (<c>int64</c>, <c>float64</c>, <c>string</c>, <c>bool</c>, <c>float32_vector</c>).</summary>
    public static bool TryParseType(string? name, out FeatureType type)
    {
        switch (name?.Trim().ToLowerInvariant())
        {
            case "int64" or "long" or "int":
                type = FeatureType.Int64;
                return true;
            case "float64" or "double" or "float":
                type = FeatureType.Float64;
                return true;
            case "string" or "str":
                type = FeatureType.String;
                return true;
            case "bool" or "boolean":
                type = FeatureType.Bool;
                return true;
            case "float32_vector" or "vector" or "embedding":
                type = FeatureType.Float32Vector;
                return true;
            default:
                type = default;
                return false;
        }
    }
}

/// <summary>Where a view's rows come from.</summary>
public enum FeatureSourceKind
{
    /// <summary>Rows pushed through the API (an append-only log with event times).</summary>
    Push,

    /// <summary>Per-example feature Parquet files written by the data pipeline.</summary>
    Parquet,
}

/// <summary>What a user asks for when defining a feature view.</summary>
public sealed record FeatureViewSpec
{
    /// <summary>The view name: letters, digits, <c>_</c> and <c>-</c>, starting with a letter, at most 64.</summary>
    public required string Name { get; init; }

    /// <summary>The entity key column (e.g. <c>example_id</c>); its values are strings.</summary>
    public string EntityKey { get; init; } = "entity_key";

    /// <summary>The event-time column.</summary>
    public string TimestampField { get; init; } = "event_timestamp";

    /// <summary>The typed feature columns.</summary>
    public required IReadOnlyList<FeatureField> Fields { get; init; }

    /// <summary>How old a value may be and still be joined at a point in time; null for no limit.</summary>
    public TimeSpan? Ttl { get; init; }

    /// <summary>Where rows come from.</summary>
    public FeatureSourceKind Source { get; init; } = FeatureSourceKind.Push;

    /// <summary>The residency policy of the view's bytes; the configured file policy when null.</summary>
    public string? Policy { get; init; }

    /// <summary>Free text.</summary>
    public string? Description { get; init; }
}

/// <summary>One stored version of a feature view. A new schema makes a new version; data belongs to a version.</summary>
public sealed record FeatureView
{
    /// <summary>The id of this version (a UUID).</summary>
    public required string Id { get; init; }

    /// <summary>The owning workspace id.</summary>
    public required string Workspace { get; init; }

    /// <summary>The view name.</summary>
    public required string Name { get; init; }

    /// <summary>The version, from 1.</summary>
    public required int Version { get; init; }

    /// <summary>The entity key column.</summary>
    public required string EntityKey { get; init; }

    /// <summary>The event-time column.</summary>
    public required string TimestampField { get; init; }

    /// <summary>The typed feature columns.</summary>
    public required IReadOnlyList<FeatureField> Fields { get; init; }

    /// <summary>The point-in-time TTL; null for no limit.</summary>
    public TimeSpan? Ttl { get; init; }

    /// <summary>Where rows come from.</summary>
    public required FeatureSourceKind Source { get; init; }

    /// <summary>The residency policy name.</summary>
    public required string Policy { get; init; }

    /// <summary>Free text.</summary>
    public string? Description { get; init; }

    /// <summary>When the version was created.</summary>
    public required DateTimeOffset CreatedAt { get; init; }

    /// <summary>The index of the field named <paramref name="name"/>, or -1.</summary>
    public int IndexOf(string name)
    {
        for (var i = 0; i < Fields.Count; i++)
        {
            if (string.Equals(Fields[i].Name, name, StringComparison.Ordinal))
            {
                return i;
            }
        }

        return -1;
    }

    /// <summary>True when <paramref name="spec"/> describes the same schema, so creating it again is a no-op.</summary>
    public bool HasSameSchema(FeatureViewSpec spec, string policy)
    {
        ArgumentNullException.ThrowIfNull(spec);
        return EntityKey == spec.EntityKey && TimestampField == spec.TimestampField && Ttl == spec.Ttl
            && Source == spec.Source && Policy == policy && Fields.SequenceEqual(spec.Fields);
    }
}

/// <summary>One row of a view: the entity key, the event time, and a value (or null) per field in schema order.</summary>
/// <param name="EntityKey">The entity key.</param>
/// <param name="EventTime">When the values were true in the world.</param>
/// <param name="Values">Per field: <see cref="long"/>, <see cref="double"/>, <see cref="string"/>, <see cref="bool"/>, <c>float[]</c> or null.</param>
public sealed record FeatureRow(string EntityKey, DateTimeOffset EventTime, object?[] Values);
