namespace Atelier.Data.Tokenization;

/// <summary>
/// The tokeniser of a Mistral-format model directory: <c>tekken.json</c>, else the SentencePiece
/// <c>tokenizer.model.v&lt;N&gt;</c> of highest version, else <c>tokenizer.model</c> (v1), as mistral-common chooses.
/// </summary>
public static class ModelTokenizers
{
    /// <summary>
    /// Loads the directory's tokeniser: a <see cref="MistralModelTokenizer"/>, so the chat format renders
    /// its instruct version.
    /// </summary>
    /// <exception cref="FileNotFoundException">The directory has no tokeniser file.</exception>
    /// <exception cref="InvalidDataException">The file is malformed or of a version Atelier does not render.</exception>
    public static ITextTokenizer Load(string directory) => MistralModelTokenizer.Load(directory);
}

/// <summary>
/// A model's tokeniser with what the chat format needs beyond text: its instruct version and every
/// control token of its vocabulary (<c>[SYSTEM_PROMPT]</c>, <c>[TOOL_CONTENT]</c>, <c>[CALL_ID]</c>,
/// <c>[ARGS]</c> besides the ones the text tokeniser reports). Encoding is the inner tokeniser's.
/// </summary>
public sealed class MistralModelTokenizer : ITextTokenizer
{
    private readonly ITextTokenizer _inner;

    /// <summary>Loads the tokeniser of a model directory, chosen as <see cref="MistralTokenizerFile.FindAll"/> orders them.</summary>
    /// <exception cref="FileNotFoundException">The directory has no tokeniser file.</exception>
    /// <exception cref="InvalidDataException">The file is malformed or of a version Atelier does not render.</exception>
    public static MistralModelTokenizer Load(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        IReadOnlyList<string> names = MistralTokenizerFile.FindAll(directory);
        if (names.Count == 0)
        {
            throw new FileNotFoundException(
                $"{directory} has no tokeniser: it needs tekken.json or tokenizer.model (or tokenizer.model.v<N>, e.g. tokenizer.model.v3).",
                Path.Combine(directory, MistralTokenizerFile.TekkenFileName));
        }

        byte[] bytes = System.IO.File.ReadAllBytes(Path.Combine(directory, names[0]));
        MistralTokenizerFile file = MistralTokenizerFile.Inspect(names[0], bytes);
        using var stream = new MemoryStream(bytes, writable: false);
        ITextTokenizer inner = file.Kind == MistralTokenizerKind.Tekken ? TiktokenTextTokenizer.LoadTekken(stream) : SentencePieceTextTokenizer.Load(stream);
        return new MistralModelTokenizer(inner, file);
    }

    /// <summary>Wraps <paramref name="inner"/>, the tokeniser built from <paramref name="file"/>.</summary>
    public MistralModelTokenizer(ITextTokenizer inner, MistralTokenizerFile file)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentNullException.ThrowIfNull(file);
        _inner = inner;
        File = file;
        Identity = inner.Identity + "/instruct-v" + ((int)file.Version).ToString(System.Globalization.CultureInfo.InvariantCulture);
        IReadOnlyDictionary<string, int> special = file.SpecialTokens;
        int? Special(string token) => special.TryGetValue(token, out int id) ? id : null;
        Control = inner.Control with
        {
            SystemPrompt = Special("[SYSTEM_PROMPT]"),
            EndSystemPrompt = Special("[/SYSTEM_PROMPT]"),
            ToolContent = Special("[TOOL_CONTENT]"),
            CallId = Special("[CALL_ID]"),
            Args = Special("[ARGS]"),
            Prefix = Special("[PREFIX]"),
            Suffix = Special("[SUFFIX]"),
            Middle = Special("[MIDDLE]"),
        };
    }

    /// <summary>The file the tokeniser came from, with its version and vocabulary size.</summary>
    public MistralTokenizerFile File { get; }

    private byte[]?[]? _tokenBytes;

    /// <summary>The instruct format version the chat format renders.</summary>
    public MistralTokenizerVersion Version => File.Version;

    /// <inheritdoc />
    public string Name => _inner.Name;

    /// <summary>
    /// The inner identity plus the instruct version: the same SentencePiece bytes named
    /// <c>tokenizer.model</c> (v1) or <c>tokenizer.model.v3</c> render chats differently, so a dataset
    /// built with one must not be reused for the other.
    /// </summary>
    public string Identity { get; }

    /// <inheritdoc />
    public int VocabularySize => _inner.VocabularySize;

    /// <inheritdoc />
    public ControlTokens Control { get; }

    /// <inheritdoc />
    public void Encode(string text, List<int> destination) => _inner.Encode(text, destination);

    /// <inheritdoc />
    /// <remarks>The file's table, with every control token this wrapper knows (<c>[ARGS]</c>, <c>[CALL_ID]</c>, <c>[PREFIX]</c>...) as none, whatever the file says.</remarks>
    public IReadOnlyList<byte[]?> TokenBytes() => _tokenBytes ??= WithoutControlTokens(_inner.TokenBytes());

    private byte[]?[] WithoutControlTokens(IReadOnlyList<byte[]?> table)
    {
        byte[]?[] bytes = [.. table];
        ControlTokens c = Control;
        foreach (int? id in (int?[])[c.Bos, c.Eos, c.Inst, c.EndInst, c.AvailableTools, c.EndAvailableTools, c.ToolCalls, c.ToolResults, c.EndToolResults, c.SystemPrompt, c.EndSystemPrompt, c.ToolContent, c.CallId, c.Args, c.Prefix, c.Suffix, c.Middle])
        {
            if (id is int value && (uint)value < (uint)bytes.Length)
            {
                bytes[value] = null;
            }
        }

        return bytes;
    }

    /// <summary>
    /// Decodes ids back to text. Ids past the tokeniser's vocabulary (rows of an embedding padded beyond
    /// it, which an untrained model can still sample) have no text and are skipped.
    /// </summary>
    public string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        int size = File.VocabularySize;
        return _inner.Decode(ids.Where(id => id >= 0 && id < size));
    }
}
