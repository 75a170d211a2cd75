namespace Atelier.Modeling.Kernels;

/// <summary>
/// Scaled dot-product attention with grouped-query heads and an arbitrary contiguous key range per
/// query row, which expresses the block-diagonal causal mask of packed sequences, the sliding
/// window, and attention over a KV cache alike.
/// </summary>
/// <remarks>
/// The forward keeps only the per-row log-sum-exp; the backward recomputes probabilities from it
/// (as FlashAttention does), so memory stays linear in sequence length.
/// </remarks>
public static partial class Attention
{
    /// <summary>Shape of one attention call.</summary>
    /// <param name="Queries">Query rows T.</param>
    /// <param name="Keys">Key/value rows S.</param>
    /// <param name="Heads">Query heads.</param>
    /// <param name="KvHeads">Key/value heads (divides <paramref name="Heads"/>).</param>
    /// <param name="HeadDim">Dimension of one head.</param>
    public readonly record struct Shape(int Queries, int Keys, int Heads, int KvHeads, int HeadDim)
    {
        /// <summary>Query heads sharing one key/value head.</summary>
        public int Group => Heads / KvHeads;

        /// <summary>The softmax scale <c>1/√head_dim</c>.</summary>
        public float Scale => 1f / MathF.Sqrt(HeadDim);

        internal void Validate(int q, int k, int v, int o, int lo, int hi)
        {
            if (Heads <= 0 || KvHeads <= 0 || Heads % KvHeads != 0 || HeadDim <= 0)
            {
                throw new ArgumentException("Heads must be a positive multiple of KV heads.");
            }

            if (q != Queries * Heads * HeadDim || o != q || k != Keys * KvHeads * HeadDim || v != k || lo != Queries || hi != Queries)
            {
                throw new ArgumentException("Attention operand sizes do not match the shape.");
            }
        }
    }

    // Query rows per block: one score block is (rows × key span) floats, computed by SGEMM.
    private const int BlockRows = 64;

    /// <summary>
    /// <c>o_t = Σ_{j∈[lo_t, hi_t]} softmax_j(q_t·k_j·scale) v_j</c> per head; writes the log-sum-exp of each
    /// (head, row) into <paramref name="lse"/> [heads × T] (−∞ for a row with an empty range).
    /// </summary>
    /// <remarks>
    /// Rows are cut into blocks (at most 64 rows, and a new block wherever a row's range no longer
    /// overlaps the block's first row, e.g. at a packed sample's start), so scores are computed by
    /// matrix multiplies over each block's key span, and masked entries outside a row's range are
    /// dropped. Blocks depend only on the ranges, never on the thread count.
    /// </remarks>
    public static void Forward(Shape shape, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<int> lo, ReadOnlySpan<int> hi, Span<float> o, Span<float> lse)
    {
        shape.Validate(q.Length, k.Length, v.Length, o.Length, lo.Length, hi.Length);
        if (lse.Length != shape.Heads * shape.Queries)
        {
            throw new ArgumentException("lse must hold heads × queries values.", nameof(lse));
        }

        CheckRanges(lo, hi, shape.Keys);
        var blocks = Blocks(lo, hi);
        unsafe
        {
            fixed (float* pq = q, pk = k, pv = v, po = o, pl = lse)
            fixed (int* plo = lo, phi = hi)
            {
                var p = (q: (nint)pq, k: (nint)pk, v: (nint)pv, o: (nint)po, l: (nint)pl, lo: (nint)plo, hi: (nint)phi);
                KernelParallelism.For(shape.Heads * blocks.Count, task =>
                {
                    var h = task / blocks.Count;
                    var blk = blocks[task % blocks.Count];
                    ForwardBlock(shape, h, blk, (float*)p.q, (float*)p.k, (float*)p.v, (int*)p.lo, (int*)p.hi, (float*)p.o, (float*)p.l);
                });
            }
        }
    }

    /// <summary>A block of query rows [Start, End) and the key span [KeyLo, KeyHi] their ranges cover.</summary>
    private readonly record struct Block(int Start, int End, int KeyLo, int KeyHi)
    {
        public int Rows => End - Start;

        public int Keys => KeyHi - KeyLo + 1;
    }

    private static List<Block> Blocks(ReadOnlySpan<int> lo, ReadOnlySpan<int> hi)
    {
        var blocks = new List<Block>();
        var t = 0;
        while (t < lo.Length)
        {
            var start = t;
            int kLo = int.MaxValue, kHi = -1;
            while (t < lo.Length && t - start < BlockRows && (t == start || lo[t] <= hi[start] || hi[start] < lo[start]))
            {
                if (hi[t] >= lo[t])
                {
                    kLo = Math.Min(kLo, lo[t]);
                    kHi = Math.Max(kHi, hi[t]);
                }

                t++;
            }

            blocks.Add(kHi < 0 ? new Block(start, t, 0, -1) : new Block(start, t, kLo, kHi));
        }

        return blocks;
    }

