using System.Text.Json;
using Atelier.Core.Errors;

namespace Atelier.Data.Validation;

/// <summary>
/// Mistral's rules for one line of a fine-tuning file. An instruct line holds <c>messages</c>
/// (or <c>interactions</c>): roles system|user|assistant|tool, starting with system or user and
/// ending with assistant; an assistant message has content or tool_calls, not both; tool call ids
/// are 9 alphanumerics, function names match <c>^[a-zA-Z0-9_-]{1,64}$</c>, arguments are a JSON
/// string, and every call gets exactly one tool result; <c>weight</c> is 0 or 1. A pretrain line
/// is <c>{"text": "..."}</c>.
/// </summary>
internal static class FineTuneLineRules
{
    /// <summary>Where in a line a problem is, e.g. <c>messages[2].tool_calls[0].id</c>, built into a string only when reported.</summary>
    internal readonly record struct FieldPath(string Name, int Index, string Rest)
    {
        public FieldPath Then(string rest) => this with { Rest = Rest + rest };

        public override string ToString() => $"{Name}[{Index}]{Rest}";
    }

    public static LineKind Validate(JsonElement root, long lineNumber, ProblemSink sink)
    {
        if (root.TryGetProperty("messages", out var messages) || root.TryGetProperty("interactions", out messages))
        {
            var name = root.TryGetProperty("messages", out _) ? "messages" : "interactions";
            var ok = ValidateMessages(messages, name, lineNumber, sink);
            if (root.TryGetProperty("tools", out var tools))
            {
                ok &= ValidateTools(tools, lineNumber, sink);
            }

            return ok ? LineKind.Instruct : LineKind.Invalid;
        }

        if (root.TryGetProperty("text", out var text))
        {
            if (text.ValueKind != JsonValueKind.String)
            {
                sink.Add(new Problem($"'text' must be a string, not {Describe(text.ValueKind)}", lineNumber, "text"));
                return LineKind.Invalid;
            }

            if (text.ValueEquals(ReadOnlySpan<byte>.Empty))
            {
                sink.Add(new Problem("'text' is empty", lineNumber, "text"));
                return LineKind.Invalid;
            }

            return LineKind.Pretrain;
        }

        sink.Add(new Problem("the line has neither 'messages' (instruct) nor 'text' (pretrain)", lineNumber));
        return LineKind.Invalid;
    }

    private static bool ValidateMessages(JsonElement messages, string name, long lineNumber, ProblemSink sink)
    {
        if (messages.ValueKind != JsonValueKind.Array)
        {
            sink.Add(new Problem($"'{name}' must be an array, not {Describe(messages.ValueKind)}", lineNumber, name));
            return false;
        }

        var count = messages.GetArrayLength();
        if (count == 0)
        {
            sink.Add(new Problem($"'{name}' is empty", lineNumber, name));
            return false;
        }

        var ok = true;
        var index = 0;
        string? firstRole = null;
        string? lastRole = null;
        var pendingCalls = new List<string>();
        var pendingSince = -1;
        foreach (var message in messages.EnumerateArray())
        {
            // Field names are built only when a problem is reported: most lines have none.
            var path = new FieldPath(name, index, "");
            string Field(string suffix = "") => path.Then(suffix).ToString();
            if (message.ValueKind != JsonValueKind.Object)
            {
                sink.Add(new Problem($"a message must be an object, not {Describe(message.ValueKind)}", lineNumber, Field()));
                ok = false;
                index++;
                continue;
            }

            if (!message.TryGetProperty("role", out var roleElement) || roleElement.ValueKind != JsonValueKind.String)
            {
                sink.Add(new Problem("the message has no 'role' string", lineNumber, Field(".role")));
                ok = false;
                index++;
                continue;
            }

            var role = RoleOf(roleElement);
            if (role is null)
            {
                sink.Add(new Problem($"unknown role '{roleElement.GetString()}'; expected system, user, assistant or tool", lineNumber, Field(".role")));
                ok = false;
                index++;
                continue;
            }

            firstRole ??= role;
            lastRole = role;

            if (role != "tool" && pendingCalls.Count > 0)
            {
                sink.Add(new Problem(
                    $"the tool calls of {name}[{pendingSince}] are missing {pendingCalls.Count} result(s), for [{string.Join(", ", pendingCalls)}]",
                    lineNumber,
                    Field()));
                ok = false;
                pendingCalls.Clear();
            }

            switch (role)
            {
                case "system":
                case "user":
                    ok &= RequireContent(message, lineNumber, path, sink);
                    break;
                case "assistant":
                    ok &= ValidateAssistant(message, lineNumber, path, sink, pendingCalls);
                    if (pendingCalls.Count > 0)
                    {
                        pendingSince = index;
                    }

                    break;
                case "tool":
                    ok &= ValidateToolResult(message, lineNumber, path, sink, pendingCalls);
                    ok &= RequireContent(message, lineNumber, path, sink);
                    break;
            }

            index++;
        }

        if (pendingCalls.Count > 0)
        {
            sink.Add(new Problem(
                $"the tool calls of {name}[{pendingSince}] have no results for [{string.Join(", ", pendingCalls)}]",
                lineNumber,
                name));
            ok = false;
        }

        if (firstRole is not null and not ("system" or "user"))
        {
            sink.Add(new Problem($"the conversation must start with a system or user message, not {firstRole}", lineNumber, $"{name}[0].role"));
            ok = false;
        }

        if (lastRole is not null and not "assistant")
        {
            sink.Add(new Problem($"the conversation must end with an assistant message, not {lastRole}", lineNumber, $"{name}[{count - 1}].role"));
            ok = false;
        }

        return ok;
    }

