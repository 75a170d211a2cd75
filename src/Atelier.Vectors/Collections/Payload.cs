using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Atelier.Vectors.Collections;

/// <summary>The kind of a payload value.</summary>
public enum PayloadKind : byte
{
    /// <summary>A string.</summary>
    String = 1,

    /// <summary>A number (held as a double).</summary>
    Number = 2,

    /// <summary>A boolean.</summary>
    Bool = 3,
}

/// <summary>One payload value: a string, a number or a boolean. Numbers compare by value (3 equals 3.0).</summary>
public readonly record struct PayloadValue(PayloadKind Kind, string? Text, double Number)
{
    /// <summary>A string value.</summary>
    public static PayloadValue Of(string text) => new(PayloadKind.String, text, 0);

    /// <summary>A number value.</summary>
    public static PayloadValue Of(double number) => new(PayloadKind.Number, null, number);

    /// <summary>A boolean value.</summary>
    public static PayloadValue Of(bool value) => new(PayloadKind.Bool, null, value ? 1 : 0);

    /// <summary>The value from a JSON element; false for null, objects and arrays.</summary>
    public static bool TryFrom(JsonElement element, out PayloadValue value)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.String:
                value = Of(element.GetString()!);
                return true;
            case JsonValueKind.Number when element.TryGetDouble(out var number) && double.IsFinite(number):
                value = Of(number);
                return true;
            case JsonValueKind.True:
                value = Of(true);
                return true;
            case JsonValueKind.False:
                value = Of(false);
                return true;
            default:
                value = default;
                return false;
        }
    }

    /// <summary>Writes the value as JSON.</summary>
    public void WriteTo(Utf8JsonWriter writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        switch (Kind)
        {
            case PayloadKind.String:
                writer.WriteStringValue(Text);
                break;
            case PayloadKind.Number:
                writer.WriteNumberValue(Number);
                break;
            default:
                writer.WriteBooleanValue(Number != 0);
                break;
        }
    }

    /// <summary>The value as a plain object for a JSON response.</summary>
    public object ToObject() => Kind switch
    {
        PayloadKind.String => Text!,
        PayloadKind.Number => Number,
        _ => Number != 0,
    };

    /// <inheritdoc />
    public override string ToString() => Kind switch
    {
        PayloadKind.String => Text!,
        PayloadKind.Number => Number.ToString(CultureInfo.InvariantCulture),
        _ => Number != 0 ? "true" : "false",
    };
}

/// <summary>
/// The payload of a point: named values, sorted by name. Immutable, so a search can read a point's payload
/// while an upsert replaces it.
/// </summary>
public sealed class Payload
{
    /// <summary>The empty payload.</summary>
    public static Payload Empty { get; } = new([]);

    private readonly KeyValuePair<string, PayloadValue>[] _fields;

    /// <summary>Creates a payload from fields with distinct names.</summary>
    public Payload(IEnumerable<KeyValuePair<string, PayloadValue>> fields)
    {
        ArgumentNullException.ThrowIfNull(fields);
        _fields = [.. fields];
        Array.Sort(_fields, static (a, b) => string.CompareOrdinal(a.Key, b.Key));
    }

    /// <summary>The fields, sorted by name.</summary>
    public ReadOnlySpan<KeyValuePair<string, PayloadValue>> Fields => _fields;

    /// <summary>The value of <paramref name="key"/>, when present.</summary>
    public bool TryGet(string key, out PayloadValue value)
    {
        int lo = 0;
        int hi = _fields.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            int c = string.CompareOrdinal(_fields[mid].Key, key);
            if (c == 0)
            {
                value = _fields[mid].Value;
                return true;
            }

            if (c < 0)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }

        value = default;
        return false;
    }

    /// <summary>The payload as a plain dictionary for a JSON response.</summary>
    public Dictionary<string, object> ToDictionary()
    {
        var result = new Dictionary<string, object>(_fields.Length, StringComparer.Ordinal);
        foreach (var (key, value) in _fields)
        {
            result[key] = value.ToObject();
        }

        return result;
    }

    /// <summary>The payload as compact UTF-8 JSON (how the log stores it).</summary>
    public byte[] ToUtf8Json()
    {
        if (_fields.Length == 0)
        {
            return "{}"u8.ToArray();
        }

        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            foreach (var (key, value) in _fields)
            {
                writer.WritePropertyName(key);
                value.WriteTo(writer);
            }

            writer.WriteEndObject();
        }

        return buffer.ToArray();
    }

    /// <summary>Reads a payload the log stored; throws <see cref="FormatException"/> when it is not one.</summary>
    public static Payload FromUtf8Json(ReadOnlySpan<byte> json)
    {
        if (json.SequenceEqual("{}"u8))
        {
            return Empty;
        }

        var reader = new Utf8JsonReader(json);
        using var document = JsonDocument.ParseValue(ref reader);
        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            throw new FormatException("A stored payload is not a JSON object.");
        }

        var fields = new List<KeyValuePair<string, PayloadValue>>();
        foreach (var property in document.RootElement.EnumerateObject())
        {
            if (!PayloadValue.TryFrom(property.Value, out var value))
            {
                throw new FormatException($"Stored payload field '{property.Name}' is not a string, number or boolean.");
            }

            fields.Add(new(property.Name, value));
        }

        return new Payload(fields);
    }

    /// <inheritdoc />
    public override string ToString() => Encoding.UTF8.GetString(ToUtf8Json());
}
