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
public static class Attention
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

    /// <summary>
    /// <c>o_t = Σ_{j∈[lo_t, hi_t]} softmax_j(q_t·k_j·scale) v_j</c> per head; writes the log-sum-exp of each
    /// (head, row) into <paramref name="lse"/> [heads × T].
    /// </summary>
    public static void Forward(Shape shape, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<int> lo, ReadOnlySpan<int> hi, Span<float> o, Span<float> lse)
    {
        shape.Validate(q.Length, k.Length, v.Length, o.Length, lo.Length, hi.Length);
        if (lse.Length != shape.Heads * shape.Queries)
        {
            throw new ArgumentException("lse must hold heads × queries values.", nameof(lse));
        }

        CheckRanges(lo, hi, shape.Keys);
        unsafe
        {
            fixed (float* pq = q, pk = k, pv = v, po = o, pl = lse)
            fixed (int* plo = lo, phi = hi)
            {
                var p = (q: (nint)pq, k: (nint)pk, v: (nint)pv, o: (nint)po, l: (nint)pl, lo: (nint)plo, hi: (nint)phi);
                var rowsPerTask = Math.Max(1, Math.Min(shape.Queries, 64));
                var tasksPerHead = (shape.Queries + rowsPerTask - 1) / rowsPerTask;
                KernelParallelism.For(shape.Heads * tasksPerHead, task =>
                {
                    var h = task / tasksPerHead;
                    var t0 = task % tasksPerHead * rowsPerTask;
                    var t1 = Math.Min(shape.Queries, t0 + rowsPerTask);
                    ForwardRows(shape, h, t0, t1, (float*)p.q, (float*)p.k, (float*)p.v, (int*)p.lo, (int*)p.hi, (float*)p.o, (float*)p.l);
                });
            }
        }
    }

    private static unsafe void ForwardRows(Shape s, int h, int t0, int t1, float* q, float* k, float* v, int* lo, int* hi, float* o, float* lse)
    {
        var hd = s.HeadDim;
        var qStride = s.Heads * hd;
        var kvStride = s.KvHeads * hd;
        var g = h / s.Group;
        var scale = s.Scale;
        var scores = new float[s.Keys];
        for (var t = t0; t < t1; t++)
        {
            var qRow = new ReadOnlySpan<float>(q + ((long)t * qStride) + (h * hd), hd);
            var oRow = new Span<float>(o + ((long)t * qStride) + (h * hd), hd);
            oRow.Clear();
            var a = lo[t];
            var b = hi[t];
            if (b < a)
            {
                // An empty range: the row attends to nothing and its output is zero.
                lse[((long)h * s.Queries) + t] = float.NegativeInfinity;
                continue;
            }

            var max = float.NegativeInfinity;
            for (var j = a; j <= b; j++)
            {
                var sc = Simd.Dot(qRow, new ReadOnlySpan<float>(k + ((long)j * kvStride) + (g * hd), hd)) * scale;
                scores[j] = sc;
                max = MathF.Max(max, sc);
            }

            double sum = 0;
            for (var j = a; j <= b; j++)
            {
                var e = MathF.Exp(scores[j] - max);
                scores[j] = e;
                sum += e;
            }

            var inv = (float)(1.0 / sum);
            for (var j = a; j <= b; j++)
            {
                Simd.Axpy(scores[j] * inv, new ReadOnlySpan<float>(v + ((long)j * kvStride) + (g * hd), hd), oRow);
            }

            lse[((long)h * s.Queries) + t] = max + (float)Math.Log(sum);
        }
    }

    /// <summary>
    /// Backward of <see cref="Forward"/>: writes dq [T×heads·hd] and accumulates dk, dv [S×kv·hd]
    /// (callers clear them first). Work is split by key/value head, so each gradient row is summed by
    /// one thread in a fixed order.
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
        unsafe
        {
            fixed (float* pdo = dO, pq = q, pk = k, pv = v, po = o, pl = lse, pdq = dq, pdk = dk, pdv = dv)
            fixed (int* plo = lo, phi = hi)
            {
                var p = (dO: (nint)pdo, q: (nint)pq, k: (nint)pk, v: (nint)pv, o: (nint)po, l: (nint)pl, dq: (nint)pdq, dk: (nint)pdk, dv: (nint)pdv, lo: (nint)plo, hi: (nint)phi);
                KernelParallelism.For(shape.KvHeads, g => BackwardGroup(shape, g,
                    (float*)p.dO, (float*)p.q, (float*)p.k, (float*)p.v, (float*)p.o, (float*)p.l, (int*)p.lo, (int*)p.hi,
                    (float*)p.dq, (float*)p.dk, (float*)p.dv));
            }
        }
    }

    private static unsafe void BackwardGroup(Shape s, int g, float* dO, float* q, float* k, float* v, float* o, float* lse,
        int* lo, int* hi, float* dq, float* dk, float* dv)
    {
        var hd = s.HeadDim;
        var qStride = s.Heads * hd;
        var kvStride = s.KvHeads * hd;
        var scale = s.Scale;
        for (var r = 0; r < s.Group; r++)
        {
            var h = (g * s.Group) + r;
            for (var t = 0; t < s.Queries; t++)
            {
                var off = ((long)t * qStride) + (h * hd);
                var qRow = new ReadOnlySpan<float>(q + off, hd);
                var doRow = new ReadOnlySpan<float>(dO + off, hd);
                var dqRow = new Span<float>(dq + off, hd);
                dqRow.Clear();
                var a = lo[t];
                var b = hi[t];
                if (b < a)
                {
                    continue;
                }

                var l = lse[((long)h * s.Queries) + t];
                var d = Simd.Dot(doRow, new ReadOnlySpan<float>(o + off, hd));
                for (var j = a; j <= b; j++)
                {
                    var kvOff = ((long)j * kvStride) + (g * hd);
                    var kRow = new ReadOnlySpan<float>(k + kvOff, hd);
                    var vRow = new ReadOnlySpan<float>(v + kvOff, hd);
                    var prob = MathF.Exp((Simd.Dot(qRow, kRow) * scale) - l);
                    var dp = Simd.Dot(doRow, vRow);
                    var ds = prob * (dp - d) * scale;
                    Simd.Axpy(ds, kRow, dqRow);
                    Simd.Axpy(ds, qRow, new Span<float>(dk + kvOff, hd));
                    Simd.Axpy(prob, doRow, new Span<float>(dv + kvOff, hd));
                }
            }
        }
    }

    private static void CheckRanges(ReadOnlySpan<int> lo, ReadOnlySpan<int> hi, int keys)
    {
        for (var t = 0; t < lo.Length; t++)
        {
            if (lo[t] < 0 || hi[t] >= keys || (hi[t] >= lo[t] && lo[t] > hi[t]))
            {
                throw new ArgumentOutOfRangeException(nameof(lo), $"Key range [{lo[t]}, {hi[t]}] of row {t} is outside [0, {keys}).");
            }
        }
    }
}
