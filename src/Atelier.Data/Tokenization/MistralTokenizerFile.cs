using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Atelier.Data.Tokenization;

/// <summary>
/// The instruct format generation of a Mistral tokeniser, as mistral-common's <c>TokenizerVersion</c>
/// names it. Each one renders conversations differently (see <c>MistralInstructFormatter</c>).
/// </summary>
public enum MistralTokenizerVersion
{
    /// <summary>v1: SentencePiece, <c>[INST]</c> as text; the system prompt goes with the first user turn.</summary>
    V1 = 1,

    /// <summary>v2: control tokens; tools before the last user turn; tool history before it dropped.</summary>
    V2 = 2,

    /// <summary>v3: tool call ids, tool results as JSON with <c>call_id</c>; the system prompt goes with the last user turn.</summary>
    V3 = 3,

    /// <summary>v7: system prompts as <c>[SYSTEM_PROMPT]</c> messages in place; tool results as <c>id [TOOL_CONTENT] content</c>.</summary>
    V7 = 7,

    /// <summary>v11: tool calls as <c>[TOOL_CALLS]name[CALL_ID]id[ARGS]json</c>.</summary>
    V11 = 11,

    /// <summary>v13: tools before the first user turn; no call ids in calls or results.</summary>
    V13 = 13,
}

/// <summary>The two encodings of Mistral tokenisers.</summary>
public enum MistralTokenizerKind
{
    /// <summary><c>tekken.json</c>: tiktoken-style byte-level BPE.</summary>
    Tekken,

    /// <summary><c>tokenizer.model[.vN]</c>: a SentencePiece model.</summary>
    SentencePiece,
}

