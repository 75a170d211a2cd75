using System.Diagnostics.CodeAnalysis;
using System.Text;
using System.Text.Json;
using Atelier.Core.Errors;
using Atelier.Data.Model;
using Atelier.Data.Tokenization;

namespace Atelier.Data.Formatting;

/// <summary>The tokens of one example and which of them are trained.</summary>
/// <param name="Tokens">Token ids, starting with BOS.</param>
/// <param name="LossMask">True where the token is a training target.</param>
public sealed record TokenizedExample(int[] Tokens, bool[] LossMask)
{
    /// <summary>
    /// Number of trained targets: the masked positions after the first. Packing predicts token
    /// i+1 from token i (<c>y = tokens[1:]</c>, <c>mask = mask[1:]</c>), so the first token (BOS)
    /// is never a target even where its mask is true, as in a pretraining text.
    /// </summary>
    public int TrainedCount { get; } = CountTrained(LossMask);

    private static int CountTrained(bool[] mask)
    {
        ArgumentNullException.ThrowIfNull(mask);
        int count = 0;
        for (int i = 1; i < mask.Length; i++)
        {
            count += mask[i] ? 1 : 0;
        }

        return count;
    }
}

/// <summary>
/// Mistral's instruct format, rendered per tokeniser version exactly as mistral-common's
/// <c>InstructTokenizerV1/V2/V3/V7/V11/V13</c> do, with the loss mask of mistral-finetune: true only on
/// assistant tokens (content or tool calls, and their <c>&lt;/s&gt;</c>) whose weight is not 0.
/// <list type="bullet">
/// <item>v1: <c>&lt;s&gt;</c>, then per user turn the text <c>"[INST] " + content + " [/INST]"</c> (SentencePiece's
/// dummy prefix makes it <c>▁[INST]</c>); system prompts, joined by a blank line, are prepended to the
/// <em>first</em> user turn; assistant turns are <c>content&lt;/s&gt;</c>. No tools.</item>
/// <item>v2/v3: <c>[INST]content[/INST]</c> control tokens; system prompts prepended to the <em>last</em> user
/// turn; <c>[AVAILABLE_TOOLS]json[/AVAILABLE_TOOLS]</c> just before the last user turn; tool calls as
/// <c>[TOOL_CALLS]json&lt;/s&gt;</c>; results as <c>[TOOL_RESULTS]json[/TOOL_RESULTS]</c>. v2 writes no call ids,
/// wraps results as <c>[{"name", "content"}]</c> and drops tool turns before the last user turn; v3 keeps
/// them and writes <c>{"content", "call_id"}</c>.</item>
/// <item>v7: as v3, but each system message is <c>[SYSTEM_PROMPT]text[/SYSTEM_PROMPT]</c> where it stands;
/// tool results are <c>[TOOL_RESULTS]call_id[TOOL_CONTENT]content[/TOOL_RESULTS]</c>.</item>
/// <item>v11: as v7, tool calls as <c>[TOOL_CALLS]name[CALL_ID]id[ARGS]json</c> per call.</item>
/// <item>v13: as v11 without call ids (<c>[TOOL_CALLS]name[ARGS]json</c>, results
/// <c>[TOOL_RESULTS]content[/TOOL_RESULTS]</c>), tools before the <em>first</em> user turn, and the results
/// after a turn ordered as its calls.</item>
/// </list>
/// Before rendering, messages are normalised as mistral-common's request normaliser does: consecutive
/// user turns (and assistant turns of equal weight) are merged with a blank line, JSON in tool
/// arguments and results is re-serialised Python-style. The call ids of a final assistant turn's tool
/// calls are not rendered, as mistral-finetune does, so the model is not trained to predict random ids.
/// Pretrain texts are <c>&lt;s&gt; text &lt;/s&gt;</c>, all trained. Thread-safe.
/// </summary>
public sealed class MistralInstructFormatter
{
    private const string Blank = "\n\n";

    private readonly ITextTokenizer _tokenizer;
    private readonly ControlTokens _control;

    /// <summary>
    /// Creates a formatter over a tokeniser, in its own instruct version when it is a model's
    /// (<see cref="MistralModelTokenizer"/>), else v3 (tokenisers with no Mistral file, as in tests).
    /// </summary>
    public MistralInstructFormatter(ITextTokenizer tokenizer)
        : this(tokenizer, (tokenizer as MistralModelTokenizer)?.Version ?? MistralTokenizerVersion.V3)
    {
    }

