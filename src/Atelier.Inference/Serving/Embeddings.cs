using Atelier.Core.Errors;
using Atelier.Inference.Execution;
using Atelier.Inference.KvCache;
using Atelier.Modeling.Mistral;

namespace Atelier.Inference.Serving;

/// <summary>How an embedding's numbers are written (Mistral's <c>output_dtype</c>).</summary>
public enum EmbeddingDtype
{
    /// <summary>32-bit floats.</summary>
    Float,

    /// <summary>Each value scaled by 127 and rounded into [-128, 127].</summary>
    Int8,

    /// <summary>Each value mapped from [-1, 1] to [0, 255] and rounded.</summary>
    Uint8,

    /// <summary>One bit per value (1 where positive), packed eight to a byte, most significant bit first, written as a signed byte (the byte minus 128).</summary>
    Binary,

    /// <summary>As <see cref="Binary"/>, each byte written unsigned.</summary>
    Ubinary,
}

/// <summary>
/// Embeddings of texts with a served model: the final hidden state mean-pooled and L2-normalised (the
/// same embedding semantic dedup uses), optionally cut to its first <c>output_dimension</c> values and
/// normalised again, then written in the requested dtype.
/// </summary>
public static class Embeddings
{
    /// <summary>Texts embedded in one forward pass at most; a longer list runs in several.</summary>
    private const int Batch = 16;

    /// <summary>
    /// Tokens one forward pass takes at most (a longer single text still runs alone): bounds the temporary
    /// KV blocks and activations of a call (for a 7B model, 256 KiB of keys and values per token: 512 MiB at most).
    /// </summary>
    private const int BatchTokens = 2048;

    /// <summary>Positions per block of a call's temporary KV cache.</summary>
    private const int BlockSize = 16;

    /// <summary>Embeds <paramref name="inputs"/>; returns the vectors (as floats, or as the dtype's integers) and the prompt tokens used.</summary>
    /// <exception cref="BadRequestException">An input is longer than the model's context, or <paramref name="outputDimension"/> is out of range.</exception>
    public static (IReadOnlyList<double[]> Vectors, int PromptTokens) Create(ServedModel model, IReadOnlyList<string> inputs, int? outputDimension, EmbeddingDtype dtype, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(inputs);
        var dim = model.Base.Weights.Args.Dim;
        if (outputDimension is { } wanted && (wanted < 1 || wanted > dim))
        {
            throw new BadRequestException($"output_dimension must be between 1 and {dim} for this model, not {wanted}.", "invalid_output_dimension");
        }

        if (dtype is EmbeddingDtype.Binary or EmbeddingDtype.Ubinary && (outputDimension ?? dim) % 8 != 0)
        {
            throw new BadRequestException($"Binary embeddings pack 8 values to a byte: output_dimension must be a multiple of 8, not {outputDimension ?? dim}.", "invalid_output_dimension");
        }

        var tokenizer = model.Base.Tokenizer;
        var sequences = new List<int[]>(inputs.Count);
        var tokens = 0;
        for (var i = 0; i < inputs.Count; i++)
        {
            var ids = new List<int> { tokenizer.Control.Bos };
            tokenizer.Encode(inputs[i], ids);
            if (ids.Count > model.ContextLength)
            {
                throw new BadRequestException($"Input {i} contains {ids.Count} tokens: too large for model with {model.ContextLength} maximum context length.", "context_length_exceeded");
            }

            tokens += ids.Count;
            sequences.Add([.. ids]);
        }

        using var adapter = model.AdapterId is { } id ? model.Base.LoadAdapter(id) : null;
        var vectors = new List<double[]>(inputs.Count);
        for (var start = 0; start < sequences.Count;)
        {
            ct.ThrowIfCancellationRequested();
            var count = 1;
            var batchTokens = sequences[start].Length;
            while (start + count < sequences.Count && count < Batch && batchTokens + sequences[start + count].Length <= BatchTokens)
            {
                batchTokens += sequences[start + count].Length;
                count++;
            }

            foreach (var pooled in PooledEmbeddings(model.Base.Weights, adapter, sequences.GetRange(start, count)))
            {
                vectors.Add(Encode(Truncate(pooled, outputDimension ?? dim), dtype));
            }

            start += count;
        }

        return (vectors, tokens);
    }

    /// <summary>
    /// Each sequence's final hidden states (after the last RMSNorm) mean-pooled and L2-normalised, computed
    /// on the serving weights (no float32 copy of a bf16 model) through a KV cache of this call's own, so
    /// the engine's pool and thread are not involved. Each sequence attends only to itself.
    /// </summary>
    internal static float[][] PooledEmbeddings(PackedModelWeights weights, LoraAdapter? adapter, IReadOnlyList<int[]> sequences)
    {
        var args = weights.Args;
        var items = new BatchItem[sequences.Count];
        var blocks = 0;
        for (var i = 0; i < sequences.Count; i++)
        {
            var needed = (sequences[i].Length + BlockSize - 1) / BlockSize;
            items[i] = new BatchItem(sequences[i], 0, Enumerable.Range(blocks, needed).ToArray(), adapter, WantLogits: false);
            blocks += needed;
        }

        var pool = new KvBlockPool(args, BlockSize, blocks * 2L * args.NLayers * BlockSize * args.KvWidth * sizeof(float));
        using var runner = new PagedBatchRunner(weights, pool);
        using var hidden = runner.FinalHiddenStates(items, out var lastRow);
        var result = new float[sequences.Count][];
        for (var i = 0; i < sequences.Count; i++)
        {
            var pooled = new float[args.Dim];
            for (var r = lastRow[i] - sequences[i].Length + 1; r <= lastRow[i]; r++)
            {
                System.Numerics.Tensors.TensorPrimitives.Add(pooled, hidden.Row(r), pooled);
            }

            var norm = System.Numerics.Tensors.TensorPrimitives.Norm(pooled);
            if (norm > 0)
            {
                System.Numerics.Tensors.TensorPrimitives.Divide(pooled, norm, pooled);
            }

            result[i] = pooled;
        }

        return result;
    }

    private static float[] Truncate(float[] vector, int dimension)
    {
        if (dimension == vector.Length)
        {
            return vector;
        }

        var cut = vector.AsSpan(0, dimension).ToArray();
        var norm = MathF.Sqrt(System.Numerics.Tensors.TensorPrimitives.SumOfSquares(cut));
        if (norm > 0)
        {
            System.Numerics.Tensors.TensorPrimitives.Divide(cut, norm, cut);
        }

        return cut;
    }

    /// <summary>Writes a unit vector in <paramref name="dtype"/>.</summary>
    internal static double[] Encode(float[] vector, EmbeddingDtype dtype)
    {
        switch (dtype)
        {
            case EmbeddingDtype.Float:
                return [.. vector.Select(v => (double)v)];
            case EmbeddingDtype.Int8:
                return [.. vector.Select(v => (double)Math.Clamp(MathF.Round(v * 127f), -128f, 127f))];
            case EmbeddingDtype.Uint8:
                return [.. vector.Select(v => (double)Math.Clamp(MathF.Round((v + 1f) * 127.5f), 0f, 255f))];
            default:
                var packed = new double[vector.Length / 8];
                for (var b = 0; b < packed.Length; b++)
                {
                    var value = 0;
                    for (var bit = 0; bit < 8; bit++)
                    {
                        value = (value << 1) | (vector[(b * 8) + bit] > 0 ? 1 : 0);
                    }

                    packed[b] = dtype == EmbeddingDtype.Binary ? value - 128 : value;
                }

                return packed;
        }
    }
}
