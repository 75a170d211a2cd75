using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Atelier.Core.Errors;

namespace Atelier.Inference.Constraints;

/// <summary>
/// What a constrained generation must produce: any JSON value, any JSON object (<c>json_object</c>
/// mode), or a value valid for a JSON Schema (<c>json_schema</c> mode and tool arguments), compiled
/// once and shared by every request that uses it (immutable, thread-safe).
/// </summary>
/// <remarks>
/// <para>Supported schema keywords: <c>type</c> (a name or a list), <c>properties</c>, <c>required</c>,
/// <c>additionalProperties</c> (a schema or a boolean; absent means closed in strict mode, as OpenAI and
/// Mistral strict mode do, and any value otherwise), <c>items</c>, <c>minItems</c>, <c>maxItems</c>,
/// <c>minLength</c>, <c>maxLength</c>, <c>enum</c>, <c>const</c>, <c>anyOf</c>, <c>oneOf</c> (as
/// <c>anyOf</c>: the alternatives of the schemas met in practice do not overlap), local <c>$ref</c>
/// (<c>#</c>, <c>#/$defs/..</c>, <c>#/definitions/..</c>, recursion included) with <c>$defs</c> and
/// <c>definitions</c>. Annotations are ignored: <c>title</c>, <c>description</c>, <c>default</c>,
/// <c>examples</c>, <c>$schema</c>, <c>$id</c>, <c>$comment</c>, <c>deprecated</c>, <c>readOnly</c>,
/// <c>writeOnly</c>, and <c>format</c> (an annotation by default since draft 2019-09). Any other
/// keyword is refused when the grammar is built.</para>
/// <para>The output is compact JSON: no whitespace except one optional space after <c>:</c> and
/// <c>,</c> (the <c>json.dumps</c> style Mistral models are trained on), object keys without escapes
/// unless a schema names them so, at most 15 integer digits, 15 fraction digits and 2 exponent digits
/// in a number, at most 32 levels of nesting inside an unconstrained value. A constrained generation
/// is therefore incomplete only when it reaches its token limit.</para>
/// </remarks>
public sealed class JsonGrammar
{
    /// <summary>The error code of a schema the grammar cannot enforce (HTTP 422).</summary>
    public const string UnsupportedSchemaCode = "unsupported_schema";

    private static readonly HashSet<string> Annotations =
        ["title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly", "format", "$defs", "definitions"];

    private static readonly HashSet<string> Supported =
        ["type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "minLength", "maxLength", "enum", "const", "anyOf", "oneOf", "$ref"];

    private JsonGrammar(GrammarNode root) => Root = root;

    internal GrammarNode Root { get; }

    /// <summary>Any JSON value.</summary>
    public static JsonGrammar AnyValue { get; } = new(GrammarNode.AnyValue);

    /// <summary>Any JSON object: <c>response_format</c> <c>{"type": "json_object"}</c>.</summary>
    public static JsonGrammar AnyObject { get; } = new(new GrammarNode(GrammarKind.Object, "$") { Additional = GrammarNode.AnyValue, Satisfiable = true });

    /// <summary>Compiles a JSON Schema given as text.</summary>
    /// <inheritdoc cref="FromSchema(JsonElement, bool, string)" />
    public static JsonGrammar FromSchema(string schemaJson, bool strict = false, string path = "$")
    {
        ArgumentNullException.ThrowIfNull(schemaJson);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(schemaJson);
        }
        catch (JsonException e)
        {
            throw Refuse(path, $"The schema at {path} is not JSON: {e.Message}");
        }

        using (document)
        {
            return FromSchema(document.RootElement, strict, path);
        }
    }

    /// <summary>Compiles a JSON Schema.</summary>
    /// <param name="schema">The schema (an object, or <c>true</c>/<c>false</c>).</param>
    /// <param name="strict">Strict mode: an object schema without <c>additionalProperties</c> is closed.</param>
    /// <param name="path">Where the schema sits in the request, for error messages (e.g. <c>response_format.json_schema.schema</c>).</param>
    /// <exception cref="ValidationFailedException">
    /// The schema uses a keyword the grammar does not support (the message names the keyword and its
    /// path), is malformed, or no value can satisfy it (e.g. <c>"enum": []</c>). Code <see cref="UnsupportedSchemaCode"/>, HTTP 422.
    /// </exception>
    public static JsonGrammar FromSchema(JsonElement schema, bool strict = false, string path = "$")
    {
        ArgumentNullException.ThrowIfNull(path);
        var compiler = new Compiler(schema, strict, path);
        GrammarNode root = compiler.Compile(schema, path);
        compiler.Finish(root);
        return new JsonGrammar(root);
    }

