using System.Text.Json.Nodes;
using Atelier.Data.Model;
using Atelier.Inference.Serving;

namespace Atelier.Server.Inference;

/// <summary>What a chat request asks for beyond sampling: the conversation, its tools and the output's form.</summary>
internal sealed record ChatRequest
{
    public required IReadOnlyList<ChatMessage> Messages { get; init; }

    /// <summary>The final assistant message is a prefix the answer continues.</summary>
    public bool ContinueFinalAssistant { get; init; }

    /// <summary>The function tools as compact JSON (what the renderer writes), or null.</summary>
    public string? ToolsJson { get; init; }

    /// <summary>The function tools.</summary>
    public IReadOnlyList<JsonObject> Tools { get; init; } = [];

    /// <summary><c>auto</c>, <c>none</c>, <c>any</c> (<c>required</c> is the same) or <c>function</c>.</summary>
    public string ToolChoice { get; init; } = "auto";

    /// <summary>The function a <c>function</c> tool choice names.</summary>
    public string? ToolChoiceName { get; init; }

    /// <summary>Whether several calls may be made at once.</summary>
    public bool ParallelToolCalls { get; init; } = true;

    /// <summary><c>text</c>, <c>json_object</c> or <c>json_schema</c>.</summary>
    public string ResponseFormat { get; init; } = "text";

    /// <summary>The schema of a <c>json_schema</c> response format.</summary>
    public JsonObject? JsonSchema { get; init; }

    /// <summary>Whether the schema is strict.</summary>
    public bool StrictSchema { get; init; }

    /// <summary>Whether Mistral's safety prompt is prepended.</summary>
    public bool SafePrompt { get; init; }
}

/// <summary>Reads the chat-specific fields of a request, field for field as the Mistral SDK sends them.</summary>
internal static class ChatRequestReader
{
    public static ChatRequest Read(RequestFields fields)
    {
        var body = fields.Body;
        var messages = new List<ChatMessage>();
        var continueFinal = false;
        if (body["messages"] is not JsonArray array)
        {
            fields.Problem("messages", body["messages"] is null ? "Field required." : "Input should be a valid list.");
            array = [];
        }
        else if (array.Count == 0)
        {
            fields.Problem("messages", "At least one message is needed.");
        }

        for (var i = 0; i < array.Count; i++)
        {
            var path = $"messages[{i}]";
            if (array[i] is not JsonObject m)
            {
                fields.Problem(path, "Input should be an object.");
                continue;
            }

            var role = fields.String(m, "role", path + ".role") ?? "user";
            var content = Content(fields, m, path);
            switch (role)
            {
                case "system":
                    messages.Add(new ChatMessage { Role = ChatRole.System, Content = content ?? string.Empty });
                    break;
                case "user":
                    messages.Add(new ChatMessage { Role = ChatRole.User, Content = content ?? string.Empty });
                    break;
                case "assistant":
                    var prefix = fields.Boolean(m, "prefix", path + ".prefix") ?? false;
                    if (prefix)
                    {
                        if (i != array.Count - 1)
                        {
                            fields.Problem(path + ".prefix", "Only the last message may be an assistant prefix.");
                        }

                        continueFinal = true;
                    }

                    messages.Add(new ChatMessage { Role = ChatRole.Assistant, Content = content, ToolCalls = ToolCalls(fields, m, path) });
                    break;
                case "tool":
                    messages.Add(new ChatMessage
                    {
                        Role = ChatRole.Tool,
                        Content = content ?? string.Empty,
                        ToolCallId = fields.String(m, "tool_call_id", path + ".tool_call_id"),
                        Name = fields.String(m, "name", path + ".name"),
                    });
                    break;
                default:
                    fields.Problem(path + ".role", $"Input should be 'system', 'user', 'assistant' or 'tool', not '{role}'.");
                    break;
            }
        }

        if (messages.Count > 0 && !continueFinal && messages[^1].Role is not (ChatRole.User or ChatRole.Tool))
        {
            fields.Problem($"messages[{messages.Count - 1}].role", "The last message must be a user or tool message, or an assistant message with prefix: true.");
        }

        var (tools, toolsJson) = Tools(fields, body);
        var (choice, choiceName) = ToolChoice(fields, body, tools);
        var (format, schema, strict) = ResponseFormat(fields, body);
        return new ChatRequest
        {
            Messages = messages,
            ContinueFinalAssistant = continueFinal,
            Tools = tools,
            ToolsJson = toolsJson,
            ToolChoice = choice,
            ToolChoiceName = choiceName,
            ParallelToolCalls = fields.Boolean("parallel_tool_calls") ?? true,
            ResponseFormat = format,
            JsonSchema = schema,
            StrictSchema = strict,
            SafePrompt = fields.Boolean("safe_prompt") ?? false,
        };
    }

