namespace Atelier.Data.Tokenization;

/// <summary>
/// The ids of Mistral's instruct control tokens in a vocabulary. A null id means the vocabulary
/// lacks the token, and the chat format writes its literal text instead.
/// </summary>
public sealed record ControlTokens
{
    /// <summary><c>&lt;s&gt;</c>.</summary>
    public required int Bos { get; init; }

    /// <summary><c>&lt;/s&gt;</c>.</summary>
    public required int Eos { get; init; }

    /// <summary><c>[INST]</c>.</summary>
    public int? Inst { get; init; }

    /// <summary><c>[/INST]</c>.</summary>
    public int? EndInst { get; init; }

    /// <summary><c>[AVAILABLE_TOOLS]</c>.</summary>
    public int? AvailableTools { get; init; }

    /// <summary><c>[/AVAILABLE_TOOLS]</c>.</summary>
    public int? EndAvailableTools { get; init; }

    /// <summary><c>[TOOL_CALLS]</c>.</summary>
    public int? ToolCalls { get; init; }

    /// <summary><c>[TOOL_RESULTS]</c>.</summary>
    public int? ToolResults { get; init; }

    /// <summary><c>[/TOOL_RESULTS]</c>.</summary>
    public int? EndToolResults { get; init; }

    /// <summary><c>[SYSTEM_PROMPT]</c> (v7 and later).</summary>
    public int? SystemPrompt { get; init; }

    /// <summary><c>[/SYSTEM_PROMPT]</c> (v7 and later).</summary>
    public int? EndSystemPrompt { get; init; }

    /// <summary><c>[TOOL_CONTENT]</c> (v7 and later): separates a tool result's call id from its content.</summary>
    public int? ToolContent { get; init; }

    /// <summary><c>[CALL_ID]</c> (v11 and later).</summary>
    public int? CallId { get; init; }

    /// <summary><c>[ARGS]</c> (v11 and later).</summary>
    public int? Args { get; init; }

    /// <summary><c>[PREFIX]</c>: in a fill-in-the-middle prompt, the code before the gap follows it.</summary>
    public int? Prefix { get; init; }

    /// <summary><c>[SUFFIX]</c>: in a fill-in-the-middle prompt, the code after the gap follows it.</summary>
    public int? Suffix { get; init; }

    /// <summary><c>[MIDDLE]</c>.</summary>
    public int? Middle { get; init; }

    /// <summary>The id written in padding positions (masked out of the loss).</summary>
    public int Pad { get; init; }
}

/// <summary>
/// A tokeniser as the pipeline uses it: plain text to ids, never interpreting control-token
/// strings found in the text (a user writing "[INST]" gets the text, not the control token), plus
/// the control token ids the chat format inserts. Implementations are thread-safe.
/// </summary>
public interface ITextTokenizer
{
    /// <summary>A short name: <c>o200k_base</c>, <c>tekken</c>, <c>sentencepiece</c>...</summary>
    string Name { get; }

    /// <summary>Name plus a SHA-256 of the vocabulary: what the manifest records.</summary>
    string Identity { get; }

    /// <summary>Number of ids (the largest id plus one).</summary>
    int VocabularySize { get; }

    /// <summary>The control tokens.</summary>
    ControlTokens Control { get; }

    /// <summary>Appends the ids of <paramref name="text"/> to <paramref name="destination"/>.</summary>
    void Encode(string text, List<int> destination);

    /// <summary>Decodes ids back to text (tests, inspection).</summary>
    string Decode(IEnumerable<int> ids);

    /// <summary>
    /// The bytes each id stands for in decoded text, indexed by id (<see cref="VocabularySize"/> entries);
    /// null for control tokens, which are never text. Constrained decoding matches these against a
    /// grammar, byte by byte, so a token that ends inside a UTF-8 character is described exactly.
    /// </summary>
    IReadOnlyList<byte[]?> TokenBytes();
}
