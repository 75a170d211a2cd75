using System.Buffers.Binary;
using System.Text.Json;
using Atelier.Core.Errors;
using Atelier.Data.Tokenization;

namespace Atelier.Registry;

/// <summary>The files of a valid Mistral model directory, and what <c>params.json</c> says about it.</summary>
/// <param name="Files">File names to copy, weights first and <c>params.json</c> last.</param>
/// <param name="MaxContextLength">From <c>max_seq_len</c> or <c>max_position_embeddings</c>, else 32768 (Mistral's default).</param>
/// <param name="Tokenizer">The tokeniser file the model is used with, its version and vocabulary size.</param>
public sealed record ValidatedModelDirectory(IReadOnlyList<string> Files, int MaxContextLength, MistralTokenizerFile Tokenizer);

/// <summary>
/// Checks a directory is a model in Mistral's consolidated format before anything is copied:
/// <c>params.json</c> with the architecture's fields, a <c>consolidated.safetensors</c> whose header
/// parses and whose tensors lie inside the file, and a tokeniser (<c>tekken.json</c>,
/// <c>tokenizer.model.v&lt;N&gt;</c> or <c>tokenizer.model</c>, named and versioned as mistral-common does)
/// whose vocabulary fits the model's <c>vocab_size</c>. Every problem is reported at once, each naming its file.
/// </summary>
public static class ModelDirectoryValidator
{
    /// <summary>The weights file.</summary>
    public const string Weights = "consolidated.safetensors";

    /// <summary>The architecture file.</summary>
    public const string Params = "params.json";

    private const long MaxHeaderBytes = 100L * 1024 * 1024;

    /// <summary>Validates <paramref name="directory"/>; throws <see cref="ValidationFailedException"/> listing every problem.</summary>
    public static ValidatedModelDirectory Validate(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (!Path.IsPathFullyQualified(directory))
        {
            throw new BadRequestException($"The model directory must be an absolute path on the server's machine, not '{directory}'.", "invalid_model_directory");
        }

        if (!Directory.Exists(directory))
        {
            throw new BadRequestException($"The model directory '{directory}' does not exist on the server's machine.", "invalid_model_directory");
        }

        var problems = new List<Problem>();
        var maxContext = 32768;
        int? vocabSize = null;
        var paramsPath = Path.Combine(directory, Params);
        if (!File.Exists(paramsPath))
        {
            problems.Add(new Problem("missing: a Mistral model directory needs params.json", File: Params));
        }
        else
        {
            (var context, vocabSize) = CheckParams(paramsPath, problems);
            maxContext = context ?? maxContext;
        }

        var weightsPath = Path.Combine(directory, Weights);
        if (!File.Exists(weightsPath))
        {
            problems.Add(new Problem("missing: a Mistral model directory needs consolidated.safetensors", File: Weights));
        }
        else
        {
            CheckSafeTensors(weightsPath, problems);
        }

        var tokenizers = MistralTokenizerFile.FindAll(directory);
        var tokenizer = tokenizers.Count == 0 ? null : CheckTokenizer(directory, tokenizers[0], vocabSize, problems);
        if (tokenizers.Count == 0)
        {
            problems.Add(new Problem(
                "missing: a Mistral model directory needs tekken.json or tokenizer.model (or a versioned SentencePiece file such as tokenizer.model.v3)",
                File: MistralTokenizerFile.TekkenFileName));
        }

        if (problems.Count > 0 || tokenizer is null)
        {
            throw new ValidationFailedException(
                $"'{directory}' is not a valid Mistral model directory: {string.Join("; ", problems)}",
                problems,
                problems.Count,
                "invalid_model_directory");
        }

        // Every tokeniser file is kept (a v0.3 download has tokenizer.model and tokenizer.model.v3), so the
        // imported directory chooses the same one as the source directory did.
        return new ValidatedModelDirectory([Weights, .. tokenizers, Params], maxContext, tokenizer);
    }

