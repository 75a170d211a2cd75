using System.Text.Json;
using Atelier.Core.Errors;

namespace Atelier.Vectors.Collections;

/// <summary>One condition on a payload field.</summary>
public abstract class PayloadCondition
{
    private protected PayloadCondition(string key) => Key = key;

    /// <summary>The payload field the condition reads.</summary>
    public string Key { get; }

    /// <summary>Whether the payload satisfies the condition (a missing field never does).</summary>
    public abstract bool Matches(Payload payload);
}

/// <summary><c>{"key": k, "match": {"value": v}}</c> or <c>{"match": {"any": [v, ...]}}</c>: the field equals one of the values.</summary>
public sealed class MatchCondition : PayloadCondition
{
    internal MatchCondition(string key, PayloadValue[] values)
        : base(key) => Values = values;

    /// <summary>The accepted values.</summary>
    public IReadOnlyList<PayloadValue> Values { get; }

    /// <inheritdoc />
    public override bool Matches(Payload payload)
    {
        ArgumentNullException.ThrowIfNull(payload);
        if (!payload.TryGet(Key, out var value))
        {
            return false;
        }

        for (int i = 0; i < Values.Count; i++)
        {
            if (Values[i] == value)
            {
                return true;
            }
        }

        return false;
    }
}

/// <summary><c>{"key": k, "range": {"gt", "gte", "lt", "lte"}}</c>: a numeric field within bounds.</summary>
public sealed class RangeCondition : PayloadCondition
{
    internal RangeCondition(string key, double? gt, double? gte, double? lt, double? lte)
        : base(key)
    {
        Gt = gt;
        Gte = gte;
        Lt = lt;
        Lte = lte;
    }

    /// <summary>Exclusive lower bound.</summary>
    public double? Gt { get; }

    /// <summary>Inclusive lower bound.</summary>
    public double? Gte { get; }

    /// <summary>Exclusive upper bound.</summary>
    public double? Lt { get; }

    /// <summary>Inclusive upper bound.</summary>
    public double? Lte { get; }

    /// <inheritdoc />
    public override bool Matches(Payload payload)
    {
        ArgumentNullException.ThrowIfNull(payload);
        if (!payload.TryGet(Key, out var value) || value.Kind != PayloadKind.Number)
        {
            return false;
        }

        double x = value.Number;
        return (Gt is not { } gt || x > gt)
            && (Gte is not { } gte || x >= gte)
            && (Lt is not { } lt || x < lt)
            && (Lte is not { } lte || x <= lte);
    }
}

/// <summary>
/// A payload filter as Qdrant writes it: every <c>must</c> condition holds, no <c>must_not</c> condition
/// holds, and at least one <c>should</c> condition holds when there are any.
/// </summary>
public sealed class PayloadFilter
{
    private const int MaxConditions = 64;
    private const int MaxAnyValues = 1024;

    private PayloadFilter(PayloadCondition[] must, PayloadCondition[] mustNot, PayloadCondition[] should)
    {
        Must = must;
        MustNot = mustNot;
        Should = should;
    }

    /// <summary>Conditions that must all hold.</summary>
    public IReadOnlyList<PayloadCondition> Must { get; }

    /// <summary>Conditions none of which may hold.</summary>
    public IReadOnlyList<PayloadCondition> MustNot { get; }

    /// <summary>Conditions at least one of which must hold (when any are given).</summary>
    public IReadOnlyList<PayloadCondition> Should { get; }

