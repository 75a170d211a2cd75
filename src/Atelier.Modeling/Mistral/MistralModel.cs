using Atelier.Modeling.Kernels;
using Atelier.Modeling.SafeTensors;
using Atelier.Modeling.Tensors;

namespace Atelier.Modeling.Mistral;

/// <summary>
/// A Mistral-architecture decoder (pre-norm RMSNorm blocks, grouped-query attention with RoPE,
/// SwiGLU feed-forward), with optional LoRA adapters on its projections. Computes in float32.
/// </summary>
/// <remarks>
/// Training forward and backward live in <c>MistralModel.Training.cs</c>; inference with a KV cache
/// in <see cref="InferenceSession"/>. Both share the block forward in this file.
/// Threading: the kernels parallelise internally (<see cref="Kernels.KernelParallelism"/>). Several
/// inference sessions may run on one model at once (they only read the weights); training
/// (<see cref="ForwardBackward"/>) must not overlap any other call on the same model, and the adapter
/// must not be swapped while a call is running.
/// </remarks>
public sealed partial class MistralModel : IDisposable
{
    /// <summary>Wraps loaded weights, optionally with an adapter.</summary>
    public MistralModel(MistralWeights weights, LoraAdapter? adapter = null)
    {
        Weights = weights;
        Args = weights.Args;
        Adapter = adapter;
    }

    /// <summary>The hyper-parameters.</summary>
    public MistralArgs Args { get; }

    /// <summary>The base weights (frozen during LoRA training).</summary>
    public MistralWeights Weights { get; }

    /// <summary>The attached LoRA adapter, if any.</summary>
    public LoraAdapter? Adapter { get; set; }

    /// <summary>
    /// Loads a model directory in Mistral's consolidated format: <c>params.json</c> and
    /// <c>consolidated.safetensors</c> (bf16, fp16 or fp32 weights, widened to float32).
    /// </summary>
    public static MistralModel Load(string directory)
    {
        var args = MistralArgs.Load(Path.Combine(directory, "params.json"));
        var weightsPath = Path.Combine(directory, "consolidated.safetensors");
        if (!File.Exists(weightsPath))
        {
            throw new ModelFormatException($"{directory}: no consolidated.safetensors.");
        }

        return new MistralModel(MistralWeights.Load(args, weightsPath));
    }

    /// <summary>Where one forward pass gets its positions, key ranges and key/value storage.</summary>
    internal sealed class AttentionContext
    {
        public required RopeAngles Rope { get; init; }

        public required int[] Lo { get; init; }

        public required int[] Hi { get; init; }

        /// <summary>Per-layer key caches [capacity × kv·hd], or null to attend within the batch only.</summary>
        public Tensor[]? KCache { get; init; }

        public Tensor[]? VCache { get; init; }

        /// <summary>Rows already in the cache before this pass.</summary>
        public int Past { get; init; }

        /// <summary>Whether to apply LoRA dropout (training only).</summary>
        public bool Training { get; init; }

        /// <summary>Key for the dropout masks of this pass.</summary>
        public ulong DropoutKey { get; init; }
    }

    /// <summary>What a LoRA projection keeps for its backward.</summary>
    internal sealed class LoraCache : IDisposable
    {
        /// <summary>The adapter's hidden activations, transposed: <c>uᵀ = A·x̃ᵀ</c> [r × rows].</summary>
        public Tensor? Ut { get; set; }

        public Tensor? Dropped { get; set; }

        public void Dispose()
        {
            Ut?.Dispose();
            Dropped?.Dispose();
        }
    }

    /// <summary>A block's saved activations for its backward.</summary>
    internal sealed class LayerCache : IDisposable
    {
        public LayerCache(int linearCount)
        {
            Lora = new LoraCache[linearCount];
            for (var i = 0; i < linearCount; i++)
            {
                Lora[i] = new LoraCache();
            }
        }

        public Tensor X { get; set; } = null!;
        public Tensor Xn { get; set; } = null!;
        public float[] InvRms1 { get; set; } = null!;
        public Tensor Q { get; set; } = null!;
        public Tensor K { get; set; } = null!;
        public Tensor V { get; set; } = null!;
        public Tensor Attn { get; set; } = null!;
        public Tensor Lse { get; set; } = null!;
        public Tensor Hmid { get; set; } = null!;
        public Tensor Xn2 { get; set; } = null!;
        public float[] InvRms2 { get; set; } = null!;
        public Tensor A1 { get; set; } = null!;
        public Tensor A3 { get; set; } = null!;
        public Tensor G { get; set; } = null!;
        public LoraCache[] Lora { get; }

