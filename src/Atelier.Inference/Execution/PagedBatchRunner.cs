using System.Runtime.CompilerServices;
using Atelier.Inference.KvCache;
using Atelier.Modeling.Kernels;
using Atelier.Modeling.Mistral;
using Atelier.Modeling.Tensors;

namespace Atelier.Inference.Execution;

/// <summary>One sequence's share of a batched forward step: a run of its tokens and where they go.</summary>
/// <param name="Tokens">The tokens fed this step (a prefill chunk, or the one token of a decode step).</param>
/// <param name="Start">The position of the first of them; the positions before it are already cached.</param>
/// <param name="BlockTable">The sequence's blocks, covering at least every position up to Start + Tokens.Length − 1.</param>
/// <param name="Adapter">The sequence's LoRA adapter, or null for the base model.</param>
/// <param name="WantLogits">Whether to return the logits after the last token.</param>
internal readonly record struct BatchItem(ReadOnlyMemory<int> Tokens, int Start, IReadOnlyList<int> BlockTable, LoraAdapter? Adapter, bool WantLogits);

/// <summary>
/// Runs one forward step of a mixed batch (decode rows and prefill chunks of many sequences, under
/// different adapters) over the paged KV cache, writing the new keys and values into the pool.
/// </summary>
/// <remarks>
/// <para>Multi-LoRA as in Punica and S-LoRA: rows are laid out grouped by adapter, each projection's
/// base GEMM runs once over all rows, and each adapter group adds its low-rank update over its own
/// contiguous rows.</para>
/// <para>Batch invariance: every operation computes a row from that row alone, in an order that depends
/// only on the row (GEMMs through <see cref="Sgemm.MultiplyBatchInvariant(int, float, ReadOnlySpan{float}, int, PackedMatrix, float, Span{float}, int)"/>, RMSNorm, RoPE and SwiGLU
/// row by row, paged attention per row and head). So a sequence's logits are the same bits whatever
/// else is in the batch, however its prompt was chunked, and whether its prefix came from the cache.</para>
/// </remarks>
internal sealed class PagedBatchRunner : IDisposable
{
    private readonly PackedModelWeights _weights;
    private readonly bool _ownsWeights;
    private readonly MistralArgs _args;
    private readonly KvBlockPool _pool;

    // Each adapter projection's A and B packed once, like the base weights: packing them on every step
    // (a fork/join and a copy per adapter group, projection and layer) made a batch of 8 adapters ~1.5×
    // slower than one adapter, whose single group paid it once. Keyed weakly by the pair, so an adapter the
    // pool evicts and drops takes its packed copy with it (PackedMatrix frees its memory when finalized).
    // A served adapter is never trained in place, so a copy packed once stays right.
    private readonly ConditionalWeakTable<LoraPair, PackedLora> _packedAdapters = new();

    // The logits of the engine's steps, reused: see RunIntoSharedBuffer.
    private float[] _logits = [];

    /// <summary>A runner over serving weights that the caller owns (and may share between runners).</summary>
    public PagedBatchRunner(PackedModelWeights weights, KvBlockPool pool)
        : this(weights, pool, ownsWeights: false)
    {
    }

    /// <summary>A runner over in-memory float32 weights, packed here as float32 (tests and random-weight benchmarks).</summary>
    public PagedBatchRunner(MistralWeights weights, KvBlockPool pool)
        : this(PackedModelWeights.Pack(weights), pool, ownsWeights: true)
    {
    }

    private PagedBatchRunner(PackedModelWeights weights, KvBlockPool pool, bool ownsWeights)
    {
        _weights = weights;
        _ownsWeights = ownsWeights;
        _args = weights.Args;
        _pool = pool;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_ownsWeights)
        {
            _weights.Dispose();
        }

        foreach (var (_, packed) in _packedAdapters)
        {
            packed.A.Dispose();
            packed.B.Dispose();
        }