    /// <summary>
    /// Reads the tokeniser's version and vocabulary and checks it against <c>vocab_size</c>. A model's
    /// embedding may have more rows than its tokeniser has ids (padding: mistral-inference and
    /// mistral-finetune only index rows by id), but a tokeniser with more ids than rows would produce
    /// ids the model cannot embed, which surfaces much later as an index error in training or inference.
    /// </summary>
    private static MistralTokenizerFile? CheckTokenizer(string directory, string name, int? vocabSize, List<Problem> problems)
    {
        MistralTokenizerFile tokenizer;
        try
        {
            tokenizer = MistralTokenizerFile.Inspect(Path.Combine(directory, name));
        }
        catch (InvalidDataException e)
        {
            // Inspect's messages start with the file name, which the problem already carries.
            var message = e.Message.StartsWith(name + ": ", StringComparison.Ordinal) ? e.Message[(name.Length + 2)..] : e.Message;
            problems.Add(new Problem(message, File: name));
            return null;
        }

        if (vocabSize is int size && tokenizer.VocabularySize > size)
        {
            problems.Add(new Problem(
                $"the tokeniser has {tokenizer.VocabularySize} tokens but params.json has vocab_size {size}: it would produce ids the model has no embedding for "
                + "(a model's vocab_size may be larger than its tokeniser's, never smaller; is this the model's own tokeniser?)",
                Field: "vocab_size",
                File: name));
        }

        return tokenizer;
    }

    private static (int? MaxContext, int? VocabSize) CheckParams(string path, List<Problem> problems)
    {
        JsonDocument document;
        try
        {
            using var stream = File.OpenRead(path);
            document = JsonDocument.Parse(stream);
        }
        catch (JsonException e)
        {
            problems.Add(new Problem($"not valid JSON ({e.Message})", File: Params));
            return (null, null);
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                problems.Add(new Problem("not a JSON object", File: Params));
                return (null, null);
            }

            int? vocabSize = null;
            foreach (var field in new[] { "dim", "n_layers", "hidden_dim", "n_heads", "vocab_size" })
            {
                if (!root.TryGetProperty(field, out var v))
                {
                    problems.Add(new Problem("missing field", Field: field, File: Params));
                }
                else if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out var n) || n <= 0)
                {
                    problems.Add(new Problem("must be a positive integer", Field: field, File: Params));
                }
                else if (field == "vocab_size")
                {
                    vocabSize = n;
                }
            }

            foreach (var field in new[] { "max_seq_len", "max_position_embeddings" })
            {
                if (root.TryGetProperty(field, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var n) && n > 0)
                {
                    return (n, vocabSize);
                }
            }

            return (null, vocabSize);
        }
    }

    private static void CheckSafeTensors(string path, List<Problem> problems)
    {
        // Header: 8-byte little-endian length, then that many bytes of JSON naming each tensor's
        // byte range in the data that follows. A truncated or foreign file fails one of these checks.
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.None);
        var length = stream.Length;
        Span<byte> prefix = stackalloc byte[8];
        if (length < 8 || stream.ReadAtLeast(prefix, 8, throwOnEndOfStream: false) < 8)
        {
            problems.Add(new Problem("too short to be a safetensors file", File: Weights));
            return;
        }

        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength < 2 || headerLength > (ulong)Math.Min(MaxHeaderBytes, length - 8))
        {
            problems.Add(new Problem($"header length {headerLength} does not fit a file of {length} bytes", File: Weights));
            return;
        }

        var header = new byte[headerLength];
        stream.ReadExactly(header);
        var dataLength = length - 8 - (long)headerLength;
        try
        {
            using var document = JsonDocument.Parse(header);
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                problems.Add(new Problem("header is not a JSON object", File: Weights));
                return;
            }

            var tensors = 0;
            foreach (var tensor in document.RootElement.EnumerateObject())
            {
                if (tensor.Name == "__metadata__")
                {
                    continue;
                }

                tensors++;
                if (!tensor.Value.TryGetProperty("data_offsets", out var offsets) || offsets.GetArrayLength() != 2
                    || !offsets[0].TryGetInt64(out var begin) || !offsets[1].TryGetInt64(out var end) || begin < 0 || end < begin)
                {
                    problems.Add(new Problem("tensor has no valid data_offsets", Field: tensor.Name, File: Weights));
                    return;
                }

                if (end > dataLength)
                {
                    problems.Add(new Problem($"tensor ends at byte {end} of the data, which holds only {dataLength} bytes (truncated file?)", Field: tensor.Name, File: Weights));
                    return;
                }
            }

            if (tensors == 0)
            {
                problems.Add(new Problem("holds no tensors", File: Weights));
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            problems.Add(new Problem($"header is not valid JSON ({e.Message})", File: Weights));
        }
    }
}