        public void Dispose()
        {
            // X belongs to whoever produced it (the previous block's output or the embedding).
            Xn?.Dispose(); Q?.Dispose(); K?.Dispose(); V?.Dispose(); Attn?.Dispose(); Lse?.Dispose();
            Hmid?.Dispose(); Xn2?.Dispose(); A1?.Dispose(); A3?.Dispose(); G?.Dispose();
            foreach (var l in Lora)
            {
                l.Dispose();
            }
        }
    }

    /// <summary>Looks up token embeddings into a new [T × dim] tensor.</summary>
    internal Tensor Embed(ReadOnlySpan<int> tokens)
    {
        var h = Tensor.Uninitialized(tokens.Length, Args.Dim);
        Ops.EmbeddingForward(Weights.TokEmbeddings.Span, tokens, h.Span, Args.Dim);
        return h;
    }

    /// <summary>
    /// One block: <c>h = x + Attn(RMSNorm(x)); out = h + FFN(RMSNorm(h))</c>. Returns a new tensor;
    /// with a <paramref name="cache"/> the intermediates are kept for the backward, otherwise freed.
    /// </summary>
    internal Tensor BlockForward(int layer, Tensor x, AttentionContext ctx, LayerCache? cache)
    {
        var a = Args;
        var w = Weights.Layers[layer];
        var rows = x.Rows;
        var invRms1 = new float[rows];
        var xn = Tensor.Uninitialized(rows, a.Dim);
        Ops.RmsNormForward(x.Span, w.AttentionNorm.Span, a.NormEps, xn.Span, invRms1, a.Dim);

        var q = Linear(layer, LinearKind.Wq, xn, ctx, cache);
        var k = Linear(layer, LinearKind.Wk, xn, ctx, cache);
        var v = Linear(layer, LinearKind.Wv, xn, ctx, cache);
        ctx.Rope.Apply(q.Span, a.NHeads);
        ctx.Rope.Apply(k.Span, a.NKvHeads);

        ReadOnlySpan<float> keys = k.Span;
        ReadOnlySpan<float> values = v.Span;
        var keyRows = rows;
        if (ctx.KCache is not null)
        {
            var kc = ctx.KCache[layer];
            var vc = ctx.VCache![layer];
            k.Span.CopyTo(kc.Span.Slice(ctx.Past * a.KvWidth));
            v.Span.CopyTo(vc.Span.Slice(ctx.Past * a.KvWidth));
            keyRows = ctx.Past + rows;
            keys = kc.Span[..(keyRows * a.KvWidth)];
            values = vc.Span[..(keyRows * a.KvWidth)];
        }

        var attn = Tensor.Uninitialized(rows, a.QueryWidth);
        var lse = Tensor.Uninitialized(a.NHeads * rows);
        Attention.Forward(new Attention.Shape(rows, keyRows, a.NHeads, a.NKvHeads, a.HeadDim), q.Span, keys, values, ctx.Lo, ctx.Hi, attn.Span, lse.Span);

        var hmid = Linear(layer, LinearKind.Wo, attn, ctx, cache);
        System.Numerics.Tensors.TensorPrimitives.Add(hmid.Span, x.Span, hmid.Span);

        var invRms2 = new float[rows];
        var xn2 = Tensor.Uninitialized(rows, a.Dim);
        Ops.RmsNormForward(hmid.Span, w.FfnNorm.Span, a.NormEps, xn2.Span, invRms2, a.Dim);
        var a1 = Linear(layer, LinearKind.W1, xn2, ctx, cache);
        var a3 = Linear(layer, LinearKind.W3, xn2, ctx, cache);
        var g = Tensor.Uninitialized(rows, a.HiddenDim);
        Ops.SwiGluForward(a1.Span, a3.Span, g.Span);
        var output = Linear(layer, LinearKind.W2, g, ctx, cache);
        System.Numerics.Tensors.TensorPrimitives.Add(output.Span, hmid.Span, output.Span);

        if (cache is null)
        {
            xn.Dispose(); q.Dispose(); k.Dispose(); v.Dispose(); attn.Dispose(); lse.Dispose();
            hmid.Dispose(); xn2.Dispose(); a1.Dispose(); a3.Dispose(); g.Dispose();
        }
        else
        {
            cache.X = x; cache.Xn = xn; cache.InvRms1 = invRms1; cache.Q = q; cache.K = k; cache.V = v;
            cache.Attn = attn; cache.Lse = lse; cache.Hmid = hmid; cache.Xn2 = xn2; cache.InvRms2 = invRms2;
            cache.A1 = a1; cache.A3 = a3; cache.G = g;
        }

        return output;
    }