    /// <summary>A message's content: a string, or a list of text chunks (joined); other chunk types are refused.</summary>
    private static string? Content(RequestFields fields, JsonObject m, string path)
    {
        switch (m["content"])
        {
            case null:
                return null;
            case JsonValue v when v.TryGetValue<string>(out var s):
                return s;
            case JsonArray chunks:
                var text = new System.Text.StringBuilder();
                for (var i = 0; i < chunks.Count; i++)
                {
                    var type = (chunks[i] as JsonObject)?["type"]?.GetValue<string>();
                    if (type == "text" && chunks[i]!["text"] is JsonValue t && t.TryGetValue<string>(out var part))
                    {
                        text.Append(part);
                    }
                    else
                    {
                        fields.Problem($"{path}.content[{i}]", $"Only text chunks are supported by Atelier's text models, not '{type ?? "an unknown chunk"}'.");
                    }
                }

                return text.ToString();
            default:
                fields.Problem(path + ".content", "Input should be a string or a list of content chunks.");
                return null;
        }
    }

    private static List<ToolCall>? ToolCalls(RequestFields fields, JsonObject m, string path)
    {
        if (m["tool_calls"] is not JsonArray calls)
        {
            return null;
        }

        var list = new List<ToolCall>(calls.Count);
        for (var i = 0; i < calls.Count; i++)
        {
            var at = $"{path}.tool_calls[{i}]";
            if (calls[i] is not JsonObject call || call["function"] is not JsonObject function)
            {
                fields.Problem(at + ".function", "Field required.");
                continue;
            }

            var name = fields.String(function, "name", at + ".function.name", required: true);
            var arguments = function["arguments"] switch
            {
                JsonValue v when v.TryGetValue<string>(out var s) => s,
                JsonObject o => o.ToJsonString(),
                _ => "{}",
            };
            list.Add(new ToolCall(fields.String(call, "id", at + ".id") ?? string.Empty, name ?? string.Empty, arguments));
        }

        return list;
    }

    private static (List<JsonObject> Tools, string? Json) Tools(RequestFields fields, JsonObject body)
    {
        var tools = new List<JsonObject>();
        if (body["tools"] is null)
        {
            return (tools, null);
        }

        if (body["tools"] is not JsonArray array)
        {
            fields.Problem("tools", "Input should be a valid list.");
            return (tools, null);
        }

        for (var i = 0; i < array.Count; i++)
        {
            var path = $"tools[{i}]";
            var type = (array[i] as JsonObject)?["type"] is JsonValue t && t.TryGetValue<string>(out var s) ? s : "function";
            if (type != "function")
            {
                fields.Problem(path + ".type", $"Only function tools are supported, not '{type}' (a built-in connector of Mistral's cloud).");
                continue;
            }

            if ((array[i] as JsonObject)?["function"] is not JsonObject function)
            {
                fields.Problem(path + ".function", "Field required.");
                continue;
            }

            if (fields.String(function, "name", path + ".function.name", required: true) is { } name && !ValidToolName(name))
            {
                fields.Problem(path + ".function.name", "A function name is 1 to 64 characters of a-z, A-Z, 0-9, '_' and '-'.");
            }

            if (function["parameters"] is not (null or JsonObject))
            {
                fields.Problem(path + ".function.parameters", "Input should be a JSON schema object.");
            }

            tools.Add(new JsonObject { ["type"] = "function", ["function"] = function.DeepClone() });
        }

        return (tools, tools.Count == 0 ? null : new JsonArray([.. tools.Select(t => (JsonNode)t.DeepClone())]).ToJsonString());
    }

    private static bool ValidToolName(string name) =>
        name.Length is >= 1 and <= 64 && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-');

