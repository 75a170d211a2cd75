using Atelier.Modeling.Kernels;
using Atelier.Modeling.Tensors;

namespace Atelier.Modeling.Mistral;

public sealed partial class MistralModel
{
    /// <summary>
    /// A sequence embedding: the final hidden state after the last RMSNorm (what the output
    /// projection reads), mean-pooled over the positions and L2-normalised, so a dot product of two
    /// embeddings is their cosine similarity. Uses the attached adapter, if any; no dropout.
    /// </summary>
    /// <param name="tokens">The token ids (at least one).</param>
    /// <returns>A vector of <see cref="MistralArgs.Dim"/> floats of unit length (all zeros only if every hidden state is zero).</returns>
    public float[] PooledEmbedding(ReadOnlySpan<int> tokens)
    {
        if (tokens.IsEmpty)
        {
            throw new ArgumentException("At least one token is needed.", nameof(tokens));
        }

        return PooledEmbeddings([tokens.ToArray()])[0];
    }

    /// <summary>
    /// <see cref="PooledEmbedding"/> for several sequences in one forward pass: they are packed end to
    /// end with attention blocked across them and positions restarting at each, so each result is the
    /// one its sequence would get alone.
    /// </summary>
    /// <param name="sequences">Token ids of each sequence (each non-empty).</param>
    /// <returns>One unit vector per sequence, in order.</returns>
    public float[][] PooledEmbeddings(IReadOnlyList<int[]> sequences)
    {
        ArgumentNullException.ThrowIfNull(sequences);
        if (sequences.Count == 0)
        {
            return [];
        }

        var lengths = new int[sequences.Count];
        var total = 0;
        for (var i = 0; i < sequences.Count; i++)
        {
            lengths[i] = sequences[i].Length;
            if (lengths[i] == 0)
            {
                throw new ArgumentException($"Sequence {i} is empty.", nameof(sequences));
            }

            total += lengths[i];
        }

        var inputs = new int[total];
        var offset = 0;
        foreach (var s in sequences)
        {
            s.CopyTo(inputs, offset);
            offset += s.Length;
        }

        // Targets and loss mask are unused by the forward; the batch only carries positions and the mask shape.
        var batch = new TrainingBatch(inputs, new int[total], new float[total], lengths);
        using var h = LastHiddenState(batch, CancellationToken.None);
        using var hn = Tensor.Uninitialized(h.Rows, Args.Dim);
        Ops.RmsNormForward(h.Span, Weights.Norm.Span, Args.NormEps, hn.Span, new float[h.Rows], Args.Dim);

        var result = new float[sequences.Count][];
        var row = 0;
        for (var i = 0; i < sequences.Count; i++)
        {
            var pooled = new float[Args.Dim];
            for (var t = 0; t < lengths[i]; t++)
            {
                System.Numerics.Tensors.TensorPrimitives.Add(pooled, hn.Row(row + t), pooled);
            }

            row += lengths[i];
            var norm = System.Numerics.Tensors.TensorPrimitives.Norm(pooled);
            if (norm > 0)
            {
                System.Numerics.Tensors.TensorPrimitives.Divide(pooled, norm, pooled);
            }

            result[i] = pooled;
        }

        return result;
    }
}