    /// <summary>Creates a formatter rendering <paramref name="version"/>'s format.</summary>
    public MistralInstructFormatter(ITextTokenizer tokenizer, MistralTokenizerVersion version)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _tokenizer = tokenizer;
        _control = tokenizer.Control;
        Version = version;
    }

    /// <summary>The instruct version rendered.</summary>
    public MistralTokenizerVersion Version { get; }

    /// <summary>
    /// The id of <c>[TOOL_CALLS]</c>, which opens the tool calls of an assistant turn (what a forced
    /// call's constraint must generate first), or null when the version or vocabulary has no tool calls.
    /// </summary>
    public int? ToolCallsTokenId => Version == MistralTokenizerVersion.V1 ? null : _control.ToolCalls;

    /// <summary>The id of <c>[ARGS]</c> (v11 and later: it separates a call's name from its JSON arguments), or null.</summary>
    public int? ArgsTokenId => Version >= MistralTokenizerVersion.V11 ? _control.Args : null;

    /// <summary>The id of <c>[CALL_ID]</c> (v11: an optional call id between the name and <c>[ARGS]</c>), or null.</summary>
    public int? CallIdTokenId => Version == MistralTokenizerVersion.V11 ? _control.CallId : null;

    /// <summary>
    /// Whether the tool calls of a turn are one JSON list after <c>[TOOL_CALLS]</c> (v2, v3, v7) rather
    /// than <c>[TOOL_CALLS]name[ARGS]json</c> per call (v11, v13).
    /// </summary>
    public bool ToolCallsAreJsonList => Version is MistralTokenizerVersion.V2 or MistralTokenizerVersion.V3 or MistralTokenizerVersion.V7;

    /// <summary>Tokenises an example and computes its loss mask.</summary>
    /// <exception cref="BadRequestException">The conversation uses what the version cannot render (tools in v1).</exception>
    public TokenizedExample Format(TrainingExample example)
    {
        ArgumentNullException.ThrowIfNull(example);
        var output = new Output(_tokenizer, 256);
        if (example.Kind == ExampleKind.Text)
        {
            output.Push(_control.Bos, true);
            output.Text(example.Text!, true);
            output.Push(_control.Eos, true);
            return output.ToExample();
        }

        try
        {
            return FormatChat(example, output);
        }
        catch (BadRequestException e) when (e.Code == UnsupportedChatFormat)
        {
            // Say where: the example's file and line, as every other data error does.
            throw new BadRequestException($"{example.SourceFile}:{example.Line}: {e.Message}", UnsupportedChatFormat);
        }
    }

    /// <summary>
    /// Renders a chat request's prompt, as mistral-common's <c>encode_chat_completion</c> does, with the
    /// same rules as training: it ends where the assistant's answer begins, or, when
    /// <paramref name="continueFinalAssistant"/> (the final assistant message's <c>prefix</c>), inside
    /// that turn, without its <c>&lt;/s&gt;</c>, so the answer continues it.
    /// </summary>
    /// <param name="messages">The conversation, ending with a user or tool message, or an assistant prefix.</param>
    /// <param name="toolsJson">The request's <c>tools</c> as JSON, or null.</param>
    /// <param name="continueFinalAssistant">Whether the last message is an assistant prefix to continue.</param>
    /// <exception cref="BadRequestException">The conversation uses what the version cannot render (tools in v1).</exception>
    public int[] FormatPrompt(IReadOnlyList<ChatMessage> messages, string? toolsJson, bool continueFinalAssistant)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var example = new TrainingExample { Ordinal = 0, SourceFile = "request", Line = 0, Kind = ExampleKind.Chat, Messages = messages, ToolsJson = toolsJson };
        int[] tokens = FormatChat(example, new Output(_tokenizer, 256)).Tokens;
        return continueFinalAssistant && tokens.Length > 1 && tokens[^1] == _control.Eos ? tokens[..^1] : tokens;
    }

    /// <summary>Whether the tokeniser has the control tokens of fill-in-the-middle prompts.</summary>
    public bool SupportsFim => _control.Prefix is not null && _control.Suffix is not null;

    /// <summary>
    /// A fill-in-the-middle prompt as mistral-common's <c>encode_fim</c> writes it:
    /// <c>&lt;s&gt;[SUFFIX]suffix[PREFIX]prompt</c>; the model then writes the middle.
    /// </summary>
    /// <exception cref="BadRequestException">The tokeniser has no <c>[PREFIX]</c>/<c>[SUFFIX]</c> tokens.</exception>
    public int[] FormatFim(string prompt, string? suffix)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (!SupportsFim)
        {
            throw new BadRequestException("This model's tokeniser has no [PREFIX]/[SUFFIX] tokens: it cannot fill in the middle.", UnsupportedChatFormat);
        }

        var tokens = new List<int> { _control.Bos, _control.Suffix!.Value };
        _tokenizer.Encode(suffix ?? string.Empty, tokens);
        tokens.Add(_control.Prefix!.Value);
        _tokenizer.Encode(prompt, tokens);
        return [.. tokens];
    }

    private TokenizedExample FormatChat(TrainingExample example, Output output)
    {
        List<ChatMessage> messages = Normalize(example.Messages!, out string? systemPrompt);
        int firstUser = messages.FindIndex(m => m.Role == ChatRole.User);
        int lastUser = messages.FindLastIndex(m => m.Role == ChatRole.User);
        output.Push(_control.Bos, false);
        for (int i = 0; i < messages.Count; i++)
        {
            ChatMessage message = messages[i];
            switch (message.Role)
            {
                case ChatRole.System:
                    // Only v7 and later keep system messages (Normalize folds them into systemPrompt before).
                    Control(output, _control.SystemPrompt, "[SYSTEM_PROMPT]");
                    output.Text(message.Content ?? string.Empty, false);
                    Control(output, _control.EndSystemPrompt, "[/SYSTEM_PROMPT]");
                    break;
                case ChatRole.User:
                    User(output, message.Content ?? string.Empty, example.ToolsJson, i == firstUser, i == lastUser, systemPrompt);
                    break;
                case ChatRole.Assistant:
                    Assistant(output, message, beforeLastUser: i < lastUser, isLast: i == messages.Count - 1);
                    break;
                case ChatRole.Tool:
                    Tool(output, message, beforeLastUser: i < lastUser);
                    break;
            }
        }

        return output.ToExample();
    }

    private void User(Output output, string content, string? toolsJson, bool isFirst, bool isLast, string? systemPrompt)
    {
        if (Version == MistralTokenizerVersion.V1)
        {
            // v1 has no control tokens: the markers are text, encoded with the content in one call.
            if (isFirst && systemPrompt is not null)
            {
                content = systemPrompt + Blank + content;
            }

            output.Text("[INST] " + content + " [/INST]", false);
            return;
        }

        // v13 moved the tools to the first user turn, so they stay in a cacheable prefix.
        bool toolsHere = Version >= MistralTokenizerVersion.V13 ? isFirst : isLast;
        if (toolsHere && !string.IsNullOrEmpty(toolsJson))
        {
            Control(output, _control.AvailableTools, "[AVAILABLE_TOOLS]");
            output.Text(ToolsJson(toolsJson), false);
            Control(output, _control.EndAvailableTools, "[/AVAILABLE_TOOLS]");
        }

        Control(output, _control.Inst, "[INST]");
        if (isLast && systemPrompt is not null)
        {
            content = systemPrompt + Blank + content;
        }

        output.Text(content, false);
        Control(output, _control.EndInst, "[/INST]");
    }

    private void Assistant(Output output, ChatMessage message, bool beforeLastUser, bool isLast)
    {
        bool trained = message.Weight is null or 1;
        bool hasCalls = message.ToolCalls is { Count: > 0 };
        if (Version == MistralTokenizerVersion.V1)
        {
            if (hasCalls)
            {
                ThrowToolsUnsupported();
            }

            output.Text(message.Content ?? string.Empty, trained);
            output.Push(_control.Eos, trained);
            return;
        }

        if (hasCalls && Version == MistralTokenizerVersion.V2 && beforeLastUser)
        {
            // v2 does not render tool calls (nor their results) that precede the last user turn.
            return;
        }

        // v2 and later strip trailing spaces from assistant text; v7 and later may hold text and calls.
        if (!string.IsNullOrEmpty(message.Content))
        {
            output.Text(message.Content.TrimEnd(' '), trained);
        }

        if (hasCalls)
        {
            // A final turn's call ids are not rendered (mistral-finetune): an id is random, not learnable.
            // v2 and v13 never render them.
            bool withIds = !isLast && Version is not (MistralTokenizerVersion.V2 or MistralTokenizerVersion.V13);
            if (Version >= MistralTokenizerVersion.V11)
            {
                foreach (ToolCall call in message.ToolCalls!)
                {
                    Control(output, _control.ToolCalls, "[TOOL_CALLS]", trained);
                    output.Text(call.Name, trained);
                    if (withIds && HasId(call))
                    {
                        Control(output, _control.CallId, "[CALL_ID]", trained);
                        output.Text(call.Id, trained);
                    }

                    Control(output, _control.Args, "[ARGS]", trained);
                    output.Text(ArgumentsJson(call.Arguments), trained);
                }
            }
            else
            {
                Control(output, _control.ToolCalls, "[TOOL_CALLS]", trained);
                output.Text(ToolCallsJson(message.ToolCalls!, withIds), trained);
            }
        }

        output.Push(_control.Eos, trained);
    }

    private void Tool(Output output, ChatMessage message, bool beforeLastUser)
    {
        string content = message.Content ?? string.Empty;
        string callId = message.ToolCallId ?? string.Empty;
        switch (Version)
        {
            case MistralTokenizerVersion.V1:
                ThrowToolsUnsupported();
                break;
            case MistralTokenizerVersion.V2 when beforeLastUser:
                return;
            case MistralTokenizerVersion.V2:
            case MistralTokenizerVersion.V3:
                Control(output, _control.ToolResults, "[TOOL_RESULTS]");
                output.Text(ToolResultJson(message.Name, content, callId), false);
                Control(output, _control.EndToolResults, "[/TOOL_RESULTS]");
                break;
            case MistralTokenizerVersion.V13:
                Control(output, _control.ToolResults, "[TOOL_RESULTS]");
                output.Text(content, false);
                Control(output, _control.EndToolResults, "[/TOOL_RESULTS]");
                break;
            default:
                // v7 and v11: the id, then the content as written (no JSON normalisation).
                Control(output, _control.ToolResults, "[TOOL_RESULTS]");
                output.Text(callId, false);
                Control(output, _control.ToolContent, "[TOOL_CONTENT]");
                output.Text(content, false);
                Control(output, _control.EndToolResults, "[/TOOL_RESULTS]");
                break;
        }
    }

    /// <summary>
    /// mistral-common's request normalisation: before v7, system messages leave the conversation and
    /// become one prompt (joined by blank lines) and a conversation not opening with a user turn gets an
    /// empty one; from v7 they stay where they are. Consecutive user turns, and consecutive assistant
    /// turns of equal weight, merge (text joined by blank lines, tool calls concatenated).
    /// </summary>
    private List<ChatMessage> Normalize(IReadOnlyList<ChatMessage> messages, out string? systemPrompt)
    {
        bool systemInPlace = Version >= MistralTokenizerVersion.V7;
        var result = new List<ChatMessage>(messages.Count);
        StringBuilder? system = null;
        for (int i = 0; i < messages.Count;)
        {
            ChatMessage first = messages[i];
            int end = i + 1;
            if (first.Role is ChatRole.User or ChatRole.Assistant)
            {
                while (end < messages.Count && messages[end].Role == first.Role && messages[end].Weight == first.Weight)
                {
                    end++;
                }
            }

            switch (first.Role)
            {
                case ChatRole.System when systemInPlace:
                    result.Add(first);
                    break;
                case ChatRole.System:
                    if (!string.IsNullOrEmpty(first.Content))
                    {
                        system = system is null ? new StringBuilder(first.Content) : system.Append(Blank).Append(first.Content);
                    }

                    break;
                case ChatRole.User:
                    result.Add(end == i + 1 ? first : first with { Content = Join(messages, i, end) });
                    break;
                case ChatRole.Assistant:
                    result.Add(end == i + 1 ? first : first with { Content = Join(messages, i, end), ToolCalls = Concat(messages, i, end) });
                    break;
                case ChatRole.Tool:
                    // Before v7 a tool result that is JSON is re-serialised, an empty one becomes "{}".
                    result.Add(systemInPlace ? first : first with { Content = NormalizeJson(first.Content) });
                    break;
            }

            i = end;
        }

        if (Version >= MistralTokenizerVersion.V13)
        {
            OrderToolResultsAsCalls(result);
        }

        if (!systemInPlace && (result.Count == 0 || result[0].Role != ChatRole.User))
        {
            result.Insert(0, new ChatMessage { Role = ChatRole.User, Content = string.Empty });
        }

        systemPrompt = system?.ToString();
        return result;
    }

    /// <summary>
    /// v13's normaliser: each run of tool results follows the order of the calls of the assistant turns
    /// before it (results for unknown ids last), keeping the given order among equals.
    /// </summary>
    private static void OrderToolResultsAsCalls(List<ChatMessage> messages)
    {
        var calls = new List<string>();
        for (int i = 0; i < messages.Count;)
        {
            if (messages[i].Role != ChatRole.Tool)
            {
                if (messages[i].ToolCalls is { Count: > 0 } made)
                {
                    foreach (ToolCall call in made)
                    {
                        calls.Add(call.Id);
                    }
                }

                i++;
                continue;
            }

            int end = i;
            while (end < messages.Count && messages[end].Role == ChatRole.Tool)
            {
                end++;
            }

            ChatMessage[] run = [.. messages.GetRange(i, end - i).Select((m, k) => (Message: m, Given: k))
                .OrderBy(x => calls.IndexOf(x.Message.ToolCallId ?? "null") is int at and >= 0 ? at : int.MaxValue)
                .ThenBy(x => x.Given)
                .Select(x => x.Message)];
            messages.RemoveRange(i, run.Length);
            messages.InsertRange(i, run);
            calls.Clear();
            i = end;
        }
    }

    private static string Join(IReadOnlyList<ChatMessage> messages, int start, int end)
    {
        var builder = new StringBuilder();
        for (int i = start; i < end; i++)
        {
            if (!string.IsNullOrEmpty(messages[i].Content))
            {
                builder.Append(builder.Length > 0 ? Blank : string.Empty).Append(messages[i].Content);
            }
        }

        return builder.ToString();
    }

    private static List<ToolCall>? Concat(IReadOnlyList<ChatMessage> messages, int start, int end)
    {
        List<ToolCall>? calls = null;
        for (int i = start; i < end; i++)
        {
            if (messages[i].ToolCalls is { Count: > 0 } some)
            {
                (calls ??= []).AddRange(some);
            }
        }

        return calls;
    }

    private static bool HasId(ToolCall call) => call.Id.Length > 0 && call.Id != "null";

    /// <summary>
    /// The tool calls as mistral-common v2–v7 render them: <c>[{"name": ..., "arguments": {...}, "id": ...}]</c>
    /// (no <c>id</c> when <paramref name="withIds"/> is false or the call has none).
    /// </summary>
    internal static string ToolCallsJson(IReadOnlyList<ToolCall> calls, bool withIds = true)
    {
        var builder = new StringBuilder("[");
        for (int i = 0; i < calls.Count; i++)
        {
            if (i > 0)
            {
                builder.Append(", ");
            }

            builder.Append("{\"name\": ");
            PythonJson.WriteString(builder, calls[i].Name);
            builder.Append(", \"arguments\": ");
            WriteJsonOrString(builder, calls[i].Arguments);
            if (withIds && HasId(calls[i]))
            {
                builder.Append(", \"id\": ");
                PythonJson.WriteString(builder, calls[i].Id);
            }

            builder.Append('}');
        }

        return builder.Append(']').ToString();
    }

    private static string ArgumentsJson(string arguments)
    {
        var builder = new StringBuilder(arguments.Length + 16);
        WriteJsonOrString(builder, arguments);
        return builder.ToString();
    }

    /// <summary>v3: <c>{"content": ..., "call_id": ...}</c>; v2: <c>[{"name": ..., "content": ...}]</c>. Content that is JSON is embedded as JSON.</summary>
    private string ToolResultJson(string? name, string content, string callId)
    {
        var builder = new StringBuilder();
        if (Version == MistralTokenizerVersion.V2)
        {
            builder.Append("[{\"name\": ");
            if (name is null)
            {
                builder.Append("null");
            }
            else
            {
                PythonJson.WriteString(builder, name);
            }

            builder.Append(", \"content\": ");
            WriteJsonOrString(builder, content);
            return builder.Append("}]").ToString();
        }

        builder.Append("{\"content\": ");
        WriteJsonOrString(builder, content);
        builder.Append(", \"call_id\": ");
        PythonJson.WriteString(builder, callId);
        return builder.Append('}').ToString();
    }

    /// <summary>
    /// The tools as mistral-common dumps its <c>Tool</c> models: <c>type</c>, then <c>function</c> with
    /// <c>name</c>, <c>description</c> (<c>""</c> when absent) and <c>parameters</c> (<c>{}</c> when absent),
    /// whatever order or extra fields the input had.
    /// </summary>
    private static string ToolsJson(string toolsJson)
    {
        using JsonDocument document = JsonDocument.Parse(toolsJson);
        var builder = new StringBuilder(toolsJson.Length + 64);
        builder.Append('[');
        bool first = true;
        foreach (JsonElement tool in document.RootElement.EnumerateArray())
        {
            builder.Append(first ? "{\"type\": " : ", {\"type\": ");
            first = false;
            PythonJson.WriteString(builder, tool.TryGetProperty("type", out JsonElement type) && type.ValueKind == JsonValueKind.String ? type.GetString()! : "function");
            builder.Append(", \"function\": {\"name\": ");
            JsonElement function = tool.TryGetProperty("function", out JsonElement f) && f.ValueKind == JsonValueKind.Object ? f : default;
            PythonJson.WriteString(builder, StringProperty(function, "name"));
            builder.Append(", \"description\": ");
            PythonJson.WriteString(builder, StringProperty(function, "description"));
            builder.Append(", \"parameters\": ");
            if (function.ValueKind == JsonValueKind.Object && function.TryGetProperty("parameters", out JsonElement parameters) && parameters.ValueKind == JsonValueKind.Object)
            {
                PythonJson.Write(builder, parameters);
            }
            else
            {
                builder.Append("{}");
            }

            builder.Append("}}");
        }

        return builder.Append(']').ToString();

        static string StringProperty(JsonElement element, string name) =>
            element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out JsonElement value) && value.ValueKind == JsonValueKind.String
                ? value.GetString()!
                : string.Empty;
    }

    /// <summary>mistral-common's <c>_normalize_json_content</c>: empty is <c>{}</c>, JSON is re-serialised, other text kept.</summary>
    private static string NormalizeJson(string? content)
    {
        if (string.IsNullOrEmpty(content))
        {
            return "{}";
        }

        if (!TryParse(content, out JsonDocument? document))
        {
            return content;
        }

        using (document)
        {
            return PythonJson.Serialize(document.RootElement);
        }
    }

    /// <summary>Writes <paramref name="text"/> as the JSON value it holds, or as a JSON string when it is not JSON (mistral-common's <c>_parse_json_content</c>).</summary>
    private static void WriteJsonOrString(StringBuilder builder, string text)
    {
        if (TryParse(text, out JsonDocument? document))
        {
            using (document)
            {
                PythonJson.Write(builder, document.RootElement);
            }
        }
        else
        {
            PythonJson.WriteString(builder, text);
        }
    }

    private static bool TryParse(string text, [NotNullWhen(true)] out JsonDocument? document)
    {
        // Most tool results that are not JSON are prose: reject them without the cost of an exception.
        if (!MightBeJson(text.AsSpan().Trim()))
        {
            document = null;
            return false;
        }

        try
        {
            document = JsonDocument.Parse(text);
            return true;
        }
        catch (JsonException)
        {
            document = null;
            return false;
        }
    }

    private static bool MightBeJson(ReadOnlySpan<char> text) =>
        text.Length > 0 && text[0] switch
        {
            '{' or '[' or '"' or '-' or (>= '0' and <= '9') => true,
            't' => text.SequenceEqual("true"),
            'f' => text.SequenceEqual("false"),
            'n' => text.SequenceEqual("null"),
            _ => false,
        };

    private const string UnsupportedChatFormat = "unsupported_chat_format";

    [DoesNotReturn]
    private static void ThrowToolsUnsupported() =>
        throw new BadRequestException(
            "Tool calls and tool results cannot be rendered for a v1 tokeniser (mistral-common refuses them); use a model with a v2 or later tokeniser.",
            UnsupportedChatFormat);

    private static void Control(Output output, int? id, string literal, bool trained = false)
    {
        // A vocabulary without the control token gets its literal text, which is what the model would see.
        if (id is int value)
        {
            output.Push(value, trained);
        }
        else
        {
            output.Text(literal, trained);
        }
    }

    /// <summary>Tokens and mask being written.</summary>
    private sealed class Output(ITextTokenizer tokenizer, int capacity)
    {
        private readonly List<int> _tokens = new(capacity);
        private readonly List<bool> _mask = new(capacity);

        public void Push(int id, bool trained)
        {
            _tokens.Add(id);
            _mask.Add(trained);
        }

        public void Text(string text, bool trained)
        {
            int before = _tokens.Count;
            tokenizer.Encode(text, _tokens);
            for (int i = before; i < _tokens.Count; i++)
            {
                _mask.Add(trained);
            }
        }

        public TokenizedExample ToExample() => new([.. _tokens], [.. _mask]);
    }
}