    private static bool ValidateAssistant(JsonElement message, long lineNumber, FieldPath field, ProblemSink sink, List<string> pendingCalls)
    {
        var ok = true;
        var hasContent = message.TryGetProperty("content", out var content) && content.ValueKind != JsonValueKind.Null && !IsEmptyString(content);
        var hasCalls = message.TryGetProperty("tool_calls", out var calls) && calls.ValueKind != JsonValueKind.Null;
        if (hasContent && hasCalls)
        {
            // One problem is enough: the calls of such a message are not expected to have results.
            sink.Add(new Problem("an assistant message has either 'content' or 'tool_calls', not both", lineNumber, field.ToString()));
            return false;
        }
        else if (!hasContent && !hasCalls)
        {
            sink.Add(new Problem("an assistant message needs 'content' or 'tool_calls'", lineNumber, field.ToString()));
            ok = false;
        }
        else if (hasContent)
        {
            ok &= CheckContentShape(content, lineNumber, field.Then(".content"), sink);
        }

        if (message.TryGetProperty("weight", out var weight))
        {
            if (weight.ValueKind != JsonValueKind.Number || !weight.TryGetDouble(out var w) || (w != 0 && w != 1))
            {
                sink.Add(new Problem($"'weight' must be 0 or 1, not {weight.GetRawText()}", lineNumber, field.Then(".weight").ToString()));
                ok = false;
            }
        }

        if (hasCalls)
        {
            if (calls.ValueKind != JsonValueKind.Array || calls.GetArrayLength() == 0)
            {
                sink.Add(new Problem("'tool_calls' must be a non-empty array", lineNumber, field.Then(".tool_calls").ToString()));
                return false;
            }

            var i = 0;
            foreach (var call in calls.EnumerateArray())
            {
                ok &= ValidateToolCall(call, lineNumber, field.Then($".tool_calls[{i}]"), sink, pendingCalls);
                i++;
            }
        }

        return ok;
    }

    private static bool ValidateToolCall(JsonElement call, long lineNumber, FieldPath field, ProblemSink sink, List<string> pendingCalls)
    {
        if (call.ValueKind != JsonValueKind.Object)
        {
            sink.Add(new Problem("a tool call must be an object", lineNumber, field.ToString()));
            return false;
        }

        var ok = true;
        if (!call.TryGetProperty("id", out var id) || id.ValueKind != JsonValueKind.String || !IsToolCallId(id.GetString()!))
        {
            sink.Add(new Problem("a tool call 'id' must be a string of 9 letters or digits", lineNumber, field.Then(".id").ToString()));
            ok = false;
        }
        else
        {
            pendingCalls.Add(id.GetString()!);
        }

        if (call.TryGetProperty("type", out var type) && type.ValueKind != JsonValueKind.Null && type.GetString() != "function")
        {
            sink.Add(new Problem($"a tool call 'type' must be 'function', not {type.GetRawText()}", lineNumber, field.Then(".type").ToString()));
            ok = false;
        }

        if (!call.TryGetProperty("function", out var function) || function.ValueKind != JsonValueKind.Object)
        {
            sink.Add(new Problem("a tool call needs a 'function' object", lineNumber, field.Then(".function").ToString()));
            return false;
        }

        if (!function.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || !IsFunctionName(name.GetString()!))
        {
            sink.Add(new Problem("the function 'name' must match ^[a-zA-Z0-9_-]{1,64}$", lineNumber, field.Then(".function.name").ToString()));
            ok = false;
        }

        if (!function.TryGetProperty("arguments", out var arguments) || arguments.ValueKind != JsonValueKind.String)
        {
            sink.Add(new Problem("the function 'arguments' must be a string holding JSON", lineNumber, field.Then(".function.arguments").ToString()));
            ok = false;
        }
        else
        {
            try
            {
                using var _ = JsonDocument.Parse(arguments.GetString()!);
            }
            catch (JsonException)
            {
                sink.Add(new Problem("the function 'arguments' string is not valid JSON", lineNumber, field.Then(".function.arguments").ToString()));
                ok = false;
            }
        }

        return ok;
    }