    internal static ValidationFailedException Refuse(string path, string message) =>
        new(message, [new Problem(message, Field: path)], 1, UnsupportedSchemaCode);

    /// <summary>Writes a JSON value compactly, escaping only what JSON requires: the one form a literal may take.</summary>
    internal static byte[] Canonical(JsonElement value)
    {
        var builder = new StringBuilder();
        Write(builder, value);
        return Encoding.UTF8.GetBytes(builder.ToString());

        static void Write(StringBuilder builder, JsonElement value)
        {
            switch (value.ValueKind)
            {
                case JsonValueKind.Object:
                    builder.Append('{');
                    bool first = true;
                    foreach (JsonProperty property in value.EnumerateObject())
                    {
                        builder.Append(first ? "" : ",");
                        first = false;
                        WriteString(builder, property.Name);
                        builder.Append(':');
                        Write(builder, property.Value);
                    }

                    builder.Append('}');
                    break;
                case JsonValueKind.Array:
                    builder.Append('[');
                    int i = 0;
                    foreach (JsonElement item in value.EnumerateArray())
                    {
                        builder.Append(i++ > 0 ? "," : "");
                        Write(builder, item);
                    }

                    builder.Append(']');
                    break;
                case JsonValueKind.String:
                    WriteString(builder, value.GetString()!);
                    break;
                default:
                    builder.Append(value.GetRawText());
                    break;
            }
        }
    }

    /// <summary>A JSON string with only the escapes JSON requires (quote, backslash, control characters).</summary>
    internal static void WriteString(StringBuilder builder, string text) => Atelier.Data.JsonStrings.Write(builder, text);

    private static byte[] KeyBytes(string name)
    {
        var builder = new StringBuilder(name.Length + 2);
        WriteString(builder, name);
        // The automaton matches a key's content; its quotes are the object's syntax.
        return Encoding.UTF8.GetBytes(builder.ToString(1, builder.Length - 2));
    }

    private sealed class Compiler(JsonElement document, bool strict, string rootPath)
    {
        private readonly Dictionary<string, GrammarNode> _refs = new(StringComparer.Ordinal);
        private readonly List<GrammarNode> _nodes = [];

        public GrammarNode Compile(JsonElement schema, string path)
        {
            switch (schema.ValueKind)
            {
                case JsonValueKind.True:
                    return Add(new GrammarNode(GrammarKind.Any, path));
                case JsonValueKind.False:
                    return Add(new GrammarNode(GrammarKind.Union, path));
                case JsonValueKind.Object:
                    break;
                default:
                    throw Refuse(path, $"The schema at {path} must be an object or a boolean, not {schema.ValueKind}.");
            }

            foreach (JsonProperty keyword in schema.EnumerateObject())
            {
                if (!Supported.Contains(keyword.Name) && !Annotations.Contains(keyword.Name))
                {
                    throw Refuse($"{path}.{keyword.Name}", $"The schema keyword '{keyword.Name}' at {path} is not supported by constrained decoding (supported: {string.Join(", ", Supported)}).");
                }
            }

            if (schema.TryGetProperty("$ref", out JsonElement reference))
            {
                ExpectOnly(schema, path, "$ref");
                return Reference(reference, path);
            }

            if (schema.TryGetProperty("anyOf", out JsonElement anyOf) || schema.TryGetProperty("oneOf", out anyOf))
            {
                string keyword = schema.TryGetProperty("anyOf", out _) ? "anyOf" : "oneOf";
                ExpectOnly(schema, path, keyword);
                if (anyOf.ValueKind != JsonValueKind.Array)
                {
                    throw Refuse($"{path}.{keyword}", $"'{keyword}' at {path} must be an array of schemas.");
                }

                var alternatives = new List<GrammarNode>();
                int i = 0;
                foreach (JsonElement alternative in anyOf.EnumerateArray())
                {
                    alternatives.Add(Compile(alternative, $"{path}.{keyword}[{i++}]"));
                }

                return Add(new GrammarNode(GrammarKind.Union, path) { Alternatives = [.. alternatives] });
            }

            List<string> types = Types(schema, path);
            if (schema.TryGetProperty("const", out JsonElement constant) || schema.TryGetProperty("enum", out _))
            {
                return Literals(schema, path, types, constant);
            }

            if (types.Count == 1)
            {
                return Typed(schema, path, types[0]);
            }

            var union = new List<GrammarNode>(types.Count);
            foreach (string type in types)
            {
                union.Add(Typed(schema, path, type));
            }

            return Add(new GrammarNode(GrammarKind.Union, path) { Alternatives = [.. union] });
        }

