using System.Text;
using System.Text.Json;

namespace Atelier.Data.Tests.Support;

/// <summary>
/// Tokenisers small enough to derive token ids by hand: a byte-level tekken (a text byte b is id
/// b + 100, no merges) and a character-level SentencePiece model (one piece per character).
/// </summary>
internal static class TinyVocabularies
{
    /// <summary>The number of special ids of <see cref="WriteByteTekken"/>: text byte b has id b + this.</summary>
    public const int TekkenSpecialCount = 100;

    /// <summary>
    /// The special tokens of <see cref="WriteByteTekken"/>, at ids 0..21: mistral-common's first 20 (v7) in
    /// their order, then <c>[ARGS]</c> and <c>[CALL_ID]</c> (v11). The other ids up to 99 are unnamed.
    /// </summary>
    public static readonly string[] TekkenSpecials =
    [
        "<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]",
        "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]", "[SYSTEM_PROMPT]",
        "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]", "[ARGS]", "[CALL_ID]",
    ];

    /// <summary>Writes <c>tekken.json</c> of <paramref name="version"/> (e.g. "v7") into <paramref name="directory"/>.</summary>
    public static void WriteByteTekken(string directory, string version, int? vocabSize = null)
    {
        var vocab = new List<object>();
        for (int b = 0; b < 256; b++)
        {
            vocab.Add(new { rank = b, token_bytes = Convert.ToBase64String([(byte)b]), token_str = (string?)null });
        }

        var document = new
        {
            config = new
            {
                pattern = @"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s+",
                num_vocab_tokens = 256,
                default_vocab_size = vocabSize ?? TekkenSpecialCount + 256,
                default_num_special_tokens = TekkenSpecialCount,
                version,
            },
            vocab,
            special_tokens = TekkenSpecials.Select((s, i) => new { rank = i, token_str = s, is_control = true }),
        };
        File.WriteAllBytes(Path.Combine(directory, "tekken.json"), JsonSerializer.SerializeToUtf8Bytes(document));
    }

    /// <summary>The ids of <paramref name="text"/> in the byte tekken: its UTF-8 bytes, each plus 100.</summary>
    public static int[] TekkenText(string text) => [.. Encoding.UTF8.GetBytes(text).Select(b => b + TekkenSpecialCount)];

    /// <summary>
    /// The control pieces of a Mistral v3 SentencePiece model, at ids 3..9, in the order Mistral's
    /// <c>tokenizer.model.v3</c> has them.
    /// </summary>
    public static readonly string[] V3ControlPieces = ["[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]"];

    /// <summary>The character pieces, in id order after the special ones: "▁", "\n", then printable ASCII.</summary>
    private static readonly string[] CharPieces = ["▁", "\n", .. Enumerable.Range(0x21, 0x7E - 0x21 + 1).Select(c => ((char)c).ToString())];

    /// <summary>
    /// A character-level SentencePiece BPE model: &lt;unk&gt; &lt;s&gt; &lt;/s&gt;, then the v3 control pieces when
    /// <paramref name="withControlPieces"/> (a v2/v3 model; a v1 model has none), then one piece per
    /// character. With no multi-character piece nothing merges, so text encodes one id per character
    /// after SentencePiece's normalisation: a "▁" prefix and each space as "▁".
    /// </summary>
    public static byte[] BuildCharSentencePiece(bool withControlPieces)
    {
        var pieces = new List<(string Piece, float Score, int Type)> { ("<unk>", 0, 2), ("<s>", 0, 3), ("</s>", 0, 3) };
        if (withControlPieces)
        {
            pieces.AddRange(V3ControlPieces.Select(p => (p, 0f, 3)));
        }

        pieces.AddRange(CharPieces.Select((p, i) => (p, -1f - i, 1)));
        return BuildSentencePiece(pieces);
    }

    /// <summary>
    /// A SentencePiece BPE <c>ModelProto</c> in protobuf wire format over <paramref name="pieces"/>
    /// (type 1 normal, 2 unknown, 3 control): unk/bos/eos ids 0/1/2, no pad, identity normalisation,
    /// a dummy prefix, whitespace kept and escaped as "▁".
    /// </summary>
    public static byte[] BuildSentencePiece(IEnumerable<(string Piece, float Score, int Type)> pieces)
    {
        var model = new MemoryStream();
        foreach ((string piece, float score, int type) in pieces)
        {
            var entry = new MemoryStream();
            WriteBytes(entry, 1, Encoding.UTF8.GetBytes(piece));
            WriteTag(entry, 2, 5);
            entry.Write(BitConverter.GetBytes(score));
            WriteVarintField(entry, 3, (ulong)type);
            WriteBytes(model, 1, entry.ToArray());
        }

        var trainer = new MemoryStream();
        WriteVarintField(trainer, 3, 2);
        WriteVarintField(trainer, 40, 0);
        WriteVarintField(trainer, 41, 1);
        WriteVarintField(trainer, 42, 2);
        WriteVarintField(trainer, 43, unchecked((ulong)-1L));
        WriteBytes(model, 2, trainer.ToArray());

        var normalizer = new MemoryStream();
        WriteBytes(normalizer, 1, Encoding.UTF8.GetBytes("identity"));
        WriteVarintField(normalizer, 3, 1);
        WriteVarintField(normalizer, 4, 0);
        WriteVarintField(normalizer, 5, 1);
        WriteBytes(model, 3, normalizer.ToArray());
        return model.ToArray();
    }

    /// <summary>
    /// The ids of one SentencePiece encode call of <paramref name="text"/> in <see cref="BuildCharSentencePiece"/>:
    /// "▁" + text with spaces as "▁", one id per character.
    /// </summary>
    public static int[] PieceText(string text, bool withControlPieces)
    {
        int first = 3 + (withControlPieces ? V3ControlPieces.Length : 0);
        string normalized = "▁" + text.Replace(' ', '▁');
        return [.. normalized.Select(c => first + Array.IndexOf(CharPieces, c.ToString()))];
    }

    private static void WriteTag(Stream s, int field, int wireType) => WriteVarint(s, (ulong)((field << 3) | wireType));

    private static void WriteVarintField(Stream s, int field, ulong value)
    {
        WriteTag(s, field, 0);
        WriteVarint(s, value);
    }

    private static void WriteBytes(Stream s, int field, byte[] bytes)
    {
        WriteTag(s, field, 2);
        WriteVarint(s, (ulong)bytes.Length);
        s.Write(bytes);
    }

    private static void WriteVarint(Stream s, ulong value)
    {
        while (value >= 0x80)
        {
            s.WriteByte((byte)(value | 0x80));
            value >>= 7;
        }

        s.WriteByte((byte)value);
    }
}
