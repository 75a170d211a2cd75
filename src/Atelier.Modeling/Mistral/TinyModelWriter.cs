using System.Text.Json;
using System.Text.Json.Nodes;
using Atelier.Modeling.SafeTensors;

namespace Atelier.Modeling.Mistral;

/// <summary>
/// Writes a small, valid model directory in Mistral's consolidated format (random weights, a
/// byte-level tekken tokeniser) for tests and demos: <c>consolidated.safetensors</c>,
/// <c>tekken.json</c>, then <c>params.json</c> last, each written to a temporary name and renamed.
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
    public static MistralArgs Write(string directory, MistralArgs? args = null, ulong seed = 0, SafeTensorDType dtype = SafeTensorDType.BF16)
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

        WriteAtomically(Path.Combine(directory, "tekken.json"), TekkenJson());
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

    private static void WriteAtomically(string path, string text)
    {
        var temp = path + ".tmp";
        using (var fs = new FileStream(temp, FileMode.Create, FileAccess.Write))
        using (var w = new StreamWriter(fs))
        {
            w.Write(text);
            w.Flush();
            fs.Flush(flushToDisk: true);
        }

        File.Move(temp, path, overwrite: true);
    }
}