    private static unsafe void ForwardBlock(Shape s, int h, Block blk, float* q, float* k, float* v, int* lo, int* hi, float* o, float* lse)
    {
        var hd = s.HeadDim;
        var qStride = s.Heads * hd;
        var kvStride = s.KvHeads * hd;
        var g = h / s.Group;
        var rows = blk.Rows;
        var qBlk = q + ((long)blk.Start * qStride) + (h * hd);
        var oBlk = o + ((long)blk.Start * qStride) + (h * hd);
        if (blk.KeyHi < blk.KeyLo)
        {
            for (var r = 0; r < rows; r++)
            {
                new Span<float>(oBlk + ((long)r * qStride), hd).Clear();
                lse[((long)h * s.Queries) + blk.Start + r] = float.NegativeInfinity;
            }

            return;
        }

        var nk = blk.Keys;
        var scores = System.Buffers.ArrayPool<float>.Shared.Rent(rows * nk);
        try
        {
            var kSpan = k + ((long)blk.KeyLo * kvStride) + (g * hd);
            var vSpan = v + ((long)blk.KeyLo * kvStride) + (g * hd);
            var sc = scores.AsSpan(0, rows * nk);
            Sgemm.Multiply(false, true, rows, nk, hd, s.Scale,
                new ReadOnlySpan<float>(qBlk, ((rows - 1) * qStride) + hd), qStride,
                new ReadOnlySpan<float>(kSpan, ((nk - 1) * kvStride) + hd), kvStride, 0f, sc, nk, allowParallel: false);
            for (var r = 0; r < rows; r++)
            {
                var t = blk.Start + r;
                lse[((long)h * s.Queries) + t] = SoftmaxRow(sc.Slice(r * nk, nk), lo[t] - blk.KeyLo, hi[t] - blk.KeyLo);
            }

            Sgemm.Multiply(false, false, rows, hd, nk, 1f, sc, nk,
                new ReadOnlySpan<float>(vSpan, ((nk - 1) * kvStride) + hd), kvStride, 0f,
                new Span<float>(oBlk, ((rows - 1) * qStride) + hd), qStride, allowParallel: false);
        }
        finally
        {
            System.Buffers.ArrayPool<float>.Shared.Return(scores);
        }
    }

    /// <summary>Turns one row of scores into probabilities over [a, b] (zero elsewhere); returns the log-sum-exp.</summary>
    private static float SoftmaxRow(Span<float> row, int a, int b)
    {
        if (b < a)
        {
            row.Clear();
            return float.NegativeInfinity;
        }

        row[..a].Clear();
        row[(b + 1)..].Clear();
        var live = row[a..(b + 1)];
        var max = System.Numerics.Tensors.TensorPrimitives.Max(live);
        System.Numerics.Tensors.TensorPrimitives.Subtract(live, max, live);
        System.Numerics.Tensors.TensorPrimitives.Exp(live, live);
        var sum = Simd.Sum(live);
        System.Numerics.Tensors.TensorPrimitives.Multiply(live, (float)(1.0 / sum), live);
        return max + (float)Math.Log(sum);
    }

    /// <summary>
    /// Backward of <see cref="Forward"/>: writes dq [T×heads·hd] and accumulates dk, dv [S×kv·hd]
    /// (callers clear them first). Work is split by key/value head; within one, heads and blocks are
    /// visited in a fixed order, so each gradient is summed the same way for any thread count.
    /// </summary>
    public static void Backward(Shape shape, ReadOnlySpan<float> dO, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<float> o, ReadOnlySpan<float> lse, ReadOnlySpan<int> lo, ReadOnlySpan<int> hi,
        Span<float> dq, Span<float> dk, Span<float> dv)
    {
        shape.Validate(q.Length, k.Length, v.Length, o.Length, lo.Length, hi.Length);
        if (dO.Length != q.Length || dq.Length != q.Length || dk.Length != k.Length || dv.Length != v.Length || lse.Length != shape.Heads * shape.Queries)
        {
            throw new ArgumentException("Attention backward operand sizes do not match.");
        }

        CheckRanges(lo, hi, shape.Keys);
        var blocks = Blocks(lo, hi);
        unsafe
        {
            fixed (float* pdo = dO, pq = q, pk = k, pv = v, po = o, pl = lse, pdq = dq, pdk = dk, pdv = dv)
            fixed (int* plo = lo, phi = hi)
            {
                var p = (dO: (nint)pdo, q: (nint)pq, k: (nint)pk, v: (nint)pv, o: (nint)po, l: (nint)pl, dq: (nint)pdq, dk: (nint)pdk, dv: (nint)pdv, lo: (nint)plo, hi: (nint)phi);
                KernelParallelism.For(shape.KvHeads, g =>
                {
                    for (var r = 0; r < shape.Group; r++)
                    {
                        foreach (var blk in blocks)
                        {
                            BackwardBlock(shape, (g * shape.Group) + r, blk,
                                (float*)p.dO, (float*)p.q, (float*)p.k, (float*)p.v, (float*)p.o, (float*)p.l, (int*)p.lo, (int*)p.hi,
                                (float*)p.dq, (float*)p.dk, (float*)p.dv);
                        }
                    }
                });
            }
        }
    }