        _packedAdapters.Clear();
    }

    /// <summary>
    /// Runs the step; returns the logits [items wanting them × vocab], in the order of <paramref name="items"/>.
    /// </summary>
    public float[] Run(IReadOnlyList<BatchItem> items) => RunIntoSharedBuffer(items).ToArray();

    /// <summary>
    /// As <see cref="Run"/>, but the logits are written into a buffer the runner keeps from step to step,
    /// valid until its next call: the engine's path. A fresh [rows × vocab] array every step (4 MiB for 32
    /// rows of a 32k vocabulary) lands on the large object heap, whose fresh pages fault in and get zeroed
    /// on every step; the kernel overwrites every element (beta is zero), so reuse changes no bit.
    /// </summary>
    public Memory<float> RunIntoSharedBuffer(IReadOnlyList<BatchItem> items)
    {
        var a = _args;

        // A step runs four products a layer back to back, each too short to pay a thread-pool wake-up (KernelTeam).
        using var hot = KernelTeam.Hot();
        using var x = Forward(items, out var lastRowOfItem);
        var wanted = 0;
        var logitRows = new int[items.Count];
        for (var i = 0; i < items.Count; i++)
        {
            if (items[i].WantLogits)
            {
                logitRows[wanted++] = lastRowOfItem[i];
            }
        }

        if (wanted == 0)
        {
            return Memory<float>.Empty;
        }

        using var last = Tensor.Uninitialized(wanted, a.Dim);
        for (var i = 0; i < wanted; i++)
        {
            x.Row(logitRows[i]).CopyTo(last.Row(i));
        }

        using var norm = Tensor.Uninitialized(wanted, a.Dim);
        Ops.RmsNormForward(last.Span, _weights.Norm, a.NormEps, norm.Span, new float[wanted], a.Dim);
        var length = wanted * a.VocabSize;
        if (_logits.Length < length)
        {
            _logits = GC.AllocateUninitializedArray<float>(length);
        }

        var logits = _logits.AsMemory(0, length);
        Sgemm.MultiplyBatchInvariant(wanted, 1f, norm.Span, a.Dim, _weights.Output, 0f, logits.Span, a.VocabSize);
        return logits;
    }

    /// <summary>
    /// Runs the step and returns every fed token's final hidden state after the last RMSNorm (what the
    /// output projection reads): item i's rows are <c>[lastRowOfItem[i] − tokens + 1, lastRowOfItem[i]]</c>.
    /// </summary>
    public Tensor FinalHiddenStates(IReadOnlyList<BatchItem> items, out int[] lastRowOfItem)
    {
        var a = _args;
        using var hot = KernelTeam.Hot();
        using var x = Forward(items, out lastRowOfItem);
        var normed = Tensor.Uninitialized(x.Rows, a.Dim);
        Ops.RmsNormForward(x.Span, _weights.Norm, a.NormEps, normed.Span, new float[x.Rows], a.Dim);
        return normed;
    }

    /// <summary>The forward pass up to the last block's output [rows × dim]; <paramref name="lastRowOfItem"/> says where each item's last row is.</summary>
    private Tensor Forward(IReadOnlyList<BatchItem> items, out int[] lastRowOfItem)
    {
        var a = _args;

        // Lay rows out grouped by adapter (first appearance order), so each group is a contiguous range.
        var order = new List<int>(items.Count);
        var groups = new List<(LoraAdapter? Adapter, int Start, int End)>();
        var seen = new HashSet<int>();
        var rows = 0;
        for (var i = 0; i < items.Count; i++)
        {
            if (!seen.Add(i))
            {
                continue;
            }

            var adapter = items[i].Adapter;
            var start = rows;
            for (var j = i; j < items.Count; j++)
            {
                if (ReferenceEquals(items[j].Adapter, adapter) && (j == i || seen.Add(j)))
                {
                    order.Add(j);
                    rows += items[j].Tokens.Length;
                }
            }

            groups.Add((adapter, start, rows));
        }

        var tokens = new int[rows];
        var positions = new int[rows];
        var lo = new int[rows];
        var hi = new int[rows];
        var offsets = new int[rows];
        var slots = new long[rows];
        var tables = new List<int>();
        var row = 0;
        foreach (var i in order)
        {
            var item = items[i];
            var tableOffset = tables.Count;
            tables.AddRange(item.BlockTable);
            var span = item.Tokens.Span;
            for (var t = 0; t < span.Length; t++, row++)
            {
                var p = item.Start + t;
                tokens[row] = span[t];
                positions[row] = p;
                lo[row] = a.SlidingWindow is { } w ? Math.Max(0, p - w + 1) : 0;
                hi[row] = p;
                offsets[row] = tableOffset;
                slots[row] = ((long)item.BlockTable[p / _pool.BlockSize] * _pool.BlockSize) + (p % _pool.BlockSize);
            }
        }

        // Each item's last row, in the caller's item order.
        lastRowOfItem = new int[items.Count];
        row = 0;
        foreach (var i in order)
        {
            row += items[i].Tokens.Length;
            lastRowOfItem[i] = row - 1;
        }

        var tableArray = tables.ToArray();
        var rope = new RopeAngles(positions, a.HeadDim, a.RopeTheta);
        var x = Tensor.Uninitialized(rows, a.Dim);
        _weights.GatherEmbeddings(tokens, x.Span);
        for (var l = 0; l < a.NLayers; l++)
        {
            var next = Block(l, x, rope, groups, slots, tableArray, offsets, lo, hi);
            x.Dispose();
            x = next;
        }

        return x;
    }

    private Tensor Block(int layer, Tensor x, RopeAngles rope, List<(LoraAdapter? Adapter, int Start, int End)> groups,
        long[] slots, int[] tables, int[] offsets, int[] lo, int[] hi)
    {
        var a = _args;
        var rows = x.Rows;
        using var xn = Tensor.Uninitialized(rows, a.Dim);
        Ops.RmsNormForward(x.Span, _weights.AttentionNorm(layer), a.NormEps, xn.Span, new float[rows], a.Dim);
        var kv = a.KvWidth;
        using var q = Tensor.Uninitialized(rows, a.QueryWidth);
        using var k = Tensor.Uninitialized(rows, kv);
        var kPool = _pool.K[layer];
        var vPool = _pool.V[layer];
        using (var qkv = Linear(layer, ProjectionStack.Qkv, xn, groups))
        {
            for (var r = 0; r < rows; r++)
            {
                var row = qkv.Row(r);
                row[..a.QueryWidth].CopyTo(q.Row(r));
                row.Slice(a.QueryWidth, kv).CopyTo(k.Row(r));
                row.Slice(a.QueryWidth + kv, kv).CopyTo(vPool.AsSpan((int)(slots[r] * kv), kv));
            }
        }

        rope.Apply(q.Span, a.NHeads);
        rope.Apply(k.Span, a.NKvHeads);

        // Write this step's keys into their slots (the values went above) before attending: a row attends
        // to itself and to the rows of its own sequence before it in the same step.
        for (var r = 0; r < rows; r++)
        {
            k.Row(r).CopyTo(kPool.AsSpan((int)(slots[r] * kv), kv));
        }

        using var attn = Tensor.Uninitialized(rows, a.QueryWidth);
        Attention.PagedForward(new Attention.PagedShape(rows, a.NHeads, a.NKvHeads, a.HeadDim, _pool.BlockSize),
            q.Span, kPool, vPool, tables, offsets, lo, hi, attn.Span);

        using var hmid = Linear(layer, ProjectionStack.Wo, attn, groups);
        System.Numerics.Tensors.TensorPrimitives.Add(hmid.Span, x.Span, hmid.Span);
        using var xn2 = Tensor.Uninitialized(rows, a.Dim);
        Ops.RmsNormForward(hmid.Span, _weights.FfnNorm(layer), a.NormEps, xn2.Span, new float[rows], a.Dim);
        using var a13 = Linear(layer, ProjectionStack.W13, xn2, groups);
        using var g = Tensor.Uninitialized(rows, a.HiddenDim);
        for (var r = 0; r < rows; r++)
        {
            // Row by row: the element-wise kernels then see the same lengths whatever the batch size.
            var row = a13.Row(r);
            Ops.SwiGluForward(row[..a.HiddenDim], row[a.HiddenDim..], g.Row(r));
        }

        var output = Linear(layer, ProjectionStack.W2, g, groups);
        System.Numerics.Tensors.TensorPrimitives.Add(output.Span, hmid.Span, output.Span);
        return output;
    }

    /// <summary>
    /// A stack's base projections in one product over all rows, then each adapter group's low-rank update
    /// over its rows, into each projection's columns of the stacked output.
    /// </summary>
    private Tensor Linear(int layer, ProjectionStack stack, Tensor x, List<(LoraAdapter? Adapter, int Start, int End)> groups)
    {
        var w = _weights.Projection(layer, stack);
        var width = w.Rows;
        var i = w.Columns;
        var rows = x.Rows;
        var y = Tensor.Uninitialized(rows, width);
        Sgemm.MultiplyBatchInvariant(rows, 1f, x.Span, i, w, 0f, y.Span, width);

        // Each adapter group writes only its own rows of y, so the groups can run side by side: a mixed batch's
        // groups are few rows each, whose products are too small to be split between threads, and run one
        // after another they left every core but one idle (8 adapters ran at ~0.8x one adapter's rate). Each
        // element is still computed by the same products in the same order, so the bits do not change.
        var adapted = groups.Count(g => g.Adapter is not null);
        if (adapted > 1 && KernelParallelism.MaxThreads > 1)
        {
            KernelParallelism.Run(groups.Count, KernelParallelism.MaxThreads, g => AddLowRank(layer, stack, x, groups[g], y));
        }
        else
        {
            foreach (var group in groups)
            {
                AddLowRank(layer, stack, x, group, y);
            }
        }

        return y;
    }

    /// <summary>One adapter group's low-rank update of a stack's projections, over the group's rows of <paramref name="y"/>.</summary>
    private void AddLowRank(int layer, ProjectionStack stack, Tensor x, (LoraAdapter? Adapter, int Start, int End) group, Tensor y)
    {
        var (adapter, start, end) = group;
        var w = _weights.Projection(layer, stack);
        var width = w.Rows;
        var i = w.Columns;
        if (adapter is null)
        {
            return;
        }

        var n = end - start;
        var column = 0;
        foreach (var kind in PackedModelWeights.KindsOf(stack))
        {
            var o = LinearKinds.Dims(_args, kind).Out;
            if (adapter[layer, kind] is { } pair)
            {
                var r = pair.Rank;
                var packed = _packedAdapters.GetValue(pair, static p => new PackedLora(
                    new PackedMatrix(p.A.Span, p.Rank, p.A.Span.Length / p.Rank),
                    new PackedMatrix(p.B.Span, p.B.Span.Length / p.Rank, p.Rank)));
                using var u = Tensor.Uninitialized(n, r);

                // The packed overload gives the bits of the unpacked product, so batch invariance is unchanged.
                Sgemm.MultiplyBatchInvariant(n, 1f, x.Span.Slice(start * i, n * i), i, packed.A, 0f, u.Span, r);
                Sgemm.MultiplyBatchInvariant(n, adapter.Config.Scaling, u.Span, r, packed.B, 1f,
                    y.Span.Slice((start * width) + column, ((n - 1) * width) + o), width);
            }

            column += o;
        }
    }
}

/// <summary>An adapter projection's down (A, [r × in]) and up (B, [out × r]) matrices, packed for the GEMM kernel.</summary>
internal sealed record PackedLora(PackedMatrix A, PackedMatrix B);
