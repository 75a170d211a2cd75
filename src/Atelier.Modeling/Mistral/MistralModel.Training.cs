using Atelier.Modeling.Kernels;
using Atelier.Modeling.Tensors;

namespace Atelier.Modeling.Mistral;

public sealed partial class MistralModel
{
    /// <summary>
    /// Runs forward and backward over a packed batch and adds <c>gradScale · ∂loss/∂θ</c> into the
    /// adapter's gradients (the base weights are frozen). Returns the mean masked cross-entropy.
    /// </summary>
    /// <param name="batch">The packed sequence.</param>
    /// <param name="gradScale">Multiplies the gradient (e.g. 1/accumulation steps).</param>
    /// <param name="dropoutKey">Selects this pass's LoRA dropout masks; the same key gives the same masks.</param>
    /// <param name="cancellationToken">
    /// Checked before each layer of the forward and of the backward and before each chunk of the
    /// output head; a cancelled pass throws <see cref="OperationCanceledException"/> with part of
    /// its gradient added, which the next <see cref="LoraAdapter.ZeroGrad"/> discards.
    /// </param>
    public double ForwardBackward(TrainingBatch batch, float gradScale = 1f, ulong dropoutKey = 0, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(batch);
        if (Adapter is null)
        {
            throw new InvalidOperationException("Training needs a LoRA adapter attached to the model.");
        }

        var a = Args;
        var rows = batch.Length;
        var ctx = TrainingContext(batch, training: true, dropoutKey);
        _passDropoutKey = dropoutKey;
        var caches = new LayerCache[a.NLayers];
        var outputs = new List<Tensor>(a.NLayers + 1);
        Tensor? dh = null;
        try
        {
            var h = Embed(batch.Inputs);
            outputs.Add(h);
            for (var l = 0; l < a.NLayers; l++)
            {
                ThrowIfCancelled(cancellationToken);
                caches[l] = new LayerCache(LinearKinds.All.Count);
                h = BlockForward(l, h, ctx, caches[l]);
                outputs.Add(h);
            }

            var invRms = new float[rows];
            using var hn = Tensor.Uninitialized(rows, a.Dim);
            Ops.RmsNormForward(h.Span, Weights.Norm.Span, a.NormEps, hn.Span, invRms, a.Dim);
            using var dhn = new Tensor(rows, a.Dim);
            var loss = HeadLossAndGradient(hn, batch, gradScale, dhn, cancellationToken);
            dh = new Tensor(rows, a.Dim);
            Ops.RmsNormBackward(dhn.Span, h.Span, Weights.Norm.Span, invRms, dh.Span, default, a.Dim);
            for (var l = a.NLayers - 1; l >= 0; l--)
            {
                ThrowIfCancelled(cancellationToken);
                // The first block's input gradient would only reach the frozen embeddings.
                var dOut = dh!;
                var dx = BlockBackward(l, dOut, ctx, caches[l], inputGradient: l > 0);
                dOut.Dispose();
                dh = dx;
                caches[l].Dispose();
            }

            return loss;
        }
        finally
        {
            dh?.Dispose();
            foreach (var c in caches)
            {
                c?.Dispose();
            }

            foreach (var t in outputs)
            {
                t.Dispose();
            }
        }
    }

    // Rows of logits alive at once: T × vocab floats would be 1 GiB for 2,048 tokens of a 131k vocabulary.
    private const int HeadChunkRows = 128;

