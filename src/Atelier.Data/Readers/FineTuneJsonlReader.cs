using System.Text;
using System.Text.Json;
using Atelier.Data.Model;

namespace Atelier.Data.Readers;

/// <summary>What a reader yields: an example, or an issue naming the file and line of a bad one.</summary>
public readonly record struct ReadResult(TrainingExample? Example, DataIssue? Issue);

/// <summary>
/// Reads Mistral fine-tune JSONL: one object per line, either a conversation
/// (<c>messages</c> or <c>interactions</c>, with optional top-level <c>tools</c>) or a pretrain
/// <c>{"text": ...}</c>. Streams line by line; a line that is not a valid example becomes a
/// <see cref="DataIssue"/> with its line number and field.
/// </summary>
public static class FineTuneJsonlReader
{
    private static readonly JsonDocumentOptions DocumentOptions = new() { MaxDepth = 128 };

    /// <summary>Reads all examples and issues of <paramref name="stream"/>.</summary>
    /// <param name="stream">The content.</param>
    /// <param name="fileName">The name used in issues.</param>
    /// <param name="firstOrdinal">The ordinal of the first example.</param>
    /// <param name="maxLineBytes">Lines longer than this are reported, not parsed.</param>
    public static IEnumerable<ReadResult> Read(Stream stream, string fileName, long firstOrdinal = 0, int maxLineBytes = 64 << 20)
    {
        ArgumentNullException.ThrowIfNull(stream);
        long ordinal = firstOrdinal;
        using var lines = new Utf8LineReader(stream, maxLineBytes);
        while (lines.TryReadLine(out ReadOnlyMemory<byte> line, out bool tooLong))
        {
            long lineNumber = lines.LineNumber;
            if (tooLong)
            {
                yield return new(null, new DataIssue(fileName, lineNumber, null, $"line longer than {maxLineBytes} bytes"));
                continue;
            }

            if (IsBlank(line.Span))
            {
                continue;
            }

            ReadResult result = ParseLine(line, fileName, lineNumber, ordinal);
            if (result.Example is not null)
            {
                ordinal++;
            }

            yield return result;
        }
    }