/// <summary>
/// A tokeniser file of a Mistral model directory, named and versioned as mistral-common does:
/// <c>tekken.json</c> carries its version in <c>config.version</c>; a SentencePiece model is
/// <c>tokenizer.model.v&lt;N&gt;</c> (optionally <c>m&lt;M&gt;</c> for multimodal, e.g. <c>v7m1</c>) with the
/// version in its name, and a plain <c>tokenizer.model</c> is v1.
/// </summary>
/// <param name="FileName">The file's name in the directory.</param>
/// <param name="Kind">Tekken or SentencePiece.</param>
/// <param name="Version">The instruct format version.</param>
/// <param name="VocabularySize">
/// The number of ids the tokeniser can produce: tekken's <c>n_words</c> (<c>config.default_vocab_size</c>,
/// special tokens included), or the SentencePiece model's piece count.
/// </param>
/// <param name="SpecialTokens">The special (control) tokens by text, with their ids.</param>
public sealed record MistralTokenizerFile(
    string FileName, MistralTokenizerKind Kind, MistralTokenizerVersion Version, int VocabularySize, IReadOnlyDictionary<string, int> SpecialTokens)
{
    /// <summary>The tekken file name.</summary>
    public const string TekkenFileName = "tekken.json";

    /// <summary>The SentencePiece file name, before any version suffix.</summary>
    public const string SentencePieceFileName = "tokenizer.model";

    /// <summary>
    /// Special tokens of tekken files written before <c>special_tokens</c> was stored in them
    /// (mistral-common's deprecated fixed list), in rank order.
    /// </summary>
    internal static readonly string[] LegacyTekkenSpecialTokens =
    [
        "<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]",
        "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]", "[SYSTEM_PROMPT]",
        "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]",
    ];

    /// <summary>The versions this code base renders, for error messages.</summary>
    public static string SupportedVersions => "v1, v2, v3, v7, v11, v13";

    /// <summary>
    /// Whether <paramref name="fileName"/> names a Mistral tokeniser: <c>tekken.json</c>,
    /// <c>tokenizer.model</c>, or <c>tokenizer.model.v&lt;digits&gt;</c> with an optional
    /// <c>m&lt;digits&gt;</c>. The version need not be one this code base renders: that is checked by
    /// <see cref="Inspect(string)"/>, so an unsupported version is reported as such rather than as a missing file.
    /// </summary>
    public static bool IsTokenizerFileName(string fileName)
    {
        ArgumentNullException.ThrowIfNull(fileName);
        return fileName == TekkenFileName || fileName == SentencePieceFileName || TryParseSuffix(fileName, out _);
    }

    /// <summary>
    /// The tokeniser files present in <paramref name="directory"/>, the one to use first: <c>tekken.json</c>
    /// when present (as mistral-common prefers it), else the SentencePiece file with the highest version
    /// (a Mistral v0.3 download holds both <c>tokenizer.model</c> and the identical <c>tokenizer.model.v3</c>).
    /// </summary>
    public static IReadOnlyList<string> FindAll(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        var names = new List<string>();
        foreach (string path in Directory.EnumerateFiles(directory))
        {
            string name = Path.GetFileName(path);
            if (IsTokenizerFileName(name))
            {
                names.Add(name);
            }
        }

        names.Sort((a, b) => Rank(b).CompareTo(Rank(a)));
        return names;

        static long Rank(string name) =>
            name == TekkenFileName ? long.MaxValue
            : TryParseSuffix(name, out int version) ? version
            : 0;
    }

    /// <summary>
    /// Reads the version and vocabulary size of a tokeniser file without building the tokeniser.
    /// </summary>
    /// <exception cref="InvalidDataException">The file is malformed, or its version is not one this code base renders.</exception>
    public static MistralTokenizerFile Inspect(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return Inspect(Path.GetFileName(path), File.ReadAllBytes(path));
    }

    /// <summary>Reads the version and vocabulary size of a tokeniser file's <paramref name="content"/>, named <paramref name="fileName"/>.</summary>
    /// <exception cref="InvalidDataException">The content is malformed, or its version is not one this code base renders.</exception>
    public static MistralTokenizerFile Inspect(string fileName, ReadOnlySpan<byte> content)
    {
        ArgumentNullException.ThrowIfNull(fileName);
        if (fileName == TekkenFileName)
        {
            return InspectTekken(fileName, content);
        }

        int version = 1;
        if (fileName != SentencePieceFileName && !TryParseSuffix(fileName, out version))
        {
            throw new InvalidDataException($"'{fileName}' is not a Mistral tokeniser file name (tekken.json, tokenizer.model or tokenizer.model.v<N>).");
        }

        (string Text, int Type)[] pieces = ReadSentencePieces(content, fileName);
        var special = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int i = 0; i < pieces.Length; i++)
        {
            // SentencePiece types: 2 unknown, 3 control, 4 user-defined. Mistral's [INST], [TOOL_CALLS]... are control pieces.
            if (pieces[i].Type is 2 or 3 or 4)
            {
                special.TryAdd(pieces[i].Text, i);
            }
        }

        return new MistralTokenizerFile(fileName, MistralTokenizerKind.SentencePiece, ParseVersion(version, fileName), pieces.Length, special);
    }

    /// <summary>Reads <c>tekken.json</c>'s version, vocabulary size and special tokens.</summary>
    /// <exception cref="InvalidDataException">The file is malformed or of an unsupported version.</exception>
    private static MistralTokenizerFile InspectTekken(string fileName, ReadOnlySpan<byte> json)
    {
        try
        {
            var reader = new Utf8JsonReader(json);
            using JsonDocument document = JsonDocument.ParseValue(ref reader);
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("config", out JsonElement config) || config.ValueKind != JsonValueKind.Object)
            {
                throw new InvalidDataException($"{fileName}: no config object.");
            }

            // mistral-common refuses a tekken file without a version; so do we, rather than guess a format.
            string? versionText = config.TryGetProperty("version", out JsonElement v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
            if (versionText is null || versionText.Length < 2 || versionText[0] != 'v'
                || !int.TryParse(versionText.AsSpan(1), NumberStyles.None, CultureInfo.InvariantCulture, out int version))
            {
                throw new InvalidDataException($"{fileName}: config.version is missing or not of the form v<N> (found '{versionText}').");
            }

            int vocabLength = root.TryGetProperty("vocab", out JsonElement vocab) && vocab.ValueKind == JsonValueKind.Array ? vocab.GetArrayLength() : 0;
            int numSpecial = config.TryGetProperty("default_num_special_tokens", out JsonElement ns) && ns.TryGetInt32(out int n) ? n : 1000;
            int vocabularySize = config.TryGetProperty("default_vocab_size", out JsonElement vs) && vs.TryGetInt32(out int size) ? size : vocabLength + numSpecial;
            if (vocabularySize > vocabLength + numSpecial)
            {
                throw new InvalidDataException(
                    $"{fileName}: config.default_vocab_size is {vocabularySize} but the file holds only {vocabLength} tokens and {numSpecial} special tokens.");
            }

            var special = new Dictionary<string, int>(StringComparer.Ordinal);
            if (root.TryGetProperty("special_tokens", out JsonElement specials) && specials.ValueKind == JsonValueKind.Array)
            {
                foreach (JsonElement token in specials.EnumerateArray())
                {
                    if (token.TryGetProperty("token_str", out JsonElement text) && text.GetString() is { } s && token.TryGetProperty("rank", out JsonElement rank))
                    {
                        special.TryAdd(s, rank.GetInt32());
                    }
                }
            }
            else
            {
                for (int i = 0; i < LegacyTekkenSpecialTokens.Length; i++)
                {
                    special[LegacyTekkenSpecialTokens[i]] = i;
                }
            }

            return new MistralTokenizerFile(fileName, MistralTokenizerKind.Tekken, ParseVersion(version, fileName), vocabularySize, special);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{fileName}: not a valid tekken file ({e.Message}).", e);
        }
    }

    private static MistralTokenizerVersion ParseVersion(int version, string fileName) => version switch
    {
        1 => MistralTokenizerVersion.V1,
        2 => MistralTokenizerVersion.V2,
        3 => MistralTokenizerVersion.V3,
        7 => MistralTokenizerVersion.V7,
        11 => MistralTokenizerVersion.V11,
        13 => MistralTokenizerVersion.V13,
        _ => throw new InvalidDataException(
            $"{fileName}: tokeniser version v{version} is not supported; Atelier renders chats for {SupportedVersions} (rendering another version's format would train the model on the wrong tokens)."),
    };

    /// <summary>Parses <c>tokenizer.model.v&lt;N&gt;[m&lt;M&gt;]</c>.</summary>
    private static bool TryParseSuffix(string fileName, out int version)
    {
        version = 0;
        const string Prefix = SentencePieceFileName + ".v";
        if (!fileName.StartsWith(Prefix, StringComparison.Ordinal))
        {
            return false;
        }

        ReadOnlySpan<char> rest = fileName.AsSpan(Prefix.Length);
        int m = rest.IndexOf('m');
        ReadOnlySpan<char> digits = m < 0 ? rest : rest[..m];
        if (m >= 0 && (m == rest.Length - 1 || !IsDigits(rest[(m + 1)..])))
        {
            return false;
        }

        return IsDigits(digits) && int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out version);
    }

    private static bool IsDigits(ReadOnlySpan<char> text) => text.Length > 0 && !text.ContainsAnyExceptInRange('0', '9');

    /// <summary>
    /// The pieces of a serialised SentencePiece <c>ModelProto</c>: each field 1 of the top-level message is
    /// a <c>SentencePiece</c> whose field 1 is the piece text and field 3 its type (1 normal when absent).
    /// Only the wire format is read, so counting pieces costs one pass over the bytes.
    /// </summary>
    internal static (string Text, int Type)[] ReadSentencePieces(ReadOnlySpan<byte> model, string fileName)
    {
        var pieces = new List<(string, int)>();
        int position = 0;
        while (position < model.Length)
        {
            ulong tag = ReadVarint(model, ref position, fileName);
            int field = (int)(tag >> 3);
            int wire = (int)(tag & 7);
            if (wire == 2)
            {
                int length = ReadLength(model, ref position, fileName);

                if (field == 1)
                {
                    pieces.Add(ReadPiece(model.Slice(position, length), fileName));
                }

                position += length;
            }
            else
            {
                Skip(model, ref position, wire, fileName);
            }
        }

        if (pieces.Count == 0)
        {
            throw new InvalidDataException($"{fileName}: not a SentencePiece model (no pieces).");
        }

        return [.. pieces];
    }

    private static (string Text, int Type) ReadPiece(ReadOnlySpan<byte> entry, string fileName)
    {
        string text = string.Empty;
        int type = 1;
        int position = 0;
        while (position < entry.Length)
        {
            ulong tag = ReadVarint(entry, ref position, fileName);
            int wire = (int)(tag & 7);
            if (wire == 0 && (tag >> 3) == 3)
            {
                type = (int)ReadVarint(entry, ref position, fileName);
            }
            else if (wire == 2)
            {
                int length = ReadLength(entry, ref position, fileName);

                if ((tag >> 3) == 1)
                {
                    text = Encoding.UTF8.GetString(entry.Slice(position, length));
                }

                position += length;
            }
            else
            {
                Skip(entry, ref position, wire, fileName);
            }
        }

        return (text, type);
    }

    /// <summary>A length-delimited field's length, checked against the bytes left.</summary>
    private static int ReadLength(ReadOnlySpan<byte> bytes, ref int position, string fileName)
    {
        ulong length = ReadVarint(bytes, ref position, fileName);
        if (length > (ulong)(bytes.Length - position))
        {
            throw new InvalidDataException($"{fileName}: truncated SentencePiece model.");
        }

        return (int)length;
    }

    private static void Skip(ReadOnlySpan<byte> bytes, ref int position, int wire, string fileName)
    {
        switch (wire)
        {
            case 0:
                ReadVarint(bytes, ref position, fileName);
                break;
            case 1:
                position += 8;
                break;
            case 5:
                position += 4;
                break;
            default:
                throw new InvalidDataException($"{fileName}: not a SentencePiece model (protobuf wire type {wire}).");
        }

        if (position > bytes.Length)
        {
            throw new InvalidDataException($"{fileName}: truncated SentencePiece model.");
        }
    }

    private static ulong ReadVarint(ReadOnlySpan<byte> bytes, ref int position, string fileName)
    {
        ulong value = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            if (position >= bytes.Length)
            {
                throw new InvalidDataException($"{fileName}: truncated SentencePiece model.");
            }

            byte b = bytes[position++];
            value |= (ulong)(b & 0x7F) << shift;
            if (b < 0x80)
            {
                return value;
            }
        }

        throw new InvalidDataException($"{fileName}: not a SentencePiece model (bad varint).");
    }
}