    /// <summary>
    /// Output projection, masked cross-entropy and its gradient, a chunk of rows at a time so that the
    /// logits never exist for the whole sequence. Returns the mean loss over the batch's mask and, when
    /// <paramref name="dhn"/> is given, writes ∂(gradScale·loss)/∂hn into it.
    /// </summary>
    internal double HeadLossAndGradient(Tensor hn, TrainingBatch batch, float gradScale, Tensor? dhn, CancellationToken cancellationToken)
    {
        var a = Args;
        var rows = hn.Rows;
        double total = 0;
        foreach (var w in batch.LossMask)
        {
            total += w;
        }

        if (total == 0)
        {
            return 0;
        }

        double loss = 0;
        using var logits = Tensor.Uninitialized(Math.Min(rows, HeadChunkRows), a.VocabSize);
        for (var r0 = 0; r0 < rows; r0 += HeadChunkRows)
        {
            var n = Math.Min(HeadChunkRows, rows - r0);
            var mask = batch.LossMask.AsSpan(r0, n);
            double chunkTotal = 0;
            foreach (var w in mask)
            {
                chunkTotal += w;
            }

            if (chunkTotal == 0)
            {
                continue; // no loss here, and dhn keeps its zeros
            }

            // A chunk of a 131k vocabulary is tens of GFLOP: the head of a long sequence is worth
            // several cancellation points of its own.
            ThrowIfCancelled(cancellationToken);

            var z = logits.Span[..(n * a.VocabSize)];
            Ops.LinearForward(hn.Span.Slice(r0 * a.Dim, n * a.Dim), Weights.Output.Span, z, n, a.Dim, a.VocabSize);

            // CrossEntropy normalises by the chunk's mask; rescale to the batch's. The gradient overwrites
            // the logits row by row (each row is read in full before it is written).
            var share = chunkTotal / total;
            loss += share * Ops.CrossEntropy(z, batch.Targets.AsSpan(r0, n), mask, a.VocabSize, dhn is null ? default : z, (float)(gradScale * share));
            if (dhn is not null)
            {
                Ops.LinearBackwardInput(z, Weights.Output.Span, dhn.Span.Slice(r0 * a.Dim, n * a.Dim), n, a.Dim, a.VocabSize);
            }
        }

        return loss;
    }

    /// <summary>Backward of <see cref="BlockForward"/>: returns ∂loss/∂x given ∂loss/∂out, adding LoRA gradients.</summary>
    internal Tensor BlockBackward(int layer, Tensor dOut, AttentionContext ctx, LayerCache c) => BlockBackward(layer, dOut, ctx, c, inputGradient: true)!;

    /// <summary>
    /// As <see cref="BlockBackward(int, Tensor, AttentionContext, LayerCache)"/>; without
    /// <paramref name="inputGradient"/> only the adapter's gradients are computed and null is returned
    /// (the first block: its input is the frozen embedding, whose gradient nobody reads, so the products
    /// that only lead there are skipped, as autograd skips them for an input that needs no gradient).
    /// </summary>
    internal Tensor? BlockBackward(int layer, Tensor dOut, AttentionContext ctx, LayerCache c, bool inputGradient)
    {
        var a = Args;
        var w = Weights.Layers[layer];
        var rows = dOut.Rows;

        // Feed-forward: out = hmid + W2·(silu(W1·xn2) ⊙ W3·xn2), xn2 = RMSNorm(hmid).
        Tensor dXn2;
        using (var dG = Tensor.Uninitialized(rows, a.HiddenDim))
        {
            LinearBackward(layer, LinearKind.W2, dOut, c.G, dG, 0f, c);
            using var dA1 = Tensor.Uninitialized(rows, a.HiddenDim);
            using var dA3 = Tensor.Uninitialized(rows, a.HiddenDim);
            Ops.SwiGluBackward(dG.Span, c.A1.Span, c.A3.Span, dA1.Span, dA3.Span);
            dXn2 = Tensor.Uninitialized(rows, a.Dim);
            LinearBackward(layer, LinearKind.W1, dA1, c.Xn2, dXn2, 0f, c);
            LinearBackward(layer, LinearKind.W3, dA3, c.Xn2, dXn2, 1f, c);
        }

        var dH = dOut.Clone();
        Ops.RmsNormBackward(dXn2.Span, c.Hmid.Span, w.FfnNorm.Span, c.InvRms2, dH.Span, default, a.Dim);
        dXn2.Dispose();

        // Attention: hmid = x + Wo·attn(rope(Wq·xn), rope(Wk·xn), Wv·xn), xn = RMSNorm(x).
        using var dXn = Tensor.Uninitialized(rows, a.Dim);
        using (var dAttn = Tensor.Uninitialized(rows, a.QueryWidth))
        using (var dQ = Tensor.Uninitialized(rows, a.QueryWidth))
        using (var dK = new Tensor(rows, a.KvWidth))
        using (var dV = new Tensor(rows, a.KvWidth))
        {
            LinearBackward(layer, LinearKind.Wo, dH, c.Attn, dAttn, 0f, c);
            Attention.Backward(new Attention.Shape(rows, rows, a.NHeads, a.NKvHeads, a.HeadDim),
                dAttn.Span, c.Q.Span, c.K.Span, c.V.Span, c.Attn.Span, c.Lse.Span, ctx.Lo, ctx.Hi, dQ.Span, dK.Span, dV.Span);
            ctx.Rope.Apply(dQ.Span, a.NHeads, inverse: true);
            ctx.Rope.Apply(dK.Span, a.NKvHeads, inverse: true);
            LinearBackward(layer, LinearKind.Wq, dQ, c.Xn, dXn, 0f, c, inputGradient);
            LinearBackward(layer, LinearKind.Wk, dK, c.Xn, dXn, 1f, c, inputGradient);
            LinearBackward(layer, LinearKind.Wv, dV, c.Xn, dXn, 1f, c, inputGradient);
        }

        if (!inputGradient)
        {
            dH.Dispose();
            return null;
        }

        Ops.RmsNormBackward(dXn.Span, c.X.Span, w.AttentionNorm.Span, c.InvRms1, dH.Span, default, a.Dim);
        return dH;
    }

