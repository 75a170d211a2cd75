using System.Numerics.Tensors;

namespace Atelier.Modeling.Kernels;

/// <summary>
/// The element-wise and row-wise operations of the transformer, each with its backward. Matrices are
/// row-major spans with the row length given; rows are processed independently (and in parallel when
/// large), so results do not depend on the thread count.
/// </summary>
public static class Ops
{
    private const int RowsPerChunk = 8;

    // A row-wise kernel's chunk holds at least this many elements: a fork/join costs microseconds, and a
    // narrow model's rows (64 floats) would otherwise be handed to threads 32 at a time, a hand-off per
    // microsecond of work. Rows are computed whole inside one chunk, so chunking never changes a bit.
    private const int MinChunkElements = 1 << 14;

    /// <summary>Rows per chunk for a row-wise kernel over rows of <paramref name="width"/> elements.</summary>
    private static int RowChunk(int width, int minRows) => Math.Max(minRows, MinChunkElements / Math.Max(1, width));

    /// <summary><c>y = x · rsqrt(mean(x²) + eps) · w</c> per row; stores the reciprocal RMS for the backward.</summary>
    public static void RmsNormForward(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, float eps, Span<float> y, Span<float> invRms, int dim)
    {
        var rows = CheckRows(x.Length, dim);
        if (weight.Length != dim || y.Length != x.Length || invRms.Length < rows)
        {
            throw new ArgumentException("RMSNorm operand sizes do not match.");
        }

        unsafe
        {
            fixed (float* px = x, pw = weight, py = y, pr = invRms)
            {
                var (xp, wp, yp, rp) = ((nint)px, (nint)pw, (nint)py, (nint)pr);
                KernelParallelism.ForRange(rows, RowChunk(dim, RowsPerChunk * 4), (s, e) =>
                {
                    var w = new ReadOnlySpan<float>((float*)wp, dim);
                    for (var t = s; t < e; t++)
                    {
                        var row = new ReadOnlySpan<float>((float*)xp + ((long)t * dim), dim);
                        var r = (float)(1.0 / Math.Sqrt((SumSquares(row) / dim) + eps));
                        ((float*)rp)[t] = r;
                        var outRow = new Span<float>((float*)yp + ((long)t * dim), dim);
                        TensorPrimitives.Multiply(row, r, outRow);
                        TensorPrimitives.Multiply(outRow, w, outRow);
                    }
                });
            }
        }
    }

    /// <summary>
    /// Backward of <see cref="RmsNormForward"/>: adds the gradient for x into <paramref name="dx"/>
    /// (<c>dx += r·(dy⊙w) − x·r³/D·Σ(dy⊙w⊙x)</c>) and, when given, accumulates the weight gradient.
    /// </summary>
    public static void RmsNormBackward(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ReadOnlySpan<float> weight, ReadOnlySpan<float> invRms, Span<float> dx, Span<float> dWeight, int dim)
    {
        var rows = CheckRows(x.Length, dim);
        if (dy.Length != x.Length || dx.Length != x.Length || weight.Length != dim)
        {
            throw new ArgumentException("RMSNorm backward operand sizes do not match.");
        }

        unsafe
        {
            fixed (float* pdy = dy, px = x, pw = weight, pr = invRms, pdx = dx)
            {
                var (dyp, xp, wp, rp, dxp) = ((nint)pdy, (nint)px, (nint)pw, (nint)pr, (nint)pdx);
                KernelParallelism.ForRange(rows, RowChunk(dim, RowsPerChunk * 4), (s, e) =>
                {
                    var w = new ReadOnlySpan<float>((float*)wp, dim);
                    var g = new float[dim];
                    for (var t = s; t < e; t++)
                    {
                        var xr = new ReadOnlySpan<float>((float*)xp + ((long)t * dim), dim);
                        var dyr = new ReadOnlySpan<float>((float*)dyp + ((long)t * dim), dim);
                        var dxr = new Span<float>((float*)dxp + ((long)t * dim), dim);
                        var r = ((float*)rp)[t];
                        TensorPrimitives.Multiply(dyr, w, g);
                        double dot = 0;
                        for (var i = 0; i < dim; i++)
                        {
                            dot += (double)g[i] * xr[i];
                        }

                        var coef = (float)(dot * r * r * r / dim);
                        for (var i = 0; i < dim; i++)
                        {
                            dxr[i] += (r * g[i]) - (coef * xr[i]);
                        }
                    }
                });
            }
        }

        if (!dWeight.IsEmpty)
        {
            // Weight gradient: a reduction over rows, summed in row order on one thread.
            for (var t = 0; t < rows; t++)
            {
                var xr = x.Slice(t * dim, dim);
                var dyr = dy.Slice(t * dim, dim);
                var r = invRms[t];
                for (var i = 0; i < dim; i++)
                {
                    dWeight[i] += dyr[i] * xr[i] * r;
                }
            }
        }
    }