        /// <summary>Computes which nodes some finite value satisfies and refuses a schema none does.</summary>
        public void Finish(GrammarNode root)
        {
            // Least fixed point: start from "nothing is satisfiable" so a reference cycle with no way
            // out (an object that requires itself) stays unsatisfiable.
            bool changed = true;
            while (changed)
            {
                changed = false;
                foreach (GrammarNode node in _nodes)
                {
                    if (!node.Satisfiable && IsSatisfiable(node))
                    {
                        node.Satisfiable = true;
                        changed = true;
                    }
                }
            }

            if (!root.Satisfiable)
            {
                GrammarNode culprit = Culprit(root, []);
                throw Refuse(culprit.Path, $"No value satisfies the schema at {culprit.Path}{(culprit == root ? "" : $" (required by {root.Path})")}: constrained decoding cannot produce one.");
            }

            // Prune what can never be completed, so no step of a generation is a dead end.
            foreach (GrammarNode node in _nodes)
            {
                if (node.Kind == GrammarKind.Union)
                {
                    node.Alternatives = [.. node.Alternatives.Where(a => a.Satisfiable)];
                }
                else if (node.Kind == GrammarKind.Array && node.Items is { Satisfiable: false })
                {
                    node.MaxItems = 0;
                }
                else if (node.Kind == GrammarKind.Object && node.Additional is { Satisfiable: false })
                {
                    node.Additional = null;
                }
            }
        }

        private static bool IsSatisfiable(GrammarNode node)
        {
            switch (node.Kind)
            {
                case GrammarKind.Object:
                    for (int i = 0; i < node.PropertyNodes.Length; i++)
                    {
                        if (node.Required[i] && !node.PropertyNodes[i].Satisfiable)
                        {
                            return false;
                        }
                    }

                    return true;
                case GrammarKind.Array:
                    return node.MinItems <= node.MaxItems && (node.MinItems == 0 || node.Items!.Satisfiable);
                case GrammarKind.String:
                    return node.MinLength <= node.MaxLength;
                case GrammarKind.Literals:
                    return node.Literals.Length > 0;
                case GrammarKind.Union:
                    return node.Alternatives.Any(a => a.Satisfiable);
                case GrammarKind.Ref:
                    return node.Target!.Satisfiable;
                default:
                    return true;
            }
        }

        private static GrammarNode Culprit(GrammarNode node, HashSet<GrammarNode> seen)
        {
            if (!seen.Add(node))
            {
                return node;
            }

            switch (node.Kind)
            {
                case GrammarKind.Object:
                    for (int i = 0; i < node.PropertyNodes.Length; i++)
                    {
                        if (node.Required[i] && !node.PropertyNodes[i].Satisfiable)
                        {
                            return Culprit(node.PropertyNodes[i], seen);
                        }
                    }

                    return node;
                case GrammarKind.Array when node.MinItems <= node.MaxItems:
                    return Culprit(node.Items!, seen);
                case GrammarKind.Ref:
                    return Culprit(node.Target!, seen);
                default:
                    return node;
            }
        }

        private GrammarNode Add(GrammarNode node)
        {
            _nodes.Add(node);
            return node;
        }

        private static void ExpectOnly(JsonElement schema, string path, string keyword)
        {
            foreach (JsonProperty other in schema.EnumerateObject())
            {
                if (other.Name != keyword && !Annotations.Contains(other.Name))
                {
                    throw Refuse($"{path}.{other.Name}", $"The schema keyword '{other.Name}' at {path} cannot be combined with '{keyword}' by constrained decoding; move it into the '{keyword}' schemas.");
                }
            }
        }