    /// <summary>
    /// Backward of <see cref="Linear"/>: <c>dx = dy·W (+ beta·dx)</c> plus the LoRA path
    /// (<c>dB += s·dyᵀ·u</c>, <c>du = s·dy·B</c>, <c>dA += duᵀ·x̃</c>, <c>dx += mask ⊙ du·A</c>).
    /// </summary>
    /// <remarks>
    /// Without <paramref name="inputGradient"/> (the first block's attention input, whose gradient would only
    /// flow into the frozen embeddings) <paramref name="dx"/> is not computed and may be null; the adapter's
    /// gradients are.
    /// </remarks>
    internal void LinearBackward(int layer, LinearKind kind, Tensor dy, Tensor x, Tensor? dx, float beta, LayerCache cache, bool inputGradient = true)
    {
        var (o, i) = LinearKinds.Dims(Args, kind);
        var rows = dy.Rows;
        if (inputGradient)
        {
            Ops.LinearBackwardInput(dy.Span, Weights.Layers[layer][kind].Span, dx!.Span, rows, i, o, beta);
        }

        var pair = Adapter?[layer, kind];
        if (pair is null)
        {
            return;
        }

        var s = Adapter!.Config.Scaling;
        var r = pair.Rank;
        var lc = cache.Lora[(int)kind];
        var ut = lc.Ut!;
        var xd = lc.Dropped ?? x;

        // The rank-sized side of every product is its row count (see Linear): dBᵀ = s·uᵀ·dy, added
        // into dB; duᵀ = s·Bᵀ·dyᵀ; dA += duᵀ·x̃; dx += (duᵀ)ᵀ·A.
        using (var dBt = Tensor.Uninitialized(r, o))
        {
            Sgemm.Multiply(false, false, r, o, rows, s, ut.Span, rows, dy.Span, o, 0f, dBt.Span, o);
            AddTransposed(dBt.Span, pair.GradB.Span, r, o);
        }

        using var dut = Tensor.Uninitialized(r, rows);
        Sgemm.Multiply(true, true, r, rows, o, s, pair.B.Span, r, dy.Span, o, 0f, dut.Span, rows);
        Sgemm.Multiply(false, false, r, i, rows, 1f, dut.Span, rows, xd.Span, i, 1f, pair.GradA.Span, i);
        if (!inputGradient)
        {
            return;
        }

        if (lc.Dropped is null)
        {
            Sgemm.Multiply(true, false, rows, i, r, 1f, dut.Span, rows, pair.A.Span, i, 1f, dx!.Span, i);
            return;
        }

        // Through dropout: the kept inputs were scaled by 1/(1−p), the dropped ones contributed nothing.
        using var dxd = Tensor.Uninitialized(rows, i);
        Sgemm.Multiply(true, false, rows, i, r, 1f, dut.Span, rows, pair.A.Span, i, 0f, dxd.Span, i);
        var p = Adapter.Config.Dropout;
        var keepScale = 1f / (1f - p);
        var key = DropoutKeyFor(layer, kind);
        var src = dxd.Span;
        var dst = dx!.Span;
        for (var j = 0; j < src.Length; j++)
        {
            if (DeterministicRandom.HashUniform(key, (ulong)j) >= p)
            {
                dst[j] += src[j] * keepScale;
            }
        }
    }

    /// <summary><c>dst[j, c] += src[c, j]</c> for src [r × o] and dst [o × r].</summary>
    private static void AddTransposed(ReadOnlySpan<float> src, Span<float> dst, int r, int o)
    {
        for (var j = 0; j < o; j++)
        {
            var row = dst.Slice(j * r, r);
            for (var c = 0; c < r; c++)
            {
                row[c] += src[(c * o) + j];
            }
        }
    }

    // The dropout key of the pass in progress, set by ForwardBackward (a model trains one batch at a time).
    private ulong _passDropoutKey;

    private ulong DropoutKeyFor(int layer, LinearKind kind) => DropoutKey(_passDropoutKey, layer, kind);
}
