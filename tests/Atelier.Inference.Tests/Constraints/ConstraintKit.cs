using System.Text;
using System.Text.Json;
using Atelier.Inference.Constraints;

namespace Atelier.Inference.Tests.Constraints;

/// <summary>A small vocabulary of realistic multi-byte pieces, a random sampler over what a constraint allows, and a validator for the supported schema subset.</summary>
internal static class ConstraintKit
{
    public const int Unk = 0;
    public const int Bos = 1;
    public const int Eos = 2;
    public const int ToolCalls = 3;
    public const int Args = 4;
    public const int CallId = 5;

    /// <summary>Control tokens 0–5, then every printable ASCII byte, then pieces that cross JSON's structure, unicode and partial UTF-8.</summary>
    public static List<byte[]?> Pieces()
    {
        var pieces = new List<byte[]?> { null, null, null, null, null, null };
        for (int b = 0x20; b < 0x7F; b++)
        {
            pieces.Add([(byte)b]);
        }

        string[] texts =
        [
            "{\"", "\":", "\": ", "\", \"", "\",\"", "\"a", "\"ab", "ab", "abc", "12", "0.", "1e", "-0", "00", "true", "false", "null", "tru", " ", "  ", "}", "]}", "\"}", "},", "}]", "[{", "[{\"",
            "\n", "\t", "\\", "\\\"", "\\n", "\\u", "\\u00e9", "\\ud83d", "é", "日本", "語", "😀", " the", "name", "arguments", "get_weather", "get", "_weather", "search", "\"name\": \"",
            "\"arguments\": ", "city", "Paris", ", ", ",", "[]", "{}", "\"\"", "\"x\"", "1.5", "e+", "E-", "\r\n",
        ];
        foreach (string text in texts)
        {
            pieces.Add(Encoding.UTF8.GetBytes(text));
        }

        // Halves of multi-byte characters: byte-level BPE vocabularies split them.
        byte[] nihon = Encoding.UTF8.GetBytes("日本");
        pieces.Add(nihon[..2]);
        pieces.Add(nihon[2..4]);
        pieces.Add(nihon[4..]);
        pieces.Add([0xF0, 0x9F]);
        pieces.Add([0x98, 0x80]);
        pieces.Add([0xC3]);
        pieces.Add([0xA9, 0x22]);
        pieces.Add([0xFF]);
        pieces.Add([0xED, 0xA0, 0x80]);
        return pieces;
    }

    public static TokenVocabulary Vocabulary(List<byte[]?> pieces) => new(pieces, [Eos]);

    /// <summary>Samples uniformly among the tokens the processor leaves finite until a stop token or <paramref name="maxTokens"/>.</summary>
    public static (List<int> Tokens, bool Stopped) Sample(ILogitsProcessor processor, int vocabularySize, Random random, int maxTokens = 4000)
    {
        var tokens = new List<int>();
        var logits = new float[vocabularySize];
        var allowed = new List<int>();
        while (tokens.Count < maxTokens)
        {
            Array.Clear(logits);
            processor.Process(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(tokens), logits);
            allowed.Clear();
            for (int i = 0; i < logits.Length; i++)
            {
                if (!float.IsNegativeInfinity(logits[i]))
                {
                    allowed.Add(i);
                }
            }

            Assert.True(allowed.Count > 0, $"Dead end after {Text(tokens)}");
            int token = allowed[random.Next(allowed.Count)];
            tokens.Add(token);
            if (token == Eos)
            {
                return (tokens, true);
            }
        }

        return (tokens, false);
    }

    private static readonly List<byte[]?> Default = Pieces();

    /// <summary>The text of tokens of <see cref="Pieces"/>, control tokens written as their names.</summary>
    public static string Text(IEnumerable<int> tokens)
    {
        var bytes = new List<byte>();
        foreach (int t in tokens)
        {
            bytes.AddRange(t switch
            {
                ToolCalls => "[TOOL_CALLS]"u8.ToArray(),
                Args => "[ARGS]"u8.ToArray(),
                CallId => "[CALL_ID]"u8.ToArray(),
                Eos => [],
                _ => Default[t] ?? [],
            });
        }

        return Encoding.UTF8.GetString([.. bytes]);
    }