    private static unsafe void BackwardBlock(Shape s, int h, Block blk, float* dO, float* q, float* k, float* v, float* o, float* lse,
        int* lo, int* hi, float* dq, float* dk, float* dv)
    {
        var hd = s.HeadDim;
        var qStride = s.Heads * hd;
        var kvStride = s.KvHeads * hd;
        var g = h / s.Group;
        var rows = blk.Rows;
        var off = ((long)blk.Start * qStride) + (h * hd);
        var qLen = ((rows - 1) * qStride) + hd;
        if (blk.KeyHi < blk.KeyLo)
        {
            for (var r = 0; r < rows; r++)
            {
                new Span<float>(dq + off + ((long)r * qStride), hd).Clear();
            }

            return;
        }

        var nk = blk.Keys;
        var kvOff = ((long)blk.KeyLo * kvStride) + (g * hd);
        var kvLen = ((nk - 1) * kvStride) + hd;
        var qBlk = new ReadOnlySpan<float>(q + off, qLen);
        var doBlk = new ReadOnlySpan<float>(dO + off, qLen);
        var kBlk = new ReadOnlySpan<float>(k + kvOff, kvLen);
        var vBlk = new ReadOnlySpan<float>(v + kvOff, kvLen);
        var pool = System.Buffers.ArrayPool<float>.Shared;
        var probs = pool.Rent(rows * nk);
        var grads = pool.Rent(rows * nk);
        try
        {
            var pm = probs.AsSpan(0, rows * nk);
            var ds = grads.AsSpan(0, rows * nk);

            // Recompute the probabilities from the saved log-sum-exp.
            Sgemm.Multiply(false, true, rows, nk, hd, s.Scale, qBlk, qStride, kBlk, kvStride, 0f, pm, nk, allowParallel: false);
            Sgemm.Multiply(false, true, rows, nk, hd, 1f, doBlk, qStride, vBlk, kvStride, 0f, ds, nk, allowParallel: false);
            for (var r = 0; r < rows; r++)
            {
                var t = blk.Start + r;
                var prow = pm.Slice(r * nk, nk);
                var drow = ds.Slice(r * nk, nk);
                var a = lo[t] - blk.KeyLo;
                var b = hi[t] - blk.KeyLo;
                if (b < a)
                {
                    prow.Clear();
                    drow.Clear();
                    continue;
                }

                prow[..a].Clear();
                prow[(b + 1)..].Clear();
                drow[..a].Clear();
                drow[(b + 1)..].Clear();
                var live = prow[a..(b + 1)];
                System.Numerics.Tensors.TensorPrimitives.Subtract(live, lse[((long)h * s.Queries) + t], live);
                System.Numerics.Tensors.TensorPrimitives.Exp(live, live);

                // dS = P ⊙ (dP − D) · scale, with D = dO·O for this row.
                var d = Simd.Dot(new ReadOnlySpan<float>(dO + off + ((long)r * qStride), hd), new ReadOnlySpan<float>(o + off + ((long)r * qStride), hd));
                var dlive = drow[a..(b + 1)];
                System.Numerics.Tensors.TensorPrimitives.Subtract(dlive, d, dlive);
                System.Numerics.Tensors.TensorPrimitives.Multiply(dlive, live, dlive);
                System.Numerics.Tensors.TensorPrimitives.Multiply(dlive, s.Scale, dlive);
            }

            Sgemm.Multiply(false, false, rows, hd, nk, 1f, ds, nk, kBlk, kvStride, 0f, new Span<float>(dq + off, qLen), qStride, allowParallel: false);
            Sgemm.Multiply(true, false, nk, hd, rows, 1f, ds, nk, qBlk, qStride, 1f, new Span<float>(dk + kvOff, kvLen), kvStride, allowParallel: false);
            Sgemm.Multiply(true, false, nk, hd, rows, 1f, pm, nk, doBlk, qStride, 1f, new Span<float>(dv + kvOff, kvLen), kvStride, allowParallel: false);
        }
        finally
        {
            pool.Return(probs);
            pool.Return(grads);
        }
    }

    private static void CheckRanges(ReadOnlySpan<int> lo, ReadOnlySpan<int> hi, int keys)
    {
        for (var t = 0; t < lo.Length; t++)
        {
            // An empty range (hi < lo) is allowed: the row attends to nothing.
            if (lo[t] < 0 || hi[t] >= keys || lo[t] > keys)
            {
                throw new ArgumentOutOfRangeException(nameof(lo), $"Key range [{lo[t]}, {hi[t]}] of row {t} is outside [0, {keys}).");
            }
        }
    }
}