    /// <summary>Row-wise softmax, in place or into <paramref name="y"/>.</summary>
    public static void SoftmaxForward(ReadOnlySpan<float> x, Span<float> y, int cols)
    {
        var rows = CheckRows(x.Length, cols);
        for (var t = 0; t < rows; t++)
        {
            var xr = x.Slice(t * cols, cols);
            var yr = y.Slice(t * cols, cols);
            var max = TensorPrimitives.Max(xr);
            double sum = 0;
            for (var i = 0; i < cols; i++)
            {
                var e = MathF.Exp(xr[i] - max);
                yr[i] = e;
                sum += e;
            }

            TensorPrimitives.Multiply(yr, (float)(1.0 / sum), yr);
        }
    }

    /// <summary>Backward of softmax given its output: <c>dx += y ⊙ (dy − Σ dy⊙y)</c>.</summary>
    public static void SoftmaxBackward(ReadOnlySpan<float> y, ReadOnlySpan<float> dy, Span<float> dx, int cols)
    {
        var rows = CheckRows(y.Length, cols);
        for (var t = 0; t < rows; t++)
        {
            var yr = y.Slice(t * cols, cols);
            var dyr = dy.Slice(t * cols, cols);
            var dxr = dx.Slice(t * cols, cols);
            double dot = 0;
            for (var i = 0; i < cols; i++)
            {
                dot += (double)yr[i] * dyr[i];
            }

            var d = (float)dot;
            for (var i = 0; i < cols; i++)
            {
                dxr[i] += yr[i] * (dyr[i] - d);
            }
        }
    }

    /// <summary>SiLU: <c>y = x · σ(x)</c>.</summary>
    public static float Silu(float x) => x / (1f + MathF.Exp(-x));

    /// <summary>Derivative of SiLU: <c>σ(x) · (1 + x · (1 − σ(x)))</c>.</summary>
    public static float SiluGrad(float x)
    {
        var s = 1f / (1f + MathF.Exp(-x));
        return s * (1f + (x * (1f - s)));
    }

    /// <summary>SwiGLU gate: <c>g = silu(a) ⊙ b</c>.</summary>
    public static void SwiGluForward(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> g)
    {
        if (a.Length != b.Length || g.Length != a.Length)
        {
            throw new ArgumentException("SwiGLU operand sizes do not match.");
        }

        unsafe
        {
            fixed (float* pa = a, pb = b, pg = g)
            {
                var (ap, bp, gp) = ((nint)pa, (nint)pb, (nint)pg);
                KernelParallelism.ForRange(a.Length, 1 << 14, (s, e) =>
                {
                    var av = new ReadOnlySpan<float>((float*)ap + s, e - s);
                    var gv = new Span<float>((float*)gp + s, e - s);
                    TensorPrimitives.Sigmoid(av, gv);
                    TensorPrimitives.Multiply(gv, av, gv);
                    TensorPrimitives.Multiply(gv, new ReadOnlySpan<float>((float*)bp + s, e - s), gv);
                });
            }
        }
    }

