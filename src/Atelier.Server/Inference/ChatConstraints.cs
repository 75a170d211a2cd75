using System.Text.Json;
using System.Text.Json.Nodes;
using Atelier.Core.Errors;
using Atelier.Inference;
using Atelier.Inference.Constraints;
using Atelier.Inference.Serving;

namespace Atelier.Server.Inference;

/// <summary>
/// What a chat request's <c>response_format</c> and <c>tool_choice</c> allow the model to write, as a
/// constraint per choice: JSON for <c>json_object</c>, the schema's values for <c>json_schema</c>, a
/// call of one of the tools (or the named one) with arguments valid for its <c>parameters</c> for
/// <c>any</c>/<c>required</c>/a function, calls made valid once begun for <c>auto</c>, and no call at
/// all for <c>none</c>. Schemas are compiled before anything runs, so an unsupported one is a 422.
/// </summary>
internal static class ChatConstraints
{
    public static Func<ILogitsProcessor?>? For(ChatRequest chat, ServedModel served)
    {
        var formatter = served.Base.Formatter;
        if (chat.Tools.Count > 0 && chat.ToolChoice != "none")
        {
            if (formatter.ToolCallsTokenId is not { } toolCalls)
            {
                throw new BadRequestException($"Model '{served.Model.Id}' cannot call tools: its tokeniser ({formatter.Version}) has no [TOOL_CALLS] token.", "unsupported_model_capability");
            }

            var functions = new List<ToolCallFunction>();
            for (var i = 0; i < chat.Tools.Count; i++)
            {
                var function = (JsonObject)chat.Tools[i]["function"]!;
                var name = function["name"]!.GetValue<string>();
                if (chat.ToolChoice == "function" && name != chat.ToolChoiceName)
                {
                    continue;
                }

                var grammar = function["parameters"] is JsonObject parameters
                    ? JsonGrammar.FromSchema(parameters.ToJsonString(), function["strict"]?.GetValueKind() == JsonValueKind.True, $"tools[{i}].function.parameters")
                    : JsonGrammar.AnyObject;
                functions.Add(new ToolCallFunction(name, grammar));
            }

            var syntax = formatter.ToolCallsAreJsonList ? ToolCallSyntax.JsonList : ToolCallSyntax.NameThenArguments;
            var tokens = new ToolCallTokens(toolCalls, formatter.ArgsTokenId);
            var vocabulary = served.Base.Vocabulary;
            var textFirst = chat.ToolChoice == "auto";
            return () => new ToolCallConstraint(vocabulary, syntax, tokens, functions, chat.ParallelToolCalls, textFirst);
        }

        if (chat.ResponseFormat is "json_object" or "json_schema")
        {
            var grammar = chat.ResponseFormat == "json_object"
                ? JsonGrammar.AnyObject
                : JsonGrammar.FromSchema(chat.JsonSchema!.ToJsonString(), chat.StrictSchema, "response_format.json_schema.schema");
            var vocabulary = served.Base.Vocabulary;
            var constrained = () => (ILogitsProcessor?)new JsonConstraint(vocabulary, grammar);
            return chat.ToolChoice == "none" && formatter.ToolCallsTokenId is { } banned ? () => new LogitsProcessorChain([constrained()!, new Ban(banned)]) : constrained;
        }

        return chat.ToolChoice == "none" && chat.Tools.Count > 0 && formatter.ToolCallsTokenId is { } ban ? () => new Ban(ban) : null;
    }

    /// <summary>Never lets a token be sampled (<c>[TOOL_CALLS]</c> under <c>tool_choice: none</c>).</summary>
    private sealed class Ban(int token) : ILogitsProcessor
    {
        public void Process(ReadOnlySpan<int> generated, Span<float> logits)
        {
            if ((uint)token < (uint)logits.Length)
            {
                logits[token] = float.NegativeInfinity;
            }
        }
    }
}