    /// <summary>Parses one JSONL line into an example or an issue.</summary>
    public static ReadResult ParseLine(ReadOnlyMemory<byte> line, string fileName, long lineNumber, long ordinal)
    {
        if (!System.Text.Unicode.Utf8.IsValid(line.Span))
        {
            return Fail(fileName, lineNumber, null, "invalid UTF-8");
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(line, DocumentOptions);
        }
        catch (JsonException e)
        {
            return Fail(fileName, lineNumber, null, "invalid JSON: " + e.Message);
        }
        catch (ArgumentException e)
        {
            // Invalid UTF-8 surfaces as an ArgumentException from the decoder.
            return Fail(fileName, lineNumber, null, "invalid UTF-8: " + e.Message);
        }

        using (document)
        {
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return Fail(fileName, lineNumber, null, "a line must be a JSON object");
            }

            if (root.TryGetProperty("messages", out JsonElement messages) || root.TryGetProperty("interactions", out messages))
            {
                return ParseChat(root, messages, fileName, lineNumber, ordinal, line.Length);
            }

            if (root.TryGetProperty("text", out JsonElement text))
            {
                if (text.ValueKind != JsonValueKind.String)
                {
                    return Fail(fileName, lineNumber, "text", "must be a string");
                }

                return new(new TrainingExample
                {
                    Ordinal = ordinal,
                    SourceFile = fileName,
                    Line = lineNumber,
                    Kind = ExampleKind.Text,
                    Text = text.GetString()!,
                    SourceBytes = line.Length,
                }, null);
            }

            return Fail(fileName, lineNumber, null, "expected \"messages\" (chat) or \"text\" (pretrain)");
        }
    }

    private static ReadResult ParseChat(JsonElement root, JsonElement messages, string file, long line, long ordinal, int bytes)
    {
        if (messages.ValueKind != JsonValueKind.Array || messages.GetArrayLength() == 0)
        {
            return Fail(file, line, "messages", "must be a non-empty array");
        }

        var parsed = new List<ChatMessage>(messages.GetArrayLength());
        int index = 0;
        int pendingToolCalls = 0;
        foreach (JsonElement message in messages.EnumerateArray())
        {
            string path = $"messages[{index}]";
            if (message.ValueKind != JsonValueKind.Object)
            {
                return Fail(file, line, path, "must be an object");
            }

            if (!message.TryGetProperty("role", out JsonElement roleElement) || roleElement.ValueKind != JsonValueKind.String)
            {
                return Fail(file, line, path + ".role", "missing or not a string");
            }

            ChatRole role;
            switch (roleElement.GetString())
            {
                case "system": role = ChatRole.System; break;
                case "user": role = ChatRole.User; break;
                case "assistant": role = ChatRole.Assistant; break;
                case "tool": role = ChatRole.Tool; break;
                default: return Fail(file, line, path + ".role", $"unknown role \"{roleElement.GetString()}\" (system, user, assistant or tool)");
            }

            if (!TryReadContent(message, out string? content, out string? contentError))
            {
                return Fail(file, line, path + ".content", contentError!);
            }

            int? weight = null;
            if (message.TryGetProperty("weight", out JsonElement weightElement) && weightElement.ValueKind != JsonValueKind.Null)
            {
                if (weightElement.ValueKind != JsonValueKind.Number || !weightElement.TryGetInt32(out int w) || (w != 0 && w != 1))
                {
                    return Fail(file, line, path + ".weight", "must be 0 or 1");
                }

                weight = w;
            }

            List<ToolCall>? toolCalls = null;
            if (message.TryGetProperty("tool_calls", out JsonElement callsElement) && callsElement.ValueKind != JsonValueKind.Null)
            {
                if (role != ChatRole.Assistant)
                {
                    return Fail(file, line, path + ".tool_calls", "only assistant messages call tools");
                }

                if (callsElement.ValueKind != JsonValueKind.Array)
                {
                    return Fail(file, line, path + ".tool_calls", "must be an array");
                }

                toolCalls = [];
                int callIndex = 0;
                foreach (JsonElement call in callsElement.EnumerateArray())
                {
                    string callPath = $"{path}.tool_calls[{callIndex++}]";
                    if (!TryReadToolCall(call, out ToolCall? toolCall, out string? callError, out string? errorField))
                    {
                        return Fail(file, line, callPath + errorField, callError!);
                    }

                    toolCalls.Add(toolCall!);
                }
            }

            string? toolCallId = null;
            string? name = null;
            if (role == ChatRole.Tool)
            {
                if (message.TryGetProperty("tool_call_id", out JsonElement idElement) && idElement.ValueKind == JsonValueKind.String)
                {
                    toolCallId = idElement.GetString();
                }

                if (message.TryGetProperty("name", out JsonElement nameElement) && nameElement.ValueKind == JsonValueKind.String)
                {
                    name = nameElement.GetString();
                }

                if (pendingToolCalls == 0)
                {
                    return Fail(file, line, path, "a tool message must follow an assistant message with tool_calls");
                }

                pendingToolCalls--;
            }

            if (role != ChatRole.Tool && pendingToolCalls > 0)
            {
                return Fail(file, line, path, $"{pendingToolCalls} tool call(s) have no tool result");
            }

            if (role == ChatRole.Assistant)
            {
                bool hasContent = !string.IsNullOrEmpty(content);
                bool hasCalls = toolCalls is { Count: > 0 };
                if (hasContent == hasCalls)
                {
                    return Fail(file, line, path, "an assistant message has either content or tool_calls, not both or neither");
                }

                pendingToolCalls = toolCalls?.Count ?? 0;
            }
            else if (content is null && role != ChatRole.Tool)
            {
                return Fail(file, line, path + ".content", "missing");
            }

            parsed.Add(new ChatMessage { Role = role, Content = content, ToolCalls = toolCalls, ToolCallId = toolCallId, Name = name, Weight = weight });
            index++;
        }

        if (parsed[0].Role is not (ChatRole.System or ChatRole.User))
        {
            return Fail(file, line, "messages[0].role", "a conversation starts with system or user");
        }

        if (parsed[^1].Role != ChatRole.Assistant)
        {
            return Fail(file, line, $"messages[{parsed.Count - 1}].role", "a conversation ends with an assistant message");
        }

        string? toolsJson = null;
        if (root.TryGetProperty("tools", out JsonElement tools) && tools.ValueKind != JsonValueKind.Null)
        {
            if (tools.ValueKind != JsonValueKind.Array)
            {
                return Fail(file, line, "tools", "must be an array");
            }

            toolsJson = PythonJson.Serialize(tools);
        }

        return new(new TrainingExample
        {
            Ordinal = ordinal,
            SourceFile = file,
            Line = line,
            Kind = ExampleKind.Chat,
            Messages = parsed,
            ToolsJson = toolsJson,
            SourceBytes = bytes,
        }, null);
    }

    private static bool TryReadContent(JsonElement message, out string? content, out string? error)
    {
        error = null;
        content = null;
        if (!message.TryGetProperty("content", out JsonElement element) || element.ValueKind == JsonValueKind.Null)
        {
            return true;
        }

        if (element.ValueKind == JsonValueKind.String)
        {
            content = element.GetString();
            return true;
        }

        if (element.ValueKind == JsonValueKind.Array)
        {
            // Content chunks: [{"type": "text", "text": "..."}]; text chunks are concatenated.
            var builder = new StringBuilder();
            foreach (JsonElement chunk in element.EnumerateArray())
            {
                if (chunk.ValueKind != JsonValueKind.Object
                    || !chunk.TryGetProperty("type", out JsonElement type) || type.ValueEquals("text") is false
                    || !chunk.TryGetProperty("text", out JsonElement text) || text.ValueKind != JsonValueKind.String)
                {
                    error = "only text chunks ({\"type\":\"text\",\"text\":...}) are supported";
                    return false;
                }

                builder.Append(text.GetString());
            }

            content = builder.ToString();
            return true;
        }

        error = "must be a string or an array of text chunks";
        return false;
    }

    private static bool TryReadToolCall(JsonElement call, out ToolCall? toolCall, out string? error, out string? field)
    {
        toolCall = null;
        error = null;
        field = null;
        if (call.ValueKind != JsonValueKind.Object)
        {
            error = "must be an object";
            field = string.Empty;
            return false;
        }

        string id = call.TryGetProperty("id", out JsonElement idElement) && idElement.ValueKind == JsonValueKind.String ? idElement.GetString()! : string.Empty;
        if (!call.TryGetProperty("function", out JsonElement function) || function.ValueKind != JsonValueKind.Object)
        {
            error = "missing or not an object";
            field = ".function";
            return false;
        }

        if (!function.TryGetProperty("name", out JsonElement name) || name.ValueKind != JsonValueKind.String || name.GetString()!.Length == 0)
        {
            error = "missing or not a string";
            field = ".function.name";
            return false;
        }

        string arguments;
        if (!function.TryGetProperty("arguments", out JsonElement args))
        {
            error = "missing";
            field = ".function.arguments";
            return false;
        }

        if (args.ValueKind == JsonValueKind.String)
        {
            arguments = args.GetString()!;
            try
            {
                using var _ = JsonDocument.Parse(arguments);
            }
            catch (JsonException)
            {
                error = "must be a JSON text";
                field = ".function.arguments";
                return false;
            }
        }
        else if (args.ValueKind == JsonValueKind.Object)
        {
            arguments = args.GetRawText();
        }
        else
        {
            error = "must be a JSON string or object";
            field = ".function.arguments";
            return false;
        }

        toolCall = new ToolCall(id, name.GetString()!, arguments);
        return true;
    }

    private static bool IsBlank(ReadOnlySpan<byte> line) => line.IndexOfAnyExcept((byte)' ', (byte)'\t') < 0;

    private static ReadResult Fail(string file, long line, string? field, string message) =>
        new(null, new DataIssue(file, line, field, message));
}