        private GrammarNode Reference(JsonElement reference, string path)
        {
            string? pointer = reference.ValueKind == JsonValueKind.String ? reference.GetString() : null;
            if (pointer is null || !pointer.StartsWith('#'))
            {
                throw Refuse($"{path}.$ref", $"'$ref' at {path} must be a local reference (#, #/$defs/name or #/definitions/name); remote references are not supported.");
            }

            if (_refs.TryGetValue(pointer, out GrammarNode? known))
            {
                return known;
            }

            // Registered before the target compiles, so a recursive reference finds this node.
            var node = Add(new GrammarNode(GrammarKind.Ref, path));
            _refs[pointer] = node;
            if (!TryResolve(pointer, out JsonElement target))
            {
                throw Refuse($"{path}.$ref", $"'$ref' at {path} points to '{pointer}', which the schema does not define.");
            }

            node.Target = Compile(target, pointer == "#" ? rootPath : rootPath + pointer[1..].Replace('/', '.'));
            return node;
        }

        private bool TryResolve(string pointer, out JsonElement target)
        {
            target = document;
            if (pointer == "#")
            {
                return true;
            }

            if (!pointer.StartsWith("#/", StringComparison.Ordinal))
            {
                return false;
            }

            foreach (string raw in pointer[2..].Split('/'))
            {
                string part = Uri.UnescapeDataString(raw).Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal);
                if (target.ValueKind == JsonValueKind.Object && target.TryGetProperty(part, out JsonElement next))
                {
                    target = next;
                }
                else if (target.ValueKind == JsonValueKind.Array && int.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out int index) && index < target.GetArrayLength())
                {
                    target = target[index];
                }
                else
                {
                    return false;
                }
            }