    /// <summary>Backward of <see cref="SwiGluForward"/>: writes <c>da = dg⊙b⊙silu'(a)</c> and <c>db = dg⊙silu(a)</c>.</summary>
    public static void SwiGluBackward(ReadOnlySpan<float> dg, ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> da, Span<float> db)
    {
        if (a.Length != b.Length || dg.Length != a.Length || da.Length != a.Length || db.Length != a.Length)
        {
            throw new ArgumentException("SwiGLU backward operand sizes do not match.");
        }

        unsafe
        {
            fixed (float* pdg = dg, pa = a, pb = b, pda = da, pdb = db)
            {
                var (dgp, ap, bp, dap, dbp) = ((nint)pdg, (nint)pa, (nint)pb, (nint)pda, (nint)pdb);
                KernelParallelism.ForRange(a.Length, 1 << 14, (s, e) =>
                {
                    var n = e - s;
                    var av = new ReadOnlySpan<float>((float*)ap + s, n);
                    var bv = new ReadOnlySpan<float>((float*)bp + s, n);
                    var dgv = new ReadOnlySpan<float>((float*)dgp + s, n);
                    var dav = new Span<float>((float*)dap + s, n);
                    var dbv = new Span<float>((float*)dbp + s, n);
                    var sig = dav; // σ(a) is staged in da, which is overwritten last
                    TensorPrimitives.Sigmoid(av, sig);
                    for (var i = 0; i < n; i++)
                    {
                        var sg = sig[i];
                        var x = av[i];
                        var d = dgv[i];
                        dbv[i] = d * x * sg;
                        dav[i] = d * bv[i] * sg * (1f + (x * (1f - sg)));
                    }
                });
            }
        }
    }

    /// <summary>Copies rows <c>table[ids[t]]</c> into <paramref name="y"/>.</summary>
    public static void EmbeddingForward(ReadOnlySpan<float> table, ReadOnlySpan<int> ids, Span<float> y, int dim)
    {
        var vocab = CheckRows(table.Length, dim);
        for (var t = 0; t < ids.Length; t++)
        {
            var id = ids[t];
            if ((uint)id >= (uint)vocab)
            {
                throw new ArgumentOutOfRangeException(nameof(ids), $"Token id {id} at position {t} is outside the vocabulary of {vocab}.");
            }

            table.Slice(id * dim, dim).CopyTo(y.Slice(t * dim, dim));
        }
    }

    /// <summary>Backward of the embedding lookup: scatter-adds each row of <paramref name="dy"/> into its token's row, in position order.</summary>
    public static void EmbeddingBackward(ReadOnlySpan<float> dy, ReadOnlySpan<int> ids, Span<float> dTable, int dim)
    {
        for (var t = 0; t < ids.Length; t++)
        {
            var dst = dTable.Slice(ids[t] * dim, dim);
            TensorPrimitives.Add(dst, dy.Slice(t * dim, dim), dst);
        }
    }

