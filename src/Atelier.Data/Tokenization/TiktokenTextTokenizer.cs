using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Atelier.Data.Tokenization;

/// <summary>
/// Byte-level BPE with tiktoken rank files, on Microsoft.ML.Tokenizers' <see cref="TiktokenTokenizer"/>:
/// o200k_base and cl100k_base from the NuGet data packages, and Mistral's <c>tekken.json</c>.
/// Special-token strings in the text are encoded as text: the pre-tokeniser is built without them.
/// The pre-tokeniser of the known patterns is <see cref="TiktokenPreTokenizer"/>, a scanner over
/// code points, so the pieces (and the ids) equal tiktoken's on any text, astral characters included.
/// </summary>
public sealed class TiktokenTextTokenizer : ITextTokenizer
{
    /// <summary>The pre-tokenisation pattern of o200k_base (from tiktoken).</summary>
    public const string O200kPattern =
        @"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>The pre-tokenisation pattern of cl100k_base (from tiktoken).</summary>
    public const string Cl100kPattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>The pre-tokenisation pattern of Mistral's tekken.json files (o200k_base's without contractions, digits one by one).</summary>
    public const string TekkenPattern =
        @"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private readonly TiktokenTokenizer _tokenizer;
    private readonly int _idOffset;
    private readonly byte[] _rankFile;
    private byte[]?[]? _tokenBytes;

    private TiktokenTextTokenizer(string name, string identity, TiktokenTokenizer tokenizer, int idOffset, int vocabularySize, ControlTokens control, byte[] rankFile)
    {
        _rankFile = rankFile;
        Name = name;
        Identity = identity;
        _tokenizer = tokenizer;
        _idOffset = idOffset;
        VocabularySize = vocabularySize;
        Control = control;
    }

    /// <inheritdoc />
    public string Name { get; }

    /// <inheritdoc />
    public string Identity { get; }

    /// <inheritdoc />
    public int VocabularySize { get; }

    /// <inheritdoc />
    public ControlTokens Control { get; }

    /// <summary>The underlying Microsoft.ML.Tokenizers instance (benchmarks).</summary>
    public Tokenizer Inner => _tokenizer;

    /// <summary>
    /// o200k_base from the Microsoft.ML.Tokenizers.Data.O200kBase package. It has no Mistral control
    /// tokens: they get ids past the vocabulary (200019 onwards), for tests and pretraining.
    /// </summary>
    public static TiktokenTextTokenizer CreateO200kBase() =>
        CreateFromDataPackage("o200k_base", System.Reflection.Assembly.Load("Microsoft.ML.Tokenizers.Data.O200kBase"), "o200k_base.tiktoken.deflate", O200kPattern, firstFreeId: 200019);

    /// <summary>cl100k_base from the Microsoft.ML.Tokenizers.Data.Cl100kBase package (control tokens from 100277).</summary>
    public static TiktokenTextTokenizer CreateCl100kBase() =>
        CreateFromDataPackage("cl100k_base", System.Reflection.Assembly.Load("Microsoft.ML.Tokenizers.Data.Cl100kBase"), "cl100k_base.tiktoken.deflate", Cl100kPattern, firstFreeId: 100277);

    /// <summary>
    /// o200k_base's ranks with another pre-tokenisation pattern: tests compare tekken's pattern with
    /// tiktoken on a real vocabulary this way, without shipping a tekken.json.
    /// </summary>
    internal static TiktokenTextTokenizer CreateWithO200kRanks(string pattern) =>
        CreateFromDataPackage("o200k_base", System.Reflection.Assembly.Load("Microsoft.ML.Tokenizers.Data.O200kBase"), "o200k_base.tiktoken.deflate", pattern, firstFreeId: 200019);

    /// <summary>
    /// Loads Mistral's <c>tekken.json</c>: <c>config.pattern</c>, <c>vocab</c> (base64 token bytes with
    /// ranks), <c>special_tokens</c> (the first <c>config.default_num_special_tokens</c> ids); a BPE
    /// token's id is its rank plus that count, and the vocabulary is cut at
    /// <c>config.default_vocab_size</c>, as mistral-common does.
    /// </summary>
    public static TiktokenTextTokenizer LoadTekken(Stream tekkenJson)
    {
        ArgumentNullException.ThrowIfNull(tekkenJson);
        using var buffer = new MemoryStream();
        tekkenJson.CopyTo(buffer);
        byte[] bytes = buffer.ToArray();
        string hash = Convert.ToHexStringLower(SHA256.HashData(bytes));
        using JsonDocument document = JsonDocument.Parse(bytes);
        JsonElement root = document.RootElement;
        JsonElement config = root.GetProperty("config");
        string pattern = config.GetProperty("pattern").GetString() ?? throw new InvalidDataException("tekken.json: config.pattern is null");
        int numSpecial = config.TryGetProperty("default_num_special_tokens", out JsonElement ns) ? ns.GetInt32() : 1000;
        JsonElement vocab = root.GetProperty("vocab");
        int vocabSize = config.TryGetProperty("default_vocab_size", out JsonElement vs) ? vs.GetInt32() : vocab.GetArrayLength() + numSpecial;
        int innerSize = Math.Min(vocab.GetArrayLength(), vocabSize - numSpecial);

        var rankFile = new StringBuilder(innerSize * 16);
        int seen = 0;
        foreach (JsonElement entry in vocab.EnumerateArray())
        {
            int rank = entry.GetProperty("rank").GetInt32();
            if (rank >= innerSize)
            {
                continue;
            }

            rankFile.Append(entry.GetProperty("token_bytes").GetString()).Append(' ').Append(rank).Append('\n');
            seen++;
        }

        var specials = new Dictionary<string, int>(StringComparer.Ordinal);
        if (root.TryGetProperty("special_tokens", out JsonElement specialTokens) && specialTokens.ValueKind == JsonValueKind.Array)
        {
            foreach (JsonElement special in specialTokens.EnumerateArray())
            {
                specials.TryAdd(special.GetProperty("token_str").GetString()!, special.GetProperty("rank").GetInt32());
            }
        }
        else
        {
            // Tekken files before special_tokens was written use mistral-common's fixed list.
            string[] legacy = ["<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]"];
            for (int i = 0; i < legacy.Length; i++)
            {
                specials[legacy[i]] = i;
            }
        }

        byte[] ranks = Encoding.ASCII.GetBytes(rankFile.ToString());
        TiktokenTokenizer tokenizer = CreateInner(ranks, pattern);
        int? Special(string token) => specials.TryGetValue(token, out int id) ? id : null;
        var control = new ControlTokens
        {
            Bos = Special("<s>") ?? 1,
            Eos = Special("</s>") ?? 2,
            Inst = Special("[INST]"),
            EndInst = Special("[/INST]"),
            AvailableTools = Special("[AVAILABLE_TOOLS]"),
            EndAvailableTools = Special("[/AVAILABLE_TOOLS]"),
            ToolCalls = Special("[TOOL_CALLS]"),
            ToolResults = Special("[TOOL_RESULTS]"),
            EndToolResults = Special("[/TOOL_RESULTS]"),
            Pad = Special("<pad>") ?? 0,
        };
        return new TiktokenTextTokenizer("tekken", "tekken/sha256:" + hash, tokenizer, numSpecial, numSpecial + innerSize, control, ranks);
    }

    /// <inheritdoc />
    public void Encode(string text, List<int> destination)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(destination);
        if (text.Length == 0)
        {
            return;
        }

        IReadOnlyList<int> ids = _tokenizer.EncodeToIds(text, considerPreTokenization: true, considerNormalization: false);
        if (_idOffset == 0)
        {
            destination.AddRange(ids);
            return;
        }

        for (int i = 0; i < ids.Count; i++)
        {
            destination.Add(ids[i] + _idOffset);
        }
    }

    /// <inheritdoc />
    public string Decode(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var inner = new List<int>();
        foreach (int id in ids)
        {
            if (id >= _idOffset && id - _idOffset < VocabularySize)
            {
                inner.Add(id - _idOffset);
            }
        }

        return _tokenizer.Decode(inner);
    }

    /// <inheritdoc />
    public IReadOnlyList<byte[]?> TokenBytes() => _tokenBytes ??= BuildTokenBytes();

    // From the rank file: a token's id is its rank plus the offset of the control tokens; ids not in
    // it (control tokens) stay null. Two layouts: tiktoken's "base64 rank" lines, or the data packages'
    // "Capacity: n" header and one base64 token per line, whose rank is its line.
    private byte[]?[] BuildTokenBytes()
    {
        var table = new byte[]?[VocabularySize];
        Span<byte> buffer = stackalloc byte[1024];
        int next = 0;
        foreach (string line in Encoding.ASCII.GetString(_rankFile).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (line.StartsWith("Capacity:", StringComparison.Ordinal))
            {
                continue;
            }

            int space = line.IndexOf(' ', StringComparison.Ordinal);
            int rank = space < 0 ? next : int.Parse(line.AsSpan(space + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture);
            next = rank + 1;
            int id = rank + _idOffset;
            string token = space < 0 ? line : line[..space];
            if ((uint)id < (uint)table.Length)
            {
                table[id] = Convert.TryFromBase64String(token, buffer, out int written)
                    ? buffer[..written].ToArray()
                    : throw new InvalidDataException($"{Name}: rank line '{line}' does not start with base64 token bytes.");
            }
        }

        return table;
    }

    private static TiktokenTextTokenizer CreateFromDataPackage(string name, System.Reflection.Assembly assembly, string resource, string pattern, int firstFreeId)
    {
        using Stream compressed = assembly.GetManifestResourceStream(resource)
            ?? throw new InvalidOperationException($"resource {resource} not found in {assembly.GetName().Name}");
        using var deflate = new DeflateStream(compressed, CompressionMode.Decompress);
        using var ranks = new MemoryStream();
        deflate.CopyTo(ranks);
        byte[] bytes = ranks.ToArray();
        string hash = Convert.ToHexStringLower(SHA256.HashData(bytes));
        var control = new ControlTokens
        {
            Bos = firstFreeId,
            Eos = firstFreeId + 1,
            Inst = firstFreeId + 2,
            EndInst = firstFreeId + 3,
            AvailableTools = firstFreeId + 4,
            EndAvailableTools = firstFreeId + 5,
            ToolCalls = firstFreeId + 6,
            ToolResults = firstFreeId + 7,
            EndToolResults = firstFreeId + 8,
            Pad = 0,
        };
        return new TiktokenTextTokenizer(name, $"tiktoken/{name}/sha256:{hash}", CreateInner(bytes, pattern), 0, firstFreeId + 9, control, bytes);
    }

    private static TiktokenTokenizer CreateInner(byte[] rankFile, string pattern)
    {
        // The known patterns run on the code-point scanner, which equals tiktoken on every input. Any
        // other pattern (a tekken.json we have not seen) falls back to .NET's Regex, which sees UTF-16
        // units: letters and digits past U+FFFF then fail \p{L} and \p{N}, and the pieces around them
        // can differ from the Rust regex that wrote the vocabulary.
        PreTokenizer preTokenizer = (PreTokenizer?)TiktokenPreTokenizer.ForPattern(pattern)
            ?? new RegexPreTokenizer(new Regex(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant), null);
        using var stream = new MemoryStream(rankFile, writable: false);
        return TiktokenTokenizer.Create(stream, preTokenizer, normalizer: null, specialTokens: null, cacheSize: 1 << 16);
    }
}