    /// <summary>Bytes of tokens (strict UTF-8: invalid bytes throw).</summary>
    public static string StrictText(IEnumerable<int> tokens)
    {
        var bytes = new List<byte>();
        foreach (int t in tokens.Where(t => t != Eos))
        {
            bytes.AddRange(Default[t]!);
        }

        return new UTF8Encoding(false, true).GetString([.. bytes]);
    }
}

/// <summary>Validates a value against the schema subset the grammar supports, as the JSON Schema specification defines it.</summary>
internal static class SchemaValidator
{
    public static string? Validate(JsonElement value, JsonElement schema, bool strict) => Validate(value, schema, schema, strict, "$");

    private static string? Validate(JsonElement value, JsonElement schema, JsonElement root, bool strict, string path)
    {
        if (schema.ValueKind == JsonValueKind.True)
        {
            return null;
        }

        if (schema.ValueKind == JsonValueKind.False)
        {
            return $"{path}: false schema";
        }

        if (schema.TryGetProperty("$ref", out JsonElement reference))
        {
            JsonElement target = root;
            string pointer = reference.GetString()!;
            foreach (string part in pointer.Length > 1 ? pointer[2..].Split('/') : [])
            {
                target = target.GetProperty(part);
            }

            return Validate(value, target, root, strict, path);
        }

        foreach (string keyword in (string[])["anyOf", "oneOf"])
        {
            if (schema.TryGetProperty(keyword, out JsonElement alternatives))
            {
                int matches = alternatives.EnumerateArray().Count(a => Validate(value, a, root, strict, path) is null);
                if (matches == 0 || (keyword == "oneOf" && matches > 1))
                {
                    return $"{path}: {matches} {keyword} alternatives match";
                }
            }
        }

        if (schema.TryGetProperty("const", out JsonElement constant) && !JsonElement.DeepEquals(constant, value))
        {
            return $"{path}: not the const";
        }

        if (schema.TryGetProperty("enum", out JsonElement options) && !options.EnumerateArray().Any(o => JsonElement.DeepEquals(o, value)))
        {
            return $"{path}: not in the enum";
        }

        if (schema.TryGetProperty("type", out JsonElement type))
        {
            string[] types = type.ValueKind == JsonValueKind.String ? [type.GetString()!] : [.. type.EnumerateArray().Select(t => t.GetString()!)];
            if (!types.Any(t => OfType(value, t)))
            {
                return $"{path}: {value.ValueKind} is not {string.Join("|", types)}";
            }
        }

        switch (value.ValueKind)
        {
            case JsonValueKind.Object:
                var names = new HashSet<string>();
                foreach (JsonProperty property in value.EnumerateObject())
                {
                    if (!names.Add(property.Name))
                    {
                        return $"{path}: duplicate key {property.Name}";
                    }

                    if (schema.TryGetProperty("properties", out JsonElement properties) && properties.TryGetProperty(property.Name, out JsonElement sub))
                    {
                        if (Validate(property.Value, sub, root, strict, $"{path}.{property.Name}") is { } error)
                        {
                            return error;
                        }
                    }
                    else if (schema.TryGetProperty("additionalProperties", out JsonElement extra))
                    {
                        if (Validate(property.Value, extra, root, strict, $"{path}.{property.Name}") is { } error)
                        {
                            return error;
                        }
                    }
                    else if (strict && (schema.TryGetProperty("properties", out _) || schema.TryGetProperty("required", out _) || schema.TryGetProperty("type", out _)))
                    {
                        return $"{path}: additional property {property.Name} in strict mode";
                    }
                }

                if (schema.TryGetProperty("required", out JsonElement required))
                {
                    foreach (JsonElement name in required.EnumerateArray())
                    {
                        if (!names.Contains(name.GetString()!))
                        {
                            return $"{path}: missing {name.GetString()}";
                        }
                    }
                }

                break;
            case JsonValueKind.Array:
                int count = value.GetArrayLength();
                if (schema.TryGetProperty("minItems", out JsonElement min) && count < min.GetInt32())
                {
                    return $"{path}: fewer than minItems";
                }

                if (schema.TryGetProperty("maxItems", out JsonElement max) && count > max.GetInt32())
                {
                    return $"{path}: more than maxItems";
                }

                if (schema.TryGetProperty("items", out JsonElement items))
                {
                    int i = 0;
                    foreach (JsonElement item in value.EnumerateArray())
                    {
                        if (Validate(item, items, root, strict, $"{path}[{i++}]") is { } error)
                        {
                            return error;
                        }
                    }
                }

                break;
            case JsonValueKind.String:
                int length = value.GetString()!.EnumerateRunes().Count();
                if (schema.TryGetProperty("minLength", out JsonElement minLength) && length < minLength.GetInt32())
                {
                    return $"{path}: shorter than minLength";
                }

                if (schema.TryGetProperty("maxLength", out JsonElement maxLength) && length > maxLength.GetInt32())
                {
                    return $"{path}: longer than maxLength";
                }

                break;
        }

        return null;
    }