    private static bool ValidateToolResult(JsonElement message, long lineNumber, FieldPath field, ProblemSink sink, List<string> pendingCalls)
    {
        if (pendingCalls.Count == 0)
        {
            sink.Add(new Problem("a tool message must answer a tool call of the assistant message before it", lineNumber, field.ToString()));
            return false;
        }

        if (message.TryGetProperty("tool_call_id", out var callId) && callId.ValueKind == JsonValueKind.String)
        {
            var id = callId.GetString()!;
            if (!pendingCalls.Remove(id))
            {
                sink.Add(new Problem($"'tool_call_id' {id} matches no pending tool call; pending: [{string.Join(", ", pendingCalls)}]", lineNumber, field.Then(".tool_call_id").ToString()));
                return false;
            }

            return true;
        }

        // Without an id the results answer the calls in order.
        pendingCalls.RemoveAt(0);
        return true;
    }

    private static bool ValidateTools(JsonElement tools, long lineNumber, ProblemSink sink)
    {
        if (tools.ValueKind != JsonValueKind.Array)
        {
            sink.Add(new Problem("'tools' must be an array", lineNumber, "tools"));
            return false;
        }

        var ok = true;
        var i = 0;
        foreach (var tool in tools.EnumerateArray())
        {
            var field = $"tools[{i++}]";
            if (tool.ValueKind != JsonValueKind.Object || !tool.TryGetProperty("function", out var function) || function.ValueKind != JsonValueKind.Object)
            {
                sink.Add(new Problem("a tool must be an object with a 'function' object", lineNumber, field));
                ok = false;
                continue;
            }

            if (!function.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || !IsFunctionName(name.GetString()!))
            {
                sink.Add(new Problem("the function 'name' must match ^[a-zA-Z0-9_-]{1,64}$", lineNumber, field + ".function.name"));
                ok = false;
            }
        }

        return ok;
    }

    private static bool RequireContent(JsonElement message, long lineNumber, FieldPath field, ProblemSink sink)
    {
        if (!message.TryGetProperty("content", out var content) || content.ValueKind == JsonValueKind.Null)
        {
            sink.Add(new Problem("the message has no 'content'", lineNumber, field.Then(".content").ToString()));
            return false;
        }

        return CheckContentShape(content, lineNumber, field.Then(".content"), sink);
    }

    private static bool CheckContentShape(JsonElement content, long lineNumber, FieldPath field, ProblemSink sink)
    {
        // Content is a string, or a list of chunks such as {"type": "text", "text": "..."}.
        if (content.ValueKind is JsonValueKind.String or JsonValueKind.Array)
        {
            return true;
        }

        sink.Add(new Problem($"'content' must be a string or an array of chunks, not {Describe(content.ValueKind)}", lineNumber, field.ToString()));
        return false;
    }

    private static bool IsEmptyString(JsonElement e) => e.ValueKind == JsonValueKind.String && e.ValueEquals(ReadOnlySpan<byte>.Empty);

    /// <summary>The role as an interned constant, without allocating; null when unknown.</summary>
    private static string? RoleOf(JsonElement role) =>
        role.ValueEquals("user"u8) ? "user"
        : role.ValueEquals("assistant"u8) ? "assistant"
        : role.ValueEquals("system"u8) ? "system"
        : role.ValueEquals("tool"u8) ? "tool"
        : null;

    private static bool IsToolCallId(string id)
    {
        if (id.Length != 9)
        {
            return false;
        }

        foreach (var c in id)
        {
            if (!char.IsAsciiLetterOrDigit(c))
            {
                return false;
            }
        }

        return true;
    }

    private static bool IsFunctionName(string name)
    {
        if (name.Length is 0 or > 64)
        {
            return false;
        }

        foreach (var c in name)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '_' or '-'))
            {
                return false;
            }
        }

        return true;
    }

    internal static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => "nothing",
    };
}

/// <summary>Rules for batch request lines: <c>{"custom_id": "...", "body": {...}}</c>.</summary>
internal static class BatchLineRules
{
    public static LineKind Validate(JsonElement root, long lineNumber, ProblemSink sink) =>
        Report(
        root.TryGetProperty("custom_id", out var id) && id.ValueKind == JsonValueKind.String && !id.ValueEquals(ReadOnlySpan<byte>.Empty),
        root.TryGetProperty("body", out var body) && body.ValueKind == JsonValueKind.Object,
        lineNumber,
        sink);

    /// <summary>Reports what a batch line lacks; shared by the fast scan and the document rules so the words match.</summary>
    public static LineKind Report(bool idOk, bool bodyOk, long lineNumber, ProblemSink sink)
    {
        if (!idOk)
        {
            sink.Add("a batch request needs a non-empty 'custom_id' string", lineNumber, "custom_id");
        }

        if (!bodyOk)
        {
            sink.Add("a batch request needs a 'body' object", lineNumber, "body");
        }

        return idOk && bodyOk ? LineKind.Batch : LineKind.Invalid;
    }
}
