namespace Atelier.Data.Model;

/// <summary>What an example is made of: a chat conversation or a plain pretraining text.</summary>
public enum ExampleKind
{
    /// <summary>A conversation of <see cref="ChatMessage"/>s (fine-tune format).</summary>
    Chat,

    /// <summary>A plain text (pretrain format, text and Parquet corpora).</summary>
    Text,
}

/// <summary>The role of a chat message, as Mistral's fine-tune format names them.</summary>
public enum ChatRole
{
    /// <summary>A system prompt.</summary>
    System,

    /// <summary>A user turn.</summary>
    User,

    /// <summary>An assistant turn: the only role whose tokens can be trained.</summary>
    Assistant,

    /// <summary>The result of a tool call.</summary>
    Tool,
}

/// <summary>A function call made by the assistant.</summary>
/// <param name="Id">The call id (Mistral: 9 alphanumerics).</param>
/// <param name="Name">The function name.</param>
/// <param name="Arguments">The arguments, as a JSON text.</param>
public sealed record ToolCall(string Id, string Name, string Arguments);

/// <summary>One message of a conversation.</summary>
public sealed record ChatMessage
{
    /// <summary>Who speaks.</summary>
    public required ChatRole Role { get; init; }

    /// <summary>The text content; null for an assistant turn that only calls tools.</summary>
    public string? Content { get; init; }

    /// <summary>The tool calls of an assistant turn, or null.</summary>
    public IReadOnlyList<ToolCall>? ToolCalls { get; init; }

    /// <summary>For a tool message: the id of the call it answers.</summary>
    public string? ToolCallId { get; init; }

    /// <summary>For a tool message: the function name, when given.</summary>
    public string? Name { get; init; }

    /// <summary>For an assistant message: 0 to exclude it from the loss, 1 (or null) to train on it.</summary>
    public int? Weight { get; init; }
}

/// <summary>
/// One example as read from a source file, before and after normalisation. Immutable: a stage
/// that changes it returns a new instance.
/// </summary>
public sealed record TrainingExample
{
    /// <summary>Position of the example in the build's input order (0-based, over all files).</summary>
    public required long Ordinal { get; init; }

    /// <summary>The source file name as given to the build.</summary>
    public required string SourceFile { get; init; }

    /// <summary>1-based line (JSONL, text) or row (Parquet) where the example starts.</summary>
    public required long Line { get; init; }

    /// <summary>Chat or text.</summary>
    public required ExampleKind Kind { get; init; }

    /// <summary>The text of a <see cref="ExampleKind.Text"/> example.</summary>
    public string? Text { get; init; }

    /// <summary>The messages of a <see cref="ExampleKind.Chat"/> example.</summary>
    public IReadOnlyList<ChatMessage>? Messages { get; init; }

    /// <summary>The top-level <c>tools</c> array of a chat example, as compact JSON, or null.</summary>
    public string? ToolsJson { get; init; }

    /// <summary>Size of the example in its source, in bytes (for throughput figures).</summary>
    public int SourceBytes { get; init; }
}
