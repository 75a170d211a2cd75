using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Atelier.Modeling.SafeTensors;

namespace Atelier.Modeling.Mistral;

/// <summary>The tokeniser of a tiny model directory.</summary>
public enum TinyTokenizer
{
    /// <summary><c>tekken.json</c>, version v7 (system prompts as <c>[SYSTEM_PROMPT]</c> messages).</summary>
    TekkenV7,

    /// <summary><c>tokenizer.model.v3</c>: SentencePiece with Mistral v3's control pieces (as Mistral 7B v0.3).</summary>
    SentencePieceV3,

    /// <summary><c>tokenizer.model</c>: SentencePiece without control pieces, v1 (as Mistral 7B v0.1).</summary>
    SentencePieceV1,
}

/// <summary>
/// Writes a small, valid model directory in Mistral's consolidated format (random weights, a
/// byte-level tokeniser: tekken by default) for tests and demos: <c>consolidated.safetensors</c>,
/// the tokeniser, then <c>params.json</c> last, each written to a temporary name and renamed.
/// </summary>
public static class TinyModelWriter
{
    /// <summary>The control tokens of a tekken v7 vocabulary, in rank order.</summary>
    public static IReadOnlyList<string> SpecialTokens { get; } =
    [
        "<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]",
        "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]", "[IMG_END]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]", "[SYSTEM_PROMPT]",
        "[/SYSTEM_PROMPT]", "[TOOL_CONTENT]",
    ];

    /// <summary>The control pieces of a Mistral v3 SentencePiece model, at ids 3..9 after &lt;unk&gt;, &lt;s&gt;, &lt;/s&gt;.</summary>
    public static IReadOnlyList<string> SentencePieceControlPieces { get; } =
        ["[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]"];

    /// <summary>Vocabulary size of the byte-level tokeniser: the special tokens, then one token per byte.</summary>
    public static int ByteVocabSize => SpecialTokens.Count + 256;

    /// <summary>The pre-tokenisation pattern of Mistral's tekken tokenisers.</summary>
    public const string TekkenPattern =
        @"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    /// <summary>The default tiny shape: 2 layers of width 64, 4 query and 2 key/value heads, the byte vocabulary.</summary>
    public static MistralArgs DefaultArgs => new(
        Dim: 64, NLayers: 2, HeadDim: 16, HiddenDim: 192, NHeads: 4, NKvHeads: 2,
        NormEps: 1e-5f, VocabSize: ByteVocabSize, RopeTheta: 1_000_000.0);

    /// <summary>Writes the directory (created if needed) and returns the arguments written.</summary>
    /// <param name="directory">Target directory.</param>
    /// <param name="args">Shape; <see cref="DefaultArgs"/> when null. Its vocabulary must hold the byte tokeniser.</param>
    /// <param name="seed">Seeds the random weights.</param>
    /// <param name="dtype">Storage type of the weights (bf16 like released checkpoints, by default).</param>
    /// <param name="tokenizer">
    /// The tokeniser written. The SentencePiece ones have fewer ids than <see cref="ByteVocabSize"/>: the
    /// model's vocabulary is then padded past the tokeniser's, as Mistral's embeddings may be.
    /// </param>
    public static MistralArgs Write(string directory, MistralArgs? args = null, ulong seed = 0, SafeTensorDType dtype = SafeTensorDType.BF16, TinyTokenizer tokenizer = TinyTokenizer.TekkenV7)
    {
        args ??= DefaultArgs;
        args.Validate();
        if (args.VocabSize < ByteVocabSize)
        {
            throw new ArgumentException($"The byte-level tokeniser needs a vocabulary of at least {ByteVocabSize}.", nameof(args));
        }

        Directory.CreateDirectory(directory);
        using (var weights = MistralWeights.CreateRandom(args, seed))
        {
            weights.Save(Path.Combine(directory, "consolidated.safetensors"), dtype);
        }

        switch (tokenizer)
        {
            case TinyTokenizer.SentencePieceV3:
                WriteAtomically(Path.Combine(directory, "tokenizer.model.v3"), SentencePieceModel(controlPieces: true));
                break;
            case TinyTokenizer.SentencePieceV1:
                WriteAtomically(Path.Combine(directory, "tokenizer.model"), SentencePieceModel(controlPieces: false));
                break;
            default:
                WriteAtomically(Path.Combine(directory, "tekken.json"), Encoding.UTF8.GetBytes(TekkenJson()));
                break;
        }

        WriteAtomically(Path.Combine(directory, "params.json"), args.ToJson());
        return args;
    }