    private static (string Choice, string? Name) ToolChoice(RequestFields fields, JsonObject body, List<JsonObject> tools)
    {
        string choice;
        string? name = null;
        switch (body["tool_choice"])
        {
            case null:
                return ("auto", null);
            case JsonValue v when v.TryGetValue<string>(out var s):
                choice = s == "required" ? "any" : s;
                if (choice is not ("auto" or "none" or "any"))
                {
                    fields.Problem("tool_choice", $"Input should be 'auto', 'none', 'any', 'required' or a named function, not '{s}'.");
                    return ("auto", null);
                }

                break;
            case JsonObject o:
                choice = "function";
                name = o["function"] is JsonObject f ? fields.String(f, "name", "tool_choice.function.name", required: true) : null;
                if (name is null)
                {
                    fields.Problem("tool_choice.function.name", "Field required.");
                }

                break;
            default:
                fields.Problem("tool_choice", "Input should be a string or an object naming a function.");
                return ("auto", null);
        }

        if (choice is "any" or "function" && tools.Count == 0)
        {
            fields.Problem("tool_choice", $"tool_choice '{(choice == "function" ? name : "any")}' needs tools.");
        }
        else if (name is not null && !tools.Any(t => t["function"]?["name"]?.GetValue<string>() == name))
        {
            fields.Problem("tool_choice.function.name", $"No tool is named '{name}'.");
        }

        return (choice, name);
    }

    private static (string Format, JsonObject? Schema, bool Strict) ResponseFormat(RequestFields fields, JsonObject body)
    {
        if (body["response_format"] is null)
        {
            return ("text", null, false);
        }

        if (body["response_format"] is not JsonObject format)
        {
            fields.Problem("response_format", "Input should be an object.");
            return ("text", null, false);
        }

        var type = fields.String(format, "type", "response_format.type") ?? "text";
        switch (type)
        {
            case "text":
            case "json_object":
                return (type, null, false);
            case "json_schema":
                if (format["json_schema"] is not JsonObject spec || spec["schema"] is not JsonObject schema)
                {
                    fields.Problem("response_format.json_schema.schema", "Field required.");
                    return ("text", null, false);
                }

                return (type, schema, fields.Boolean(spec, "strict", "response_format.json_schema.strict") ?? false);
            default:
                fields.Problem("response_format.type", $"Input should be 'text', 'json_object' or 'json_schema', not '{type}'.");
                return ("text", null, false);
        }
    }
}

/// <summary>The sampling fields chat and FIM share.</summary>
internal sealed record SamplingFields
{
    public double? Temperature { get; init; }

    public double? TopP { get; init; }

    public long? MaxTokens { get; init; }

    public long? RandomSeed { get; init; }

    public long? N { get; init; }

    public double? PresencePenalty { get; init; }

    public double? FrequencyPenalty { get; init; }

    public IReadOnlyList<string> Stop { get; init; } = [];

    public bool Stream { get; init; }

    public static SamplingFields Read(RequestFields fields)
    {
        var promptMode = fields.String("prompt_mode");
        if (promptMode is not (null or "reasoning"))
        {
            fields.Problem("prompt_mode", $"Input should be 'reasoning' or null, not '{promptMode}'.");
        }

        var stop = fields.Strings("stop") ?? [];
        for (var i = 0; i < stop.Count; i++)
        {
            if (stop[i].Length == 0)
            {
                fields.Problem($"stop[{i}]", "A stop string cannot be empty.");
            }
        }

        return new SamplingFields
        {
            Temperature = fields.Number("temperature", 0, 2),
            TopP = fields.Number("top_p", 0, 1),
            MaxTokens = fields.Integer("max_tokens", 0, int.MaxValue),
            RandomSeed = fields.Integer("random_seed", 0, long.MaxValue),
            N = fields.Integer("n", 1, 16),
            PresencePenalty = fields.Number("presence_penalty", -2, 2),
            FrequencyPenalty = fields.Number("frequency_penalty", -2, 2),
            Stop = stop,
            Stream = fields.Boolean("stream") ?? false,
        };
    }

    public CompletionRequest ToRequest(ServedModel served, int[] prompt, string workspaceId) => new()
    {
        Model = served,
        Prompt = prompt,
        MaxTokens = MaxTokens is { } max ? (int)Math.Max(1, max) : null,
        Choices = (int)(N ?? 1),
        Temperature = (float)(Temperature ?? 0.7),
        TopP = (float)(TopP ?? 1),
        Seed = RandomSeed is { } seed ? (ulong)seed : null,
        Stop = Stop,
        PresencePenalty = (float)(PresencePenalty ?? 0),
        FrequencyPenalty = (float)(FrequencyPenalty ?? 0),
        CacheSalt = workspaceId,
    };
}
