using System.Globalization;
using System.Text.Json;
using Atelier.Core.Errors;

namespace Atelier.Features.Schema;

/// <summary>
/// Turns loosely typed rows (JSON elements from the API, CLR values from Parquet) into
/// <see cref="FeatureRow"/>s of a view, checking every row against the schema first. A batch with
/// any bad row is refused whole: the error names the row and field of the first problems, and
/// nothing is written.
/// </summary>
public static class FeatureRowValidator
{
    /// <summary>How many problems an error lists; the total is counted beyond that.</summary>
    public const int MaxReportedProblems = 20;

    /// <summary>Validates and converts <paramref name="rows"/>; throws <see cref="ValidationFailedException"/> naming the bad rows and fields.</summary>
    /// <param name="view">The schema to check against.</param>
    /// <param name="rows">Rows as column name to value.</param>
    /// <param name="source">What the rows came from, for messages (e.g. a file name); null for an API body.</param>
    public static List<FeatureRow> Convert(FeatureView view, IReadOnlyList<IReadOnlyDictionary<string, object?>> rows, string? source = null)
    {
        ArgumentNullException.ThrowIfNull(view);
        ArgumentNullException.ThrowIfNull(rows);
        var problems = new List<Problem>();
        var total = 0;
        var result = new List<FeatureRow>(rows.Count);
        for (var r = 0; r < rows.Count; r++)
        {
            var row = rows[r];
            var line = r + 1L;
            var before = total;
            string? key = null;
            DateTimeOffset time = default;
            var values = new object?[view.Fields.Count];
            foreach (var (name, raw) in row)
            {
                if (name == view.EntityKey)
                {
                    key = ReadKey(raw);
                    if (key is null)
                    {
                        Add(problems, ref total, new Problem($"The entity key '{name}' must be a non-empty string or an integer.", line, name, source));
                    }

                    continue;
                }

                if (name == view.TimestampField)
                {
                    if (!TryReadTime(raw, out time))
                    {
                        Add(problems, ref total, new Problem($"The event time '{name}' must be an RFC 3339 timestamp with an offset (e.g. 2026-01-31T12:00:00Z).", line, name, source));
                    }

                    continue;
                }

                var index = view.IndexOf(name);
                if (index < 0)
                {
                    Add(problems, ref total, new Problem(
                        $"Unknown field '{name}'; view '{view.Name}' v{view.Version} has {string.Join(", ", view.Fields.Select(f => f.Name))}.", line, name, source));
                    continue;
                }

                var field = view.Fields[index];
                if (!TryConvert(field, raw, out values[index], out var why))
                {
                    Add(problems, ref total, new Problem($"Field '{name}' expects {field.TypeName}: {why}.", line, name, source));
                }
            }

            if (!row.ContainsKey(view.EntityKey))
            {
                Add(problems, ref total, new Problem($"The entity key '{view.EntityKey}' is missing.", line, view.EntityKey, source));
            }

            if (!row.ContainsKey(view.TimestampField))
            {
                Add(problems, ref total, new Problem($"The event time '{view.TimestampField}' is missing.", line, view.TimestampField, source));
            }

            if (total == before)
            {
                // Segments store event times in microseconds (Parquet TIMESTAMP(MICROS)), so the
                // online store, the offline join and the files all agree on the same instant.
                var micros = new DateTimeOffset(time.UtcTicks - (time.UtcTicks % 10), TimeSpan.Zero);
                result.Add(new FeatureRow(key!, micros, values));
            }
        }

        if (total > 0)
        {
            throw new ValidationFailedException(
                $"{total} problem(s) in {rows.Count} row(s) for feature view '{view.Name}' v{view.Version}; nothing was written. First: {problems[0]}",
                problems,
                total,
                "invalid_feature_rows");
        }

        return result;
    }

    private static void Add(List<Problem> problems, ref int total, Problem problem)
    {
        total++;
        if (problems.Count < MaxReportedProblems)
        {
            problems.Add(problem);
        }
    }

    private static string? ReadKey(object? raw) => raw switch
    {
        string s when s.Length > 0 && s.Length <= 512 => s,
        long l => l.ToString(CultureInfo.InvariantCulture),
        int i => i.ToString(CultureInfo.InvariantCulture),
        JsonElement { ValueKind: JsonValueKind.String } e => ReadKey(e.GetString()),
        JsonElement { ValueKind: JsonValueKind.Number } e when e.TryGetInt64(out var l) => l.ToString(CultureInfo.InvariantCulture),
        _ => null,
    };

