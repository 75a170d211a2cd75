using System.Text;
using System.Text.Json;
using Atelier.Data.Model;
using Atelier.Data.Tokenization;

namespace Atelier.Data.Formatting;

/// <summary>The tokens of one example and which of them are trained.</summary>
/// <param name="Tokens">Token ids, starting with BOS.</param>
/// <param name="LossMask">True where the token is a training target.</param>
public sealed record TokenizedExample(int[] Tokens, bool[] LossMask)
{
    /// <summary>Number of trained tokens.</summary>
    public int TrainedCount { get; } = CountTrained(LossMask);

    private static int CountTrained(bool[] mask)
    {
        ArgumentNullException.ThrowIfNull(mask);
        int count = 0;
        foreach (bool trained in mask)
        {
            count += trained ? 1 : 0;
        }

        return count;
    }
}

/// <summary>
/// Mistral's instruct format, v3 (tekken) style, as mistral-common renders it for training:
/// <c>&lt;s&gt;[INST] user [/INST] answer&lt;/s&gt;</c>; tools as <c>[AVAILABLE_TOOLS] json [/AVAILABLE_TOOLS]</c>
/// before the last user turn; system prompts joined and prepended to the last user turn; tool calls as
/// <c>[TOOL_CALLS] json&lt;/s&gt;</c>; results as <c>[TOOL_RESULTS] json [/TOOL_RESULTS]</c>. The loss mask
/// is true only on assistant tokens (content or tool calls, and their <c>&lt;/s&gt;</c>) whose weight
/// is not 0, as in mistral-finetune. Pretrain texts are <c>&lt;s&gt; text &lt;/s&gt;</c>, all trained.
/// Thread-safe.
/// </summary>
public sealed class MistralInstructFormatter
{
    private readonly ITextTokenizer _tokenizer;

    /// <summary>Creates a formatter over a tokeniser.</summary>
    public MistralInstructFormatter(ITextTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        _tokenizer = tokenizer;
    }

    /// <summary>Tokenises an example and computes its loss mask.</summary>
    public TokenizedExample Format(TrainingExample example)
    {
        ArgumentNullException.ThrowIfNull(example);
        var tokens = new List<int>(256);
        var mask = new List<bool>(256);
        ControlTokens control = _tokenizer.Control;
        if (example.Kind == ExampleKind.Text)
        {
            tokens.Add(control.Bos);
            _tokenizer.Encode(example.Text!, tokens);
            tokens.Add(control.Eos);
            return new TokenizedExample([.. tokens], Enumerable.Repeat(true, tokens.Count).ToArray());
        }

        IReadOnlyList<ChatMessage> messages = example.Messages!;
        int lastUser = -1;
        var system = new StringBuilder();
        for (int i = 0; i < messages.Count; i++)
        {
            if (messages[i].Role == ChatRole.User)
            {
                lastUser = i;
            }
            else if (messages[i].Role == ChatRole.System && !string.IsNullOrEmpty(messages[i].Content))
            {
                if (system.Length > 0)
                {
                    system.Append("\n\n");
                }

                system.Append(messages[i].Content);
            }
        }

        Push(tokens, mask, control.Bos, false);
        for (int i = 0; i < messages.Count; i++)
        {
            ChatMessage message = messages[i];
            switch (message.Role)
            {
                case ChatRole.System:
                    break;
                case ChatRole.User:
                    if (i == lastUser && example.ToolsJson is not null)
                    {
                        Control(tokens, mask, control.AvailableTools, "[AVAILABLE_TOOLS]");
                        Text(tokens, mask, example.ToolsJson, false);
                        Control(tokens, mask, control.EndAvailableTools, "[/AVAILABLE_TOOLS]");
                    }

                    Control(tokens, mask, control.Inst, "[INST]");
                    string content = message.Content ?? string.Empty;
                    if (i == lastUser && system.Length > 0)
                    {
                        content = system + "\n\n" + content;
                    }

                    Text(tokens, mask, content, false);
                    Control(tokens, mask, control.EndInst, "[/INST]");
                    break;
                case ChatRole.Assistant:
                    bool trained = message.Weight is null or 1;
                    if (message.ToolCalls is { Count: > 0 })
                    {
                        // The [TOOL_CALLS] marker is part of what the model must learn to emit.
                        if (control.ToolCalls is int toolCallsId)
                        {
                            Push(tokens, mask, toolCallsId, trained);
                        }
                        else
                        {
                            Text(tokens, mask, "[TOOL_CALLS]", trained);
                        }

                        Text(tokens, mask, ToolCallsJson(message.ToolCalls), trained);
                    }
                    else
                    {
                        Text(tokens, mask, message.Content ?? string.Empty, trained);
                    }

                    Push(tokens, mask, control.Eos, trained);
                    break;
                case ChatRole.Tool:
                    Control(tokens, mask, control.ToolResults, "[TOOL_RESULTS]");
                    Text(tokens, mask, ToolResultJson(message), false);
                    Control(tokens, mask, control.EndToolResults, "[/TOOL_RESULTS]");
                    break;
            }
        }

        return new TokenizedExample([.. tokens], [.. mask]);
    }

    /// <summary>The tool calls as mistral-common v3 renders them: <c>[{"name": ..., "arguments": {...}, "id": ...}]</c>.</summary>
    internal static string ToolCallsJson(IReadOnlyList<ToolCall> calls)
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
            using (JsonDocument arguments = JsonDocument.Parse(calls[i].Arguments))
            {
                PythonJson.Write(builder, arguments.RootElement);
            }

            if (calls[i].Id.Length > 0)
            {
                builder.Append(", \"id\": ");
                PythonJson.WriteString(builder, calls[i].Id);
            }

            builder.Append('}');
        }

        return builder.Append(']').ToString();
    }

    private static string ToolResultJson(ChatMessage message)
    {
        var builder = new StringBuilder("{\"content\": ");
        PythonJson.WriteString(builder, message.Content ?? string.Empty);
        builder.Append(", \"call_id\": ");
        PythonJson.WriteString(builder, message.ToolCallId ?? string.Empty);
        return builder.Append('}').ToString();
    }

    private void Control(List<int> tokens, List<bool> mask, int? id, string literal)
    {
        if (id is int value)
        {
            Push(tokens, mask, value, false);
        }
        else
        {
            Text(tokens, mask, literal, false);
        }
    }

    private void Text(List<int> tokens, List<bool> mask, string text, bool trained)
    {
        int before = tokens.Count;
        _tokenizer.Encode(text, tokens);
        for (int i = before; i < tokens.Count; i++)
        {
            mask.Add(trained);
        }
    }

    private static void Push(List<int> tokens, List<bool> mask, int id, bool trained)
    {
        tokens.Add(id);
        mask.Add(trained);
    }
}