    /// <summary>Whether <paramref name="payload"/> passes the filter.</summary>
    public bool Matches(Payload payload)
    {
        for (int i = 0; i < Must.Count; i++)
        {
            if (!Must[i].Matches(payload))
            {
                return false;
            }
        }

        for (int i = 0; i < MustNot.Count; i++)
        {
            if (MustNot[i].Matches(payload))
            {
                return false;
            }
        }

        if (Should.Count == 0)
        {
            return true;
        }

        for (int i = 0; i < Should.Count; i++)
        {
            if (Should[i].Matches(payload))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Parses a filter object; each problem is added to <paramref name="problems"/> with its field path
    /// (e.g. <c>filter.must[1].range.gte</c>). Null when the element is null or absent, or has problems.
    /// </summary>
    public static PayloadFilter? Parse(JsonElement element, string path, List<Problem> problems)
    {
        ArgumentNullException.ThrowIfNull(problems);
        if (element.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null)
        {
            return null;
        }

        if (element.ValueKind != JsonValueKind.Object)
        {
            problems.Add(new Problem("A filter must be an object with 'must', 'must_not' and/or 'should' arrays.", Field: path));
            return null;
        }

        int before = problems.Count;
        PayloadCondition[] must = [], mustNot = [], should = [];
        foreach (var property in element.EnumerateObject())
        {
            var field = $"{path}.{property.Name}";
            switch (property.Name)
            {
                case "must":
                    must = ParseConditions(property.Value, field, problems);
                    break;
                case "must_not":
                    mustNot = ParseConditions(property.Value, field, problems);
                    break;
                case "should":
                    should = ParseConditions(property.Value, field, problems);
                    break;
                default:
                    problems.Add(new Problem($"Unknown filter clause '{property.Name}'; use must, must_not or should.", Field: field));
                    break;
            }
        }

        return problems.Count == before ? new PayloadFilter(must, mustNot, should) : null;
    }

    private static PayloadCondition[] ParseConditions(JsonElement element, string path, List<Problem> problems)
    {
        if (element.ValueKind != JsonValueKind.Array)
        {
            problems.Add(new Problem("Must be an array of conditions.", Field: path));
            return [];
        }

        if (element.GetArrayLength() > MaxConditions)
        {
            problems.Add(new Problem($"At most {MaxConditions} conditions per clause.", Field: path));
            return [];
        }

        var conditions = new List<PayloadCondition>();
        int i = 0;
        foreach (var item in element.EnumerateArray())
        {
            if (ParseCondition(item, $"{path}[{i}]", problems) is { } condition)
            {
                conditions.Add(condition);
            }

            i++;
        }

        return [.. conditions];
    }

    private static PayloadCondition? ParseCondition(JsonElement element, string path, List<Problem> problems)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            problems.Add(new Problem("A condition must be an object: {\"key\": ..., \"match\": {...}} or {\"key\": ..., \"range\": {...}}.", Field: path));
            return null;
        }

        string? key = null;
        JsonElement match = default, range = default;
        foreach (var property in element.EnumerateObject())
        {
            switch (property.Name)
            {
                case "key" when property.Value.ValueKind == JsonValueKind.String && property.Value.GetString() is { Length: > 0 } k:
                    key = k;
                    break;
                case "key":
                    problems.Add(new Problem("Must be a non-empty string naming a payload field.", Field: path + ".key"));
                    return null;
                case "match":
                    match = property.Value;
                    break;
                case "range":
                    range = property.Value;
                    break;
                default:
                    problems.Add(new Problem($"Unknown condition field '{property.Name}'; a condition has 'key' and one of 'match' or 'range'.", Field: $"{path}.{property.Name}"));
                    return null;
            }
        }

        if (key is null)
        {
            problems.Add(new Problem("A condition needs 'key', the payload field it tests.", Field: path + ".key"));
            return null;
        }

        bool hasMatch = match.ValueKind != JsonValueKind.Undefined;
        bool hasRange = range.ValueKind != JsonValueKind.Undefined;
        if (hasMatch == hasRange)
        {
            problems.Add(new Problem("A condition needs exactly one of 'match' or 'range'.", Field: path));
            return null;
        }

        return hasMatch ? ParseMatch(key, match, path + ".match", problems) : ParseRange(key, range, path + ".range", problems);
    }

    private static MatchCondition? ParseMatch(string key, JsonElement element, string path, List<Problem> problems)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            problems.Add(new Problem("Must be {\"value\": v} or {\"any\": [v, ...]}.", Field: path));
            return null;
        }

        PayloadValue[]? values = null;
        foreach (var property in element.EnumerateObject())
        {
            if (values is not null || property.Name is not ("value" or "any"))
            {
                problems.Add(new Problem("Must be {\"value\": v} or {\"any\": [v, ...]}, with exactly one of them.", Field: $"{path}.{property.Name}"));
                return null;
            }

            if (property.Name == "value")
            {
                if (!PayloadValue.TryFrom(property.Value, out var value))
                {
                    problems.Add(new Problem("Must be a string, a finite number or a boolean.", Field: path + ".value"));
                    return null;
                }

                values = [value];
                continue;
            }

            if (property.Value.ValueKind != JsonValueKind.Array || property.Value.GetArrayLength() is 0 or > MaxAnyValues)
            {
                problems.Add(new Problem($"Must be a non-empty array of at most {MaxAnyValues} values.", Field: path + ".any"));
                return null;
            }

            var list = new List<PayloadValue>();
            int i = 0;
            foreach (var item in property.Value.EnumerateArray())
            {
                if (!PayloadValue.TryFrom(item, out var value))
                {
                    problems.Add(new Problem("Must be a string, a finite number or a boolean.", Field: $"{path}.any[{i}]"));
                    return null;
                }

                list.Add(value);
                i++;
            }

            values = [.. list];
        }

        if (values is null)
        {
            problems.Add(new Problem("Must be {\"value\": v} or {\"any\": [v, ...]}.", Field: path));
            return null;
        }

        return new MatchCondition(key, values);
    }

    private static RangeCondition? ParseRange(string key, JsonElement element, string path, List<Problem> problems)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            problems.Add(new Problem("Must be an object with at least one of gt, gte, lt, lte.", Field: path));
            return null;
        }

        double? gt = null, gte = null, lt = null, lte = null;
        foreach (var property in element.EnumerateObject())
        {
            if (property.Value.ValueKind != JsonValueKind.Number || !property.Value.TryGetDouble(out var bound) || !double.IsFinite(bound))
            {
                problems.Add(new Problem("A range bound must be a finite number.", Field: $"{path}.{property.Name}"));
                return null;
            }

            switch (property.Name)
            {
                case "gt": gt = bound; break;
                case "gte": gte = bound; break;
                case "lt": lt = bound; break;
                case "lte": lte = bound; break;
                default:
                    problems.Add(new Problem($"Unknown range bound '{property.Name}'; use gt, gte, lt or lte.", Field: $"{path}.{property.Name}"));
                    return null;
            }
        }

        if (gt is null && gte is null && lt is null && lte is null)
        {
            problems.Add(new Problem("A range needs at least one of gt, gte, lt, lte.", Field: path));
            return null;
        }

        return new RangeCondition(key, gt, gte, lt, lte);
    }
}