    /// <summary>A minimal tekken.json: 20 control tokens, then the 256 single bytes (no merges).</summary>
    public static string TekkenJson()
    {
        var vocab = new JsonArray();
        for (var b = 0; b < 256; b++)
        {
            var bytes = new[] { (byte)b };
            vocab.Add(new JsonObject
            {
                ["rank"] = b,
                ["token_bytes"] = Convert.ToBase64String(bytes),
                ["token_str"] = b is >= 0x20 and < 0x7F ? ((char)b).ToString() : null,
            });
        }

        var special = new JsonArray();
        for (var i = 0; i < SpecialTokens.Count; i++)
        {
            special.Add(new JsonObject { ["rank"] = i, ["token_str"] = SpecialTokens[i], ["is_control"] = true });
        }

        var root = new JsonObject
        {
            ["config"] = new JsonObject
            {
                ["pattern"] = TekkenPattern,
                ["num_vocab_tokens"] = 256,
                ["default_vocab_size"] = ByteVocabSize,
                ["default_num_special_tokens"] = SpecialTokens.Count,
                ["version"] = "v7",
            },
            ["vocab"] = vocab,
            ["special_tokens"] = special,
        };
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = false });
    }

    /// <summary>
    /// A byte-level SentencePiece BPE model (serialised <c>ModelProto</c>): &lt;unk&gt; &lt;s&gt; &lt;/s&gt;, Mistral v3's
    /// control pieces when <paramref name="controlPieces"/>, the 256 byte pieces <c>&lt;0xNN&gt;</c>, then "▁";
    /// with byte fallback on, any text encodes.
    /// </summary>
    public static byte[] SentencePieceModel(bool controlPieces)
    {
        // Piece types: 1 normal, 2 unknown, 3 control, 6 byte.
        var pieces = new List<(string Piece, int Type)> { ("<unk>", 2), ("<s>", 3), ("</s>", 3) };
        if (controlPieces)
        {
            pieces.AddRange(SentencePieceControlPieces.Select(p => (p, 3)));
        }

        for (var b = 0; b < 256; b++)
        {
            pieces.Add(($"<0x{b:X2}>", 6));
        }

        pieces.Add(("\u2581", 1));
        using var model = new MemoryStream();
        foreach (var (piece, type) in pieces)
        {
            using var entry = new MemoryStream();
            WriteBytes(entry, 1, Encoding.UTF8.GetBytes(piece));
            WriteTag(entry, 2, 5);
            entry.Write(BitConverter.GetBytes(0f));
            WriteVarint(entry, 3, (ulong)type);
            WriteBytes(model, 1, entry.ToArray());
        }

        // TrainerSpec: model_type 2 (BPE), byte_fallback, unk/bos/eos ids 0/1/2, no pad.
        using var trainer = new MemoryStream();
        WriteVarint(trainer, 3, 2);
        WriteVarint(trainer, 35, 1);
        WriteVarint(trainer, 40, 0);
        WriteVarint(trainer, 41, 1);
        WriteVarint(trainer, 42, 2);
        WriteVarint(trainer, 43, unchecked((ulong)-1L));
        WriteBytes(model, 2, trainer.ToArray());

        // NormalizerSpec: identity, add_dummy_prefix, keep extra whitespace, escape whitespace as "▁".
        using var normalizer = new MemoryStream();
        WriteBytes(normalizer, 1, "identity"u8.ToArray());
        WriteVarint(normalizer, 3, 1);
        WriteVarint(normalizer, 4, 0);
        WriteVarint(normalizer, 5, 1);
        WriteBytes(model, 3, normalizer.ToArray());
        return model.ToArray();
    }

    private static void WriteTag(Stream s, int field, int wireType) => WriteVarint(s, (ulong)((field << 3) | wireType));

    private static void WriteVarint(Stream s, int field, ulong value)
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

    private static void WriteAtomically(string path, string text) => WriteAtomically(path, Encoding.UTF8.GetBytes(text));

    private static void WriteAtomically(string path, byte[] bytes) => Atelier.Core.IO.AtomicFile.WriteAllBytes(path, bytes);
}