    private static bool OfType(JsonElement value, string type) => type switch
    {
        "object" => value.ValueKind == JsonValueKind.Object,
        "array" => value.ValueKind == JsonValueKind.Array,
        "string" => value.ValueKind == JsonValueKind.String,
        "number" => value.ValueKind == JsonValueKind.Number,
        "integer" => value.ValueKind == JsonValueKind.Number && value.TryGetDecimal(out decimal d) && d == decimal.Truncate(d),
        "boolean" => value.ValueKind is JsonValueKind.True or JsonValueKind.False,
        _ => value.ValueKind == JsonValueKind.Null,
    };
}

/// <summary>Random schemas of the supported subset, with names that share prefixes and enums whose numbers prefix one another.</summary>
internal static class RandomSchemas
{
    private static readonly string[] Names = ["a", "ab", "name", "city", "x\"y", "é", "arguments"];

    public static string Create(Random random)
    {
        var defs = new StringBuilder();
        bool withDefs = random.Next(4) == 0;
        string node = Node(random, 0, withDefs);
        if (withDefs)
        {
            // A recursive definition with a base case: a tree of optional children.
            return $"{{\"$defs\": {{\"tree\": {{\"type\": \"object\", \"properties\": {{\"v\": {{\"type\": \"integer\"}}, \"kids\": {{\"type\": \"array\", \"maxItems\": 2, \"items\": {{\"$ref\": \"#/$defs/tree\"}}}}}}, \"required\": [\"v\"], \"additionalProperties\": false}}}}, \"type\": \"object\", \"properties\": {{\"root\": {node}, \"t\": {{\"$ref\": \"#/$defs/tree\"}}}}, \"required\": [\"t\"]}}";
        }

        return node;
    }

    private static string Node(Random random, int depth, bool withDefs)
    {
        int kind = random.Next(depth >= 3 ? 6 : 11);
        switch (kind)
        {
            case 0: return "{\"type\": \"string\"}";
            case 1: return "{\"type\": \"integer\"}";
            case 2: return "{\"type\": \"number\"}";
            case 3: return "{\"type\": \"boolean\"}";
            case 4: return random.Next(2) == 0 ? "{\"enum\": [\"red\", \"re\", 1, 12, null, true]}" : "{\"const\": \"fixed\"}";
            case 5: return $"{{\"type\": \"string\", \"minLength\": {random.Next(3)}, \"maxLength\": {3 + random.Next(4)}}}";
            case 6 or 7:
                var properties = new List<string>();
                var required = new List<string>();
                foreach (string name in Names.OrderBy(_ => random.Next()).Take(random.Next(5)))
                {
                    string escaped = JsonSerializer.Serialize(name);
                    properties.Add($"{escaped}: {Node(random, depth + 1, withDefs)}");
                    if (random.Next(2) == 0)
                    {
                        required.Add(escaped);
                    }
                }

                string additional = random.Next(3) switch
                {
                    0 => ", \"additionalProperties\": false",
                    1 => ", \"additionalProperties\": {\"type\": \"integer\"}",
                    _ => "",
                };
                return $"{{\"type\": \"object\", \"properties\": {{{string.Join(", ", properties)}}}, \"required\": [{string.Join(", ", required)}]{additional}}}";
            case 8:
                int min = random.Next(3);
                return $"{{\"type\": \"array\", \"items\": {Node(random, depth + 1, withDefs)}, \"minItems\": {min}, \"maxItems\": {min + random.Next(3)}}}";
            case 9:
                return $"{{\"anyOf\": [{Node(random, depth + 1, withDefs)}, {Node(random, depth + 1, withDefs)}, {{\"type\": \"null\"}}]}}";
            default:
                return random.Next(2) == 0 ? "{\"type\": [\"string\", \"integer\", \"null\"]}" : "{\"type\": [\"object\", \"array\"], \"items\": {\"type\": \"boolean\"}, \"maxItems\": 3}";
        }
    }
}