    /// <summary>
    /// Fused cross-entropy and its gradient. Loss is <c>Σ_t w_t·(logsumexp(z_t) − z_t[y_t]) / Σ_t w_t</c>
    /// over positions whose weight <c>w_t</c> (the loss mask) is non-zero. When
    /// <paramref name="dLogits"/> is not empty it receives <c>gradScale · w_t/Σw · (softmax(z_t) − onehot(y_t))</c>
    /// (overwritten, zero where the mask is zero). Returns the mean loss (0 when the mask is empty).
    /// </summary>
    public static double CrossEntropy(ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, ReadOnlySpan<float> lossMask, int vocab, Span<float> dLogits, float gradScale = 1f)
    {
        var rows = CheckRows(logits.Length, vocab);
        if (targets.Length != rows || lossMask.Length != rows)
        {
            throw new ArgumentException("Cross-entropy targets and mask must have one entry per row.");
        }

        double total = 0;
        for (var t = 0; t < rows; t++)
        {
            total += lossMask[t];
        }

        var losses = new double[rows];
        var withGrad = !dLogits.IsEmpty;
        unsafe
        {
            fixed (float* pl = logits, pd = dLogits, pm = lossMask)
            fixed (int* py = targets)
            fixed (double* plo = losses)
            {
                var (lp, dp, mp, yp, lop) = ((nint)pl, (nint)pd, (nint)pm, (nint)py, (nint)plo);
                KernelParallelism.ForRange(rows, RowChunk(vocab, 4), (s, e) =>
                {
                    float[]? scratch = null;
                    for (var t = s; t < e; t++)
                    {
                        var w = ((float*)mp)[t];
                        var z = new ReadOnlySpan<float>((float*)lp + ((long)t * vocab), vocab);
                        var d = withGrad ? new Span<float>((float*)dp + ((long)t * vocab), vocab) : default;
                        if (w == 0)
                        {
                            d.Clear();
                            continue;
                        }

                        var y = ((int*)yp)[t];
                        if ((uint)y >= (uint)vocab)
                        {
                            throw new ArgumentOutOfRangeException(nameof(targets), $"Target {y} at position {t} is outside the vocabulary of {vocab}.");
                        }

                        // exp(z − max) once, vectorised, into the gradient row (or a scratch row). The
                        // gradient may alias the logits, so read everything needed from z first.
                        var zy = z[y];
                        var max = TensorPrimitives.Max(z);
                        var ex = withGrad ? d : (scratch ??= new float[vocab]);
                        TensorPrimitives.Subtract(z, max, ex);
                        TensorPrimitives.Exp(ex, ex);
                        var sum = Simd.Sum(ex);
                        var lse = max + Math.Log(sum);
                        ((double*)lop)[t] = w * (lse - zy);
                        if (withGrad)
                        {
                            var scale = gradScale * w / total;
                            TensorPrimitives.Multiply(d, (float)(scale / sum), d);
                            d[y] -= (float)scale;
                        }
                    }
                });
            }
        }

        if (total == 0)
        {
            return 0;
        }

        double loss = 0;
        for (var t = 0; t < rows; t++)
        {
            loss += losses[t];
        }

        return loss / total;
    }

    /// <summary><c>y[T×out] = x[T×in] · Wᵀ</c> (+ beta·y) with W stored [out×in], as in PyTorch's Linear.</summary>
    public static void LinearForward(ReadOnlySpan<float> x, ReadOnlySpan<float> weight, Span<float> y, int rows, int inFeatures, int outFeatures, float beta = 0f)
        => Sgemm.Multiply(false, true, rows, outFeatures, inFeatures, 1f, x, inFeatures, weight, inFeatures, beta, y, outFeatures);

    /// <summary>Backward of <see cref="LinearForward"/> for the input: <c>dx = dy · W</c> (+ beta·dx).</summary>
    public static void LinearBackwardInput(ReadOnlySpan<float> dy, ReadOnlySpan<float> weight, Span<float> dx, int rows, int inFeatures, int outFeatures, float beta = 0f)
        => Sgemm.Multiply(false, false, rows, inFeatures, outFeatures, 1f, dy, outFeatures, weight, inFeatures, beta, dx, inFeatures);

    /// <summary>Backward of <see cref="LinearForward"/> for the weight: <c>dW += alpha · dyᵀ · x</c>.</summary>
    public static void LinearBackwardWeight(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, Span<float> dWeight, int rows, int inFeatures, int outFeatures, float alpha = 1f)
        => Sgemm.Multiply(true, false, outFeatures, inFeatures, rows, alpha, dy, outFeatures, x, inFeatures, 1f, dWeight, inFeatures);

    private static double SumSquares(ReadOnlySpan<float> row)
    {
        // Float32 dot in SIMD lanes, then one double: deterministic for a given length and machine.
        return Simd.Dot(row, row);
    }

    private static int CheckRows(int length, int cols)
    {
        if (cols <= 0 || length % cols != 0)
        {
            throw new ArgumentException($"Length {length} is not a whole number of rows of {cols}.");
        }

        return length / cols;
    }
}
