using Atelier.Data.Tokenization;

namespace Atelier.Server.Inference;

/// <summary>A parsed tool call.</summary>
internal sealed record ParsedToolCall(string Id, string Name, string Arguments);

/// <summary>TEMPORARY: replaced by the formatter's parser.</summary>
internal static class ToolCallText
{
    public static IReadOnlyList<ParsedToolCall> Parse(ITextTokenizer tokenizer, IReadOnlyList<int> tokens, int at) =>
        [new ParsedToolCall("000000000", "unparsed", tokenizer.Decode(tokens.Skip(at + 1)))];
}
