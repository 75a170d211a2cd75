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
    private readonly MistralWeights _weights;
    private readonly MistralArgs _args;
    private readonly KvBlockPool _pool;

    // The projections that read the same input, stacked into one product each: Wq|Wk|Wv, Wo, W1|W3, W2.
    // Four products per layer instead of seven: a decode step is dominated by each product's fixed costs
    // (a fork/join per 256-deep block of k) as much as by its FLOPs. Every element of C is accumulated by
    // the kernel over k alone, so a stacked product gives each output the bits of its own product.
    private static readonly LinearKind[][] Stacks = [[LinearKind.Wq, LinearKind.Wk, LinearKind.Wv], [LinearKind.Wo], [LinearKind.W1, LinearKind.W3], [LinearKind.W2]];
    private const int QkvStack = 0;
    private const int WoStack = 1;
    private const int W13Stack = 2;
    private const int W2Stack = 3;

    // The base weights packed once for the GEMM kernel, per layer and stack: re-packing them on every step
    // cost more than the multiply itself at decode batch sizes. A copy the size of the weights, owned by the runner.
    private readonly PackedMatrix[,] _packed;
    private readonly PackedMatrix _output;

    // Each adapter projection's A and B packed once, like the base weights: packing them on every step
    // (a fork/join and a copy per adapter group, projection and layer) made a batch of 8 adapters ~1.5×
    // slower than one adapter, whose single group paid it once. Keyed weakly by the pair, so an adapter the
    // pool evicts and drops takes its packed copy with it (PackedMatrix frees its memory when finalized).
    // A served adapter is never trained in place, so a copy packed once stays right.
    private readonly ConditionalWeakTable<LoraPair, PackedLora> _packedAdapters = new();

    public PagedBatchRunner(MistralWeights weights, KvBlockPool pool)
    {
        _weights = weights;
        _args = weights.Args;
        _pool = pool;
        _packed = new PackedMatrix[_args.NLayers, Stacks.Length];
        for (var l = 0; l < _args.NLayers; l++)
        {
            for (var stack = 0; stack < Stacks.Length; stack++)
            {
                _packed[l, stack] = Pack(weights.Layers[l], Stacks[stack]);
            }
        }

        _output = new PackedMatrix(weights.Output.Span, _args.VocabSize, _args.Dim);
    }

    private PackedMatrix Pack(LayerWeights layer, LinearKind[] kinds)
    {
        var (rows, columns) = LinearKinds.Dims(_args, kinds[0]);
        if (kinds.Length == 1)
        {
            return new PackedMatrix(layer[kinds[0]].Span, rows, columns);
        }

        // Row-major [out × in] matrices stack by concatenation; the temporary goes once packed.
        rows = 0;
        foreach (var kind in kinds)
        {
            rows += LinearKinds.Dims(_args, kind).Out;
        }

        var stacked = GC.AllocateUninitializedArray<float>(rows * columns);
        var at = 0;
        foreach (var kind in kinds)
        {
            var w = layer[kind].Span;
            w.CopyTo(stacked.AsSpan(at));
            at += w.Length;
        }

        return new PackedMatrix(stacked, rows, columns);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var p in _packed)
        {
            p.Dispose();
        }

        _output.Dispose();
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
    public float[] Run(IReadOnlyList<BatchItem> items)
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
        var logitRows = new int[items.Count];
        var wanted = 0;
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

        // The logits rows, in the caller's item order.
        var rowOfItem = new int[items.Count];
        row = 0;
        foreach (var i in order)
        {
            row += items[i].Tokens.Length;
            rowOfItem[i] = row - 1;
        }

        for (var i = 0; i < items.Count; i++)
        {
            if (items[i].WantLogits)
            {
                logitRows[wanted++] = rowOfItem[i];
            }
        }

        var tableArray = tables.ToArray();
        var rope = new RopeAngles(positions, a.HeadDim, a.RopeTheta);
        var x = Tensor.Uninitialized(rows, a.Dim);
        Ops.EmbeddingForward(_weights.TokEmbeddings.Span, tokens, x.Span, a.Dim);
        for (var l = 0; l < a.NLayers; l++)
        {
            var next = Block(l, x, rope, groups, slots, tableArray, offsets, lo, hi);
            x.Dispose();
            x = next;
        }

        using (x)
        {
            if (wanted == 0)
            {
                return [];
            }

            using var last = Tensor.Uninitialized(wanted, a.Dim);
            for (var i = 0; i < wanted; i++)
            {
                x.Row(logitRows[i]).CopyTo(last.Row(i));
            }

            using var norm = Tensor.Uninitialized(wanted, a.Dim);
            Ops.RmsNormForward(last.Span, _weights.Norm.Span, a.NormEps, norm.Span, new float[wanted], a.Dim);
            var logits = new float[wanted * a.VocabSize];
            Sgemm.MultiplyBatchInvariant(wanted, 1f, norm.Span, a.Dim, _output, 0f, logits, a.VocabSize);
            return logits;
        }
    }

    private Tensor Block(int layer, Tensor x, RopeAngles rope, List<(LoraAdapter? Adapter, int Start, int End)> groups,
        long[] slots, int[] tables, int[] offsets, int[] lo, int[] hi)
    {
        var a = _args;
        var w = _weights.Layers[layer];
        var rows = x.Rows;
        using var xn = Tensor.Uninitialized(rows, a.Dim);
        Ops.RmsNormForward(x.Span, w.AttentionNorm.Span, a.NormEps, xn.Span, new float[rows], a.Dim);
        var kv = a.KvWidth;
        using var q = Tensor.Uninitialized(rows, a.QueryWidth);
        using var k = Tensor.Uninitialized(rows, kv);
        var kPool = _pool.K[layer];
        var vPool = _pool.V[layer];
        using (var qkv = Linear(layer, QkvStack, xn, groups))
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

        using var hmid = Linear(layer, WoStack, attn, groups);
        System.Numerics.Tensors.TensorPrimitives.Add(hmid.Span, x.Span, hmid.Span);
        using var xn2 = Tensor.Uninitialized(rows, a.Dim);
        Ops.RmsNormForward(hmid.Span, w.FfnNorm.Span, a.NormEps, xn2.Span, new float[rows], a.Dim);
        using var a13 = Linear(layer, W13Stack, xn2, groups);
        using var g = Tensor.Uninitialized(rows, a.HiddenDim);
        for (var r = 0; r < rows; r++)
        {
            // Row by row: the element-wise kernels then see the same lengths whatever the batch size.
            var row = a13.Row(r);
            Ops.SwiGluForward(row[..a.HiddenDim], row[a.HiddenDim..], g.Row(r));
        }

        var output = Linear(layer, W2Stack, g, groups);
        System.Numerics.Tensors.TensorPrimitives.Add(output.Span, hmid.Span, output.Span);
        return output;
    }

    /// <summary>
    /// A stack's base projections in one product over all rows, then each adapter group's low-rank update
    /// over its rows, into each projection's columns of the stacked output.
    /// </summary>
    private Tensor Linear(int layer, int stack, Tensor x, List<(LoraAdapter? Adapter, int Start, int End)> groups)
    {
        var w = _packed[layer, stack];
        var width = w.Rows;
        var i = w.Columns;
        var rows = x.Rows;
        var y = Tensor.Uninitialized(rows, width);
        Sgemm.MultiplyBatchInvariant(rows, 1f, x.Span, i, w, 0f, y.Span, width);
        foreach (var (adapter, start, end) in groups)
        {
            if (adapter is null)
            {
                continue;
            }

            var n = end - start;
            var column = 0;
            foreach (var kind in Stacks[stack])
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

        return y;
    }
}

/// <summary>An adapter projection's down (A, [r × in]) and up (B, [out × r]) matrices, packed for the GEMM kernel.</summary>
internal sealed record PackedLora(PackedMatrix A, PackedMatrix B);