    /// <summary>
    /// <c>y = x·Wᵀ + scaling·(dropout(x)·Aᵀ)·Bᵀ</c>; the LoRA term only when the projection is adapted.
    /// </summary>
    internal Tensor Linear(int layer, LinearKind kind, Tensor x, AttentionContext ctx, LayerCache? cache)
    {
        var (o, i) = LinearKinds.Dims(Args, kind);
        var rows = x.Rows;
        var y = Tensor.Uninitialized(rows, o);
        Ops.LinearForward(x.Span, Weights.Layers[layer][kind].Span, y.Span, rows, i, o);
        var pair = Adapter?[layer, kind];
        if (pair is null)
        {
            return y;
        }

        var cfg = Adapter!.Config;
        var r = pair.Rank;
        Tensor? dropped = null;
        if (ctx.Training && cfg.Dropout > 0)
        {
            dropped = Tensor.Uninitialized(rows, i);
            ApplyDropout(x.Span, dropped.Span, cfg.Dropout, DropoutKey(ctx.DropoutKey, layer, kind));
        }

        if (cache is null)
        {
            // Inference (often one row): u = x̃·Aᵀ [rows × r], whose one-row products are dot products.
            using var u = Tensor.Uninitialized(rows, r);
            Sgemm.Multiply(false, true, rows, r, i, 1f, (dropped ?? x).Span, i, pair.A.Span, i, 0f, u.Span, r);
            Sgemm.Multiply(false, true, rows, o, r, cfg.Scaling, u.Span, r, pair.B.Span, r, 1f, y.Span, o);
            dropped?.Dispose();
            return y;
        }

        // Training keeps uᵀ = A·x̃ᵀ [r × rows]: with the rank as the product's row count the micro-kernel's
        // 32 columns are all live (a 16-wide u would leave half of every tile empty), and the backward
        // reads it in the same layout. Each element is the same k-ordered sum as x̃·Aᵀ's.
        var ut = Tensor.Uninitialized(r, rows);
        Sgemm.Multiply(false, true, r, rows, i, 1f, pair.A.Span, i, (dropped ?? x).Span, i, 0f, ut.Span, rows);
        Sgemm.Multiply(true, true, rows, o, r, cfg.Scaling, ut.Span, rows, pair.B.Span, r, 1f, y.Span, o);
        cache.Lora[(int)kind].Ut = ut;
        cache.Lora[(int)kind].Dropped = dropped;
        return y;
    }

    private static ulong DropoutKey(ulong passKey, int layer, LinearKind kind) => DeterministicRandom.MixKey(passKey, (ulong)layer, (ulong)kind, 0xD40);

    private static void ApplyDropout(ReadOnlySpan<float> x, Span<float> y, float p, ulong key)
    {
        var keepScale = 1f / (1f - p);
        for (var i = 0; i < x.Length; i++)
        {
            y[i] = DeterministicRandom.HashUniform(key, (ulong)i) >= p ? x[i] * keepScale : 0f;
        }
    }

    /// <summary>Final norm and output projection for the given rows of the last hidden state.</summary>
    internal Tensor Head(Tensor h, float[] invRms, Tensor hn)
    {
        Ops.RmsNormForward(h.Span, Weights.Norm.Span, Args.NormEps, hn.Span, invRms, Args.Dim);
        var logits = Tensor.Uninitialized(h.Rows, Args.VocabSize);
        Ops.LinearForward(hn.Span, Weights.Output.Span, logits.Span, h.Rows, Args.Dim, Args.VocabSize);
        return logits;
    }

    /// <summary>
    /// Logits [T × vocab] for a packed sequence (no dropout): the training forward without saving activations.
    /// </summary>
    /// <param name="batch">The packed sequence.</param>
    /// <param name="cancellationToken">Checked before each layer (<see cref="OperationCanceledException"/>).</param>
    public Tensor ForwardLogits(TrainingBatch batch, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var h = LastHiddenState(batch, cancellationToken);

        using var hn = Tensor.Uninitialized(h.Rows, Args.Dim);
        var logits = Head(h, new float[h.Rows], hn);
        h.Dispose();
        return logits;
    }

    /// <summary>The mean masked cross-entropy of a packed batch, without gradients.</summary>
    /// <param name="batch">The packed sequence.</param>
    /// <param name="cancellationToken">Checked before each layer and each chunk of the output head (<see cref="OperationCanceledException"/>).</param>
    public double ComputeLoss(TrainingBatch batch, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var h = LastHiddenState(batch, cancellationToken);

        using (h)
        {
            using var hn = Tensor.Uninitialized(h.Rows, Args.Dim);
            Ops.RmsNormForward(h.Span, Weights.Norm.Span, Args.NormEps, hn.Span, new float[h.Rows], Args.Dim);
            return HeadLossAndGradient(hn, batch, 1f, null, cancellationToken);
        }
    }