            return true;
        }

        private static List<string> Types(JsonElement schema, string path)
        {
            var types = new List<string>();
            if (schema.TryGetProperty("type", out JsonElement type))
            {
                if (type.ValueKind == JsonValueKind.String)
                {
                    types.Add(type.GetString()!);
                }
                else if (type.ValueKind == JsonValueKind.Array)
                {
                    foreach (JsonElement item in type.EnumerateArray())
                    {
                        types.Add(item.ValueKind == JsonValueKind.String ? item.GetString()! : throw Refuse($"{path}.type", $"'type' at {path} must list type names."));
                    }
                }
                else
                {
                    throw Refuse($"{path}.type", $"'type' at {path} must be a type name or a list of them.");
                }

                foreach (string name in types)
                {
                    if (name is not ("object" or "array" or "string" or "number" or "integer" or "boolean" or "null"))
                    {
                        throw Refuse($"{path}.type", $"'type' at {path} names '{name}', which is not a JSON Schema type.");
                    }
                }

                // An integer is a number: with both, the number alone accepts the same values.
                if (types.Contains("number"))
                {
                    types.Remove("integer");
                }

                return [.. types.Distinct()];
            }

            // No type: the keywords present say which kinds of value the schema constrains.
            bool objectKeywords = Has(schema, "properties") || Has(schema, "required") || Has(schema, "additionalProperties");
            bool arrayKeywords = Has(schema, "items") || Has(schema, "minItems") || Has(schema, "maxItems");
            bool stringKeywords = Has(schema, "minLength") || Has(schema, "maxLength");
            if (objectKeywords)
            {
                types.Add("object");
            }

            if (arrayKeywords)
            {
                types.Add("array");
            }

            if (stringKeywords)
            {
                types.Add("string");
            }

            if (types.Count == 0 && !Has(schema, "enum") && !Has(schema, "const"))
            {
                types.Add("any");
            }

            return types;

            static bool Has(JsonElement schema, string name) => schema.TryGetProperty(name, out _);
        }

        private GrammarNode Typed(JsonElement schema, string path, string type)
        {
            switch (type)
            {
                case "any":
                    return Add(new GrammarNode(GrammarKind.Any, path));
                case "object":
                    return Object(schema, path);
                case "array":
                    var array = new GrammarNode(GrammarKind.Array, path)
                    {
                        Items = schema.TryGetProperty("items", out JsonElement items) ? Compile(items, path + ".items") : Add(new GrammarNode(GrammarKind.Any, path + ".items")),
                        MinItems = Count(schema, "minItems", path) ?? 0,
                        MaxItems = Count(schema, "maxItems", path) ?? int.MaxValue,
                    };
                    return Add(array);
                case "string":
                    return Add(new GrammarNode(GrammarKind.String, path)
                    {
                        MinLength = Count(schema, "minLength", path) ?? 0,
                        MaxLength = Count(schema, "maxLength", path) ?? int.MaxValue,
                    });
                case "number":
                    return Add(new GrammarNode(GrammarKind.Number, path));
                case "integer":
                    return Add(new GrammarNode(GrammarKind.Integer, path));
                case "boolean":
                    return Add(new GrammarNode(GrammarKind.Literals, path) { Literals = ["true"u8.ToArray(), "false"u8.ToArray()] });
                default:
                    return Add(new GrammarNode(GrammarKind.Literals, path) { Literals = ["null"u8.ToArray()] });
            }
        }

        private GrammarNode Object(JsonElement schema, string path)
        {
            var names = new List<string>();
            var nodes = new List<GrammarNode>();
            if (schema.TryGetProperty("properties", out JsonElement properties))
            {
                if (properties.ValueKind != JsonValueKind.Object)
                {
                    throw Refuse($"{path}.properties", $"'properties' at {path} must be an object.");
                }

                foreach (JsonProperty property in properties.EnumerateObject())
                {
                    names.Add(property.Name);
                    nodes.Add(Compile(property.Value, $"{path}.properties.{property.Name}"));
                }
            }

            GrammarNode? additional;
            if (schema.TryGetProperty("additionalProperties", out JsonElement extra))
            {
                additional = extra.ValueKind == JsonValueKind.False ? null : Compile(extra, path + ".additionalProperties");
            }
            else
            {
                additional = strict ? null : Add(new GrammarNode(GrammarKind.Any, path + ".additionalProperties"));
            }

            var required = new bool[names.Count];
            if (schema.TryGetProperty("required", out JsonElement requiredList))
            {
                if (requiredList.ValueKind != JsonValueKind.Array)
                {
                    throw Refuse($"{path}.required", $"'required' at {path} must be an array of property names.");
                }

                foreach (JsonElement item in requiredList.EnumerateArray())
                {
                    string name = item.ValueKind == JsonValueKind.String ? item.GetString()! : throw Refuse($"{path}.required", $"'required' at {path} must list property names.");
                    int index = names.IndexOf(name);
                    if (index < 0)
                    {
                        // A required property the schema does not describe takes the additional schema; a
                        // closed object cannot hold it at all.
                        names.Add(name);
                        nodes.Add(additional ?? Add(new GrammarNode(GrammarKind.Union, $"{path}.required.{name}")));
                        Array.Resize(ref required, names.Count);
                        index = names.Count - 1;
                    }

                    required[index] = true;
                }
            }

            return Add(new GrammarNode(GrammarKind.Object, path)
            {
                PropertyNames = [.. names.Select(KeyBytes)],
                PropertyNodes = [.. nodes],
                Required = required,
                Additional = additional,
            });
        }

        private GrammarNode Literals(JsonElement schema, string path, List<string> types, JsonElement constant)
        {
            var values = new List<JsonElement>();
            if (schema.TryGetProperty("const", out _))
            {
                values.Add(constant);
            }

            if (schema.TryGetProperty("enum", out JsonElement options))
            {
                if (options.ValueKind != JsonValueKind.Array)
                {
                    throw Refuse($"{path}.enum", $"'enum' at {path} must be an array.");
                }

                var allowed = options.EnumerateArray().Select(Canonical).ToList();
                if (values.Count > 0)
                {
                    // const and enum together: the const, if the enum has it.
                    byte[] only = Canonical(values[0]);
                    values = allowed.Any(a => a.AsSpan().SequenceEqual(only)) ? values : [];
                }
                else
                {
                    values.AddRange(options.EnumerateArray());
                }
            }

            // Keep the values of the declared types: a generated value must validate against both.
            var literals = values
                .Where(v => types.Count == 0 || types.Contains("any") || types.Any(t => OfType(v, t)))
                .Select(Canonical)
                .DistinctBy(Convert.ToBase64String)
                .ToArray();
            return Add(new GrammarNode(GrammarKind.Literals, path) { Literals = literals });
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

        private static int? Count(JsonElement schema, string keyword, string path)
        {
            if (!schema.TryGetProperty(keyword, out JsonElement value))
            {
                return null;
            }

            if (value.ValueKind != JsonValueKind.Number || !value.TryGetInt32(out int count) || count < 0)
            {
                throw Refuse($"{path}.{keyword}", $"'{keyword}' at {path} must be a non-negative integer.");
            }

            return count;
        }
    }
}