    /// <summary>Reads an event time: an RFC 3339 string with an offset, a <see cref="DateTimeOffset"/>, or a UTC <see cref="DateTime"/> (as Parquet gives them).</summary>
    public static bool TryReadTime(object? raw, out DateTimeOffset time)
    {
        switch (raw)
        {
            case DateTimeOffset dto:
                time = dto.ToUniversalTime();
                return true;
            case DateTime dt:
                // Parquet timestamps carry no offset; by convention (Arrow, pandas, Feast) they are UTC.
                time = new DateTimeOffset(DateTime.SpecifyKind(dt, DateTimeKind.Utc));
                return true;
            case JsonElement { ValueKind: JsonValueKind.String } e:
                return TryReadTime(e.GetString(), out time);
            case string s when s.Length > 0 && (s.EndsWith('Z') || s.EndsWith('z') || HasOffset(s)):
                if (DateTimeOffset.TryParse(s, CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal, out time))
                {
                    return true;
                }

                break;
        }

        time = default;
        return false;
    }

    private static bool HasOffset(string s) =>
        s.Length > 6 && (s[^6] is '+' or '-') && s[^3] == ':';

    /// <summary>Converts one value to the field's CLR representation; null stays null.</summary>
    public static bool TryConvert(FeatureField field, object? raw, out object? value, out string? why)
    {
        ArgumentNullException.ThrowIfNull(field);
        why = null;
        value = null;
        if (raw is null || raw is JsonElement { ValueKind: JsonValueKind.Null or JsonValueKind.Undefined })
        {
            return true;
        }

        switch (field.Type)
        {
            case FeatureType.Int64:
                switch (raw)
                {
                    case long l: value = l; return true;
                    case int i: value = (long)i; return true;
                    case short s: value = (long)s; return true;
                    case JsonElement { ValueKind: JsonValueKind.Number } e when e.TryGetInt64(out var l): value = l; return true;
                }

                break;
            case FeatureType.Float64:
                switch (raw)
                {
                    case double d: return Finite(d, out value, out why);
                    case float f: return Finite(f, out value, out why);
                    case long l: value = (double)l; return true;
                    case int i: value = (double)i; return true;

                    // A literal such as -1e999 parses to infinity; stored, it would make every later
                    // read of the view fail, so it is refused here with the row's other problems.
                    case JsonElement { ValueKind: JsonValueKind.Number } e: return Finite(e.GetDouble(), out value, out why);
                }

                break;
            case FeatureType.String:
                switch (raw)
                {
                    case string s: value = s; return true;
                    case JsonElement { ValueKind: JsonValueKind.String } e: value = e.GetString(); return true;
                }

                break;
            case FeatureType.Bool:
                switch (raw)
                {
                    case bool b: value = b; return true;
                    case JsonElement { ValueKind: JsonValueKind.True }: value = true; return true;
                    case JsonElement { ValueKind: JsonValueKind.False }: value = false; return true;
                }

                break;
            case FeatureType.Float32Vector:
                return TryConvertVector(field, raw, out value, out why);
        }

        why = $"got {Describe(raw)}";
        return false;
    }

    private static bool Finite(double d, out object? value, out string? why)
    {
        if (double.IsFinite(d))
        {
            value = d;
            why = null;
            return true;
        }

        value = null;
        why = "the number must be finite (it overflows a 64-bit float, or is NaN or infinity)";
        return false;
    }

    private static bool TryConvertVector(FeatureField field, object? raw, out object? value, out string? why)
    {
        value = null;
        why = null;
        float[] vector;
        switch (raw)
        {
            case float[] a:
                vector = a;
                break;
            case IReadOnlyList<float> list:
                vector = [.. list];
                break;
            case IReadOnlyList<double> list:
                vector = new float[list.Count];
                for (var i = 0; i < vector.Length; i++)
                {
                    vector[i] = (float)list[i];
                }

                break;
            case JsonElement { ValueKind: JsonValueKind.Array } e:
                vector = new float[e.GetArrayLength()];
                var j = 0;
                foreach (var item in e.EnumerateArray())
                {
                    if (item.ValueKind != JsonValueKind.Number)
                    {
                        why = $"element {j} is {item.ValueKind.ToString().ToLowerInvariant()}, not a number";
                        return false;
                    }

                    vector[j++] = item.GetSingle();
                }

                break;
            default:
                why = $"got {Describe(raw!)}";
                return false;
        }

        if (vector.Length != field.Dimension)
        {
            why = $"got {vector.Length} elements";
            return false;
        }

        foreach (var x in vector)
        {
            if (!float.IsFinite(x))
            {
                why = "elements must be finite";
                return false;
            }
        }

        value = vector;
        return true;
    }

    private static string Describe(object raw) => raw switch
    {
        JsonElement e => e.ValueKind switch
        {
            JsonValueKind.String => $"the string \"{Truncate(e.GetString())}\"",
            JsonValueKind.Number => $"the number {e.GetRawText()}",
            JsonValueKind.True or JsonValueKind.False => $"the boolean {e.GetRawText()}",
            JsonValueKind.Array => "an array",
            JsonValueKind.Object => "an object",
            _ => e.ValueKind.ToString().ToLowerInvariant(),
        },
        string s => $"the string \"{Truncate(s)}\"",
        _ => $"a value of type {raw.GetType().Name}",
    };

    private static string? Truncate(string? s) => s is { Length: > 40 } ? s[..40] + "..." : s;
}