    /// <summary>The hidden state after the last block, without dropout or saved activations.</summary>
    private Tensor LastHiddenState(TrainingBatch batch, CancellationToken cancellationToken)
    {
        var ctx = TrainingContext(batch, training: false, dropoutKey: 0);
        var h = Embed(batch.Inputs);
        try
        {
            for (var l = 0; l < Args.NLayers; l++)
            {
                ThrowIfCancelled(cancellationToken);
                var next = BlockForward(l, h, ctx, null);
                h.Dispose();
                h = next;
            }
        }
        catch (OperationCanceledException)
        {
            h.Dispose();
            throw;
        }

        return h;
    }

    /// <summary>
    /// Test seam: called at every cancellation point of a training or evaluation pass, just before
    /// the token is checked, so that a test can cancel at the k-th point of a pass deterministically.
    /// </summary>
    internal Action? CancellationPointReached { get; set; }

    /// <summary>
    /// A cancellation point. They sit between layers and output-head chunks, never inside a kernel:
    /// one check per layer is free next to the layer's GEMMs, and a layer is the longest a cancel
    /// then waits (seconds for a 7B model on a long sequence, against minutes for a whole step).
    /// </summary>
    internal void ThrowIfCancelled(CancellationToken cancellationToken)
    {
        CancellationPointReached?.Invoke();
        cancellationToken.ThrowIfCancellationRequested();
    }

    private sealed record RopeCache(int[] Positions, RopeAngles Angles);

    private RopeCache? _lastRope;

    internal AttentionContext TrainingContext(TrainingBatch batch, bool training, ulong dropoutKey)
    {
        var (lo, hi) = batch.KeyRanges(Args.SlidingWindow);
        var positions = batch.Positions();

        // Training sees the same packing step after step; its rotations (a cosine and a sine per position
        // and frequency) are computed once and reused. The pair is swapped whole, so concurrent
        // evaluation passes only ever see a consistent one.
        var rope = _lastRope;
        if (rope is null || !rope.Positions.AsSpan().SequenceEqual(positions))
        {
            rope = new RopeCache(positions, new RopeAngles(positions, Args.HeadDim, Args.RopeTheta));
            _lastRope = rope;
        }

        return new AttentionContext
        {
            Rope = rope.Angles,
            Lo = lo,
            Hi = hi,
            Training = training,
            DropoutKey = dropoutKey,
        };
    }

    /// <summary>
    /// Folds the attached adapter into the base weights (<c>W += scaling · B·A</c>) and detaches it, so
    /// inference runs at base-model speed. The adapter is returned to the caller, who owns it.
    /// </summary>
    public LoraAdapter MergeAdapter()
    {
        var adapter = Adapter ?? throw new InvalidOperationException("No adapter is attached.");
        for (var l = 0; l < Args.NLayers; l++)
        {
            foreach (var kind in LinearKinds.All)
            {
                var pair = adapter[l, kind];
                if (pair is null)
                {
                    continue;
                }

                var (o, i) = LinearKinds.Dims(Args, kind);
                Sgemm.Multiply(false, false, o, i, pair.Rank, adapter.Config.Scaling, pair.B.Span, pair.Rank, pair.A.Span, i, 1f, Weights.Layers[l][kind].Span, i);
            }
        }

        Adapter = null;
        return adapter;
    }

    /// <summary>
    /// Writes the attached adapter as <c>lora.safetensors</c> in the base weights' dtype
    /// (<see cref="MistralWeights.StorageDType"/>), the only dtype mistral-inference accepts for it.
    /// The adapter in memory, and so the optimiser's master copy, stays float32.
    /// </summary>
    public void SaveAdapter(string path)
    {
        var adapter = Adapter ?? throw new InvalidOperationException("No adapter is attached.");
        var dtype = Weights.StorageDType;
        if (dtype is not (SafeTensorDType.F32 or SafeTensorDType.BF16 or SafeTensorDType.F16))
        {
            throw new ModelFormatException($"The base weights are stored as {SafeTensorDTypes.Name(dtype)}; an adapter can only be written as F32, BF16 or F16.");
        }

        adapter.Save(path, dtype);
    }

    /// <summary>Starts an inference session with a KV cache of <paramref name="capacity"/> positions.</summary>
    public InferenceSession StartSession(int capacity) => new(this, capacity);

    /// <inheritdoc />
    public void Dispose()
    {
        Weights.Dispose();
        Adapter?.Dispose();
    }
}
