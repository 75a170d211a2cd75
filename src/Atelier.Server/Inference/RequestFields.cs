using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Atelier.Core.Errors;

namespace Atelier.Server.Inference;

/// <summary>
/// Reads the fields of a JSON request body and collects every problem with its field path
/// (<c>messages[2].role</c>), so one 422 names them all, as Mistral's API (FastAPI) does.
/// </summary>
internal sealed class RequestFields(JsonObject body)
{
    private readonly List<Problem> _problems = [];

    public JsonObject Body => body;

    /// <summary>Reads a JSON object body, or fails with 422 when it is not one.</summary>
    public static async Task<RequestFields> ReadAsync(HttpContext context)
    {
        JsonNode? node;
        try
        {
            node = await JsonNode.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted).ConfigureAwait(false);
        }
        catch (JsonException e)
        {
            throw new ValidationFailedException("The request body is not valid JSON.", [new Problem($"Invalid JSON at line {e.LineNumber + 1}, position {e.BytePositionInLine + 1}: {e.Message.Split(" Path:")[0]}", Field: "body")], 1, "invalid_request_error");
        }

        return node is JsonObject o
            ? new RequestFields(o)
            : throw new ValidationFailedException("The request body must be a JSON object.", [new Problem("The request body must be a JSON object.", Field: "body")], 1, "invalid_request_error");
    }

    public void Problem(string field, string message) => _problems.Add(new Problem(message, Field: field));

    /// <summary>Throws the 422 when any problem was found.</summary>
    public void ThrowIfInvalid()
    {
        if (_problems.Count > 0)
        {
            var first = _problems[0];
            var message = _problems.Count == 1 ? $"{first.Field}: {first.Message}" : $"{first.Field}: {first.Message} (and {_problems.Count - 1} more problems)";
            throw new ValidationFailedException(message, _problems, _problems.Count, "invalid_request_error");
        }
    }

    public string? String(string name, bool required = false) => String(body, name, name, required);

    public string? String(JsonObject o, string name, string path, bool required = false)
    {
        var node = o[name];
        if (node is null)
        {
            if (required)
            {
                Problem(path, "Field required.");
            }

            return null;
        }

        if (node is JsonValue v && v.TryGetValue<string>(out var s))
        {
            return s;
        }

        Problem(path, "Input should be a valid string.");
        return null;
    }

    public double? Number(string name, double min, double max)
    {
        var node = body[name];
        if (node is null)
        {
            return null;
        }

        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue<double>(out var d))
        {
            if (d < min || d > max)
            {
                Problem(name, string.Create(CultureInfo.InvariantCulture, $"Input should be between {min} and {max}, not {d}."));
                return null;
            }

            return d;
        }

        Problem(name, "Input should be a valid number.");
        return null;
    }

    public long? Integer(string name, long min, long max)
    {
        var node = body[name];
        if (node is null)
        {
            return null;
        }

        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue<long>(out var l))
        {
            if (l < min || l > max)
            {
                Problem(name, string.Create(CultureInfo.InvariantCulture, $"Input should be between {min} and {max}, not {l}."));
                return null;
            }

            return l;
        }

        Problem(name, "Input should be a valid integer.");
        return null;
    }

    public bool? Boolean(string name) => Boolean(body, name, name);

    public bool? Boolean(JsonObject o, string name, string path)
    {
        var node = o[name];
        if (node is null)
        {
            return null;
        }

        if (node is JsonValue v && v.GetValueKind() is JsonValueKind.True or JsonValueKind.False)
        {
            return v.GetValue<bool>();
        }

        Problem(path, "Input should be a valid boolean.");
        return null;
    }

    /// <summary>A string or a list of strings (<c>stop</c>, <c>input</c>); null when absent.</summary>
    public IReadOnlyList<string>? Strings(string name, bool required = false)
    {
        var node = body[name];
        switch (node)
        {
            case null:
                if (required)
                {
                    Problem(name, "Field required.");
                }

                return null;
            case JsonValue v when v.TryGetValue<string>(out var s):
                return [s];
            case JsonArray a:
                var list = new List<string>(a.Count);
                for (var i = 0; i < a.Count; i++)
                {
                    if (a[i] is JsonValue item && item.TryGetValue<string>(out var text))
                    {
                        list.Add(text);
                    }
                    else
                    {
                        Problem($"{name}[{i}]", "Input should be a valid string.");
                    }
                }

                return list;
            default:
                Problem(name, "Input should be a string or a list of strings.");
                return null;
        }
    }
}
