using System.Diagnostics;
using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Atelier.Modeling.Kernels;

/// <summary>
/// Single-precision matrix multiply on row-major matrices:
/// <c>C[m×n] = alpha · op(A)[m×k] · op(B)[k×n] + beta · C</c>, where <c>op</c> optionally transposes.
/// </summary>
/// <remarks>
/// The layout follows BLIS/GotoBLAS: B is packed in KC×NC blocks (kept in L3), A in MC×KC blocks
/// (kept in L2), and a 12×32 register-blocked micro-kernel (24 ZMM accumulators fed by fused
/// multiply-adds) streams a KC×32 sliver of B from L1. Work is split across threads by blocks of C
/// only; each element of C is always accumulated over k in the same order, in the same micro-kernel,
/// with the same KC blocking, so the result is bit-identical for any thread count.
/// </remarks>
public static unsafe partial class Sgemm
{
    /// <summary>Rows of C computed by one micro-kernel call.</summary>
    internal const int MR = 12;

    /// <summary>Columns of C computed by one micro-kernel call (two 512-bit vectors).</summary>
    internal const int NR = 32;

    // 512 rows of k a block, not 256: half the C-tile reloads and micro-kernel calls, and a bf16 block of W still fits L1
    // (32 KiB). Alternating runs on the 2-core machine (2026-12-07 20:10-20:13 UTC): SGEMM 2048² 332-339 -> 365 GFLOP/s,
    // a 512-row prefill product 317-323 -> 356-362, a 32-row decode product 367-372 -> 386-391. Every path blocks k
    // the same way, so batch invariance holds; the bits differ from those of 256-row blocks.
    private const int KC = 512;
    private const int MC = 144;
    private const int NC = 4096;

    // Below this many multiply-adds, the fork/join of a parallel loop costs more than it saves.
    private const long ParallelThreshold = 64L * 64 * 64;

    // Below this many floats in a block of B, packing it on one thread beats handing slivers to others.
    private const long ParallelPackFloats = 64L * 1024;

    [ThreadStatic]
    private static float* _threadAPack;

    [ThreadStatic]
    private static float* _threadBPack;

    [ThreadStatic]
    private static nuint _threadBPackLength;

    // How far ahead in a B sliver the few-row kernel prefetches: a one-row product does two FMAs per k row, too
    // little work for the hardware prefetcher alone to keep the stream at the memory's rate. 256 bytes measured
    // best of 0/256/1024/4096 (GemvBench: ~31-34 GB/s without, ~41-46 with, on the shared 2-core machine).
    private const int PrefetchBytes = 256;

    /// <summary>Forces the 256-bit micro-kernel (for tests of the fallback path).</summary>
    internal static bool ForceVector256 { get; set; }

    /// <summary>
    /// Computes <c>C = alpha · op(A) · op(B) + beta · C</c>. When <paramref name="beta"/> is zero, C is
    /// not read (it may hold anything, NaN included).
    /// </summary>
    /// <param name="transA">Whether A is stored as k×m (so op(A) = Aᵀ).</param>
    /// <param name="transB">Whether B is stored as n×k (so op(B) = Bᵀ).</param>
    /// <param name="m">Rows of C.</param>
    /// <param name="n">Columns of C.</param>
    /// <param name="k">The shared dimension.</param>
    /// <param name="alpha">Scale of the product.</param>
    /// <param name="a">A, row-major with leading dimension <paramref name="lda"/>.</param>
    /// <param name="lda">Distance between rows of A as stored.</param>
    /// <param name="b">B, row-major with leading dimension <paramref name="ldb"/>.</param>
    /// <param name="ldb">Distance between rows of B as stored.</param>
    /// <param name="beta">Scale of the existing C.</param>
    /// <param name="c">C, row-major with leading dimension <paramref name="ldc"/>.</param>
    /// <param name="ldc">Distance between rows of C.</param>
    public static void Multiply(
        bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        float beta, Span<float> c, int ldc)
        => Multiply(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, allowParallel: true);

    /// <summary>
    /// As the public overload; with <paramref name="allowParallel"/> false it runs on the calling thread
    /// only, for callers that are themselves parallel tasks (nested fork/join would oversubscribe the cores,
    /// and a waiting caller must not share its packing buffers). The result is the same bits either way.
    /// </summary>
    internal static void Multiply(
        bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        float beta, Span<float> c, int ldc, bool allowParallel)
    {
        if (!CheckProduct(transA, transB, m, n, k, a, lda, b, ldb, c, ldc))
        {
            return;
        }

        fixed (float* pa = a, pb = b, pc = c)
        {
            if (k == 0 || alpha == 0)
            {
                ScaleC(pc, m, n, ldc, beta);
                return;
            }

            if (m == 1)
            {
                Gemv(transA, transB, n, k, alpha, pa, lda, pb, ldb, beta, pc, allowParallel);
                return;
            }

            Blocked(transA, transB, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc, allowParallel);
        }
    }

    /// <summary>
    /// As <see cref="Multiply(bool, bool, int, int, int, float, ReadOnlySpan{float}, int, ReadOnlySpan{float}, int, float, Span{float}, int)"/>,
    /// but every row of C comes out bit-identical whatever <paramref name="m"/> is: one row goes through
    /// the blocked micro-kernel as well, instead of the dot-product GEMV that <c>Multiply</c> uses for a
    /// single row (whose summation order differs). A serving engine needs this so that a sequence's
    /// logits do not depend on how many other sequences share its batch.
    /// </summary>
    /// <remarks>
    /// Each element of C is accumulated over k in KC-sized blocks, in order, by one lane of one
    /// micro-kernel; the blocks depend on k and n only, and work is split by blocks of C, so neither the
    /// row count, the row's place in the batch nor the thread count changes a bit. It costs a packing of
    /// op(B) even for one row, which the GEMV avoids.
    /// </remarks>
    public static void MultiplyBatchInvariant(
        bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb,
        float beta, Span<float> c, int ldc)
    {
        if (!CheckProduct(transA, transB, m, n, k, a, lda, b, ldb, c, ldc))
        {
            return;
        }

        fixed (float* pa = a, pb = b, pc = c)
        {
            if (k == 0 || alpha == 0)
            {
                ScaleC(pc, m, n, ldc, beta);
                return;
            }

            Blocked(transA, transB, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc, allowParallel: true);
        }
    }

    /// <summary>Checks a product's dimensions and operands; false when C is empty and there is nothing to do.</summary>
    private static bool CheckProduct(
        bool transA, bool transB, int m, int n, int k,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, Span<float> c, int ldc)
    {
        if (m < 0 || n < 0 || k < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(m), "Matrix dimensions must not be negative.");
        }

        if (m == 0 || n == 0)
        {
            return false;
        }

        CheckOperand(a, transA ? k : m, transA ? m : k, lda, nameof(a));
        CheckOperand(b, transB ? n : k, transB ? k : n, ldb, nameof(b));
        CheckOperand(c, m, n, ldc, nameof(c));
        return true;
    }

    /// <summary>
    /// <c>C = alpha · A · Wᵀ + beta · C</c> with W packed once (<see cref="PackedMatrix"/>): the same bits as
    /// <see cref="MultiplyBatchInvariant(bool, bool, int, int, int, float, ReadOnlySpan{float}, int, ReadOnlySpan{float}, int, float, Span{float}, int)"/>
    /// on the unpacked W, without re-packing W on every call (which dominates a few-row product).
    /// </summary>
    public static void MultiplyBatchInvariant(int m, float alpha, ReadOnlySpan<float> a, int lda, PackedMatrix w, float beta, Span<float> c, int ldc)
    {
        ArgumentNullException.ThrowIfNull(w);
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        var n = w.Rows;
        var k = w.Columns;
        if (m == 0)
        {
            return;
        }

        CheckOperand(a, m, k, lda, nameof(a));
        CheckOperand(c, m, n, ldc, nameof(c));
        var bf16 = w.ElementType == PackedElementType.BFloat16;
        fixed (float* pa = a, pc = c)
        {
            if (m <= PanelOuterMaxRows)
            {
                PanelOuter(m, n, k, alpha, pa, lda, w.Data, bf16, beta, pc, ldc);
            }
            else
            {
                Blocked(false, true, m, n, k, alpha, pa, lda, null, k, beta, pc, ldc, allowParallel: true, w.Data, bf16);
            }
        }

        GC.KeepAlive(w);
    }

    /// <summary>
    /// Packs the row-major [n × k] matrix <paramref name="w"/> (used transposed) sliver by sliver: sliver s holds
    /// columns [32s, 32s+32) of op(W) for every k, row p at <c>(s·k + p)·32</c>, zero-padded past n.
    /// </summary>
    internal static void PackAll(float* w, int n, int k, float* dst)
    {
        var args = (w: (nint)w, n, k, dst: (nint)dst);
        KernelParallelism.For((n + NR - 1) / NR, s =>
            PackB(true, (float*)args.w, args.k, 0, s * NR, args.k, Math.Min(NR, args.n - (s * NR)), (float*)args.dst + ((long)s * args.k * NR)));
    }

    /// <summary>Floats a packed [n × k] matrix takes: columns rounded up to whole slivers.</summary>
    internal static long PackedLength(int n, int k) => (long)RoundUp(n, NR) * k;

    /// <summary><c>C[m×n] = A[m×k] · B[k×n]</c> on contiguous matrices.</summary>
    public static void MatMul(ReadOnlySpan<float> a, ReadOnlySpan<float> b, Span<float> c, int m, int n, int k)
        => Multiply(false, false, m, n, k, 1f, a, k, b, n, 0f, c, n);

    private static void CheckOperand(ReadOnlySpan<float> x, int rows, int cols, int ld, string name)
    {
        if (ld < cols)
        {
            throw new ArgumentException($"Leading dimension {ld} is smaller than the row length {cols}.", name);
        }

        if (rows > 0 && cols > 0 && (long)(rows - 1) * ld + cols > x.Length)
        {
            throw new ArgumentException($"Matrix of {rows}×{cols} (leading dimension {ld}) does not fit in {x.Length} elements.", name);
        }
    }

    private static void ScaleC(float* c, int m, int n, int ldc, float beta)
    {
        for (var i = 0; i < m; i++)
        {
            var row = new Span<float>(c + (long)i * ldc, n);
            if (beta == 0)
            {
                row.Clear();
            }
            else if (beta != 1)
            {
                TensorPrimitives.Multiply(row, beta, row);
            }
        }
    }

    private static void Gemv(bool transA, bool transB, int n, int k, float alpha, float* a, int lda, float* b, int ldb, float beta, float* c, bool allowParallel)
    {
        // One row of A; gather it when it is a column of the stored matrix.
        float[]? gathered = null;
        var x = a;
        if (transA && k > 1)
        {
            gathered = new float[k];
            for (var p = 0; p < k; p++)
            {
                gathered[p] = a[(long)p * lda];
            }
        }

        fixed (float* g = gathered)
        {
            var xp = (nint)(gathered is null ? x : g);
            var bp = (nint)b;
            var cp = (nint)c;
            var parallel = allowParallel && (long)n * k >= ParallelThreshold;
            if (transB)
            {
                // c[j] = alpha · dot(x, B[j, :]): rows of B are contiguous.
                void Rows(int start, int end)
                {
                    var xs = new ReadOnlySpan<float>((float*)xp, k);
                    for (var j = start; j < end; j++)
                    {
                        var dot = Simd.Dot(xs, new ReadOnlySpan<float>((float*)bp + ((long)j * ldb), k));
                        var prev = beta == 0 ? 0 : beta * ((float*)cp)[j];
                        ((float*)cp)[j] = (alpha * dot) + prev;
                    }
                }

                if (parallel)
                {
                    KernelParallelism.ForRange(n, 64, Rows);
                }
                else
                {
                    Rows(0, n);
                }
            }
            else
            {
                // c = alpha · Σ_p x[p] · B[p, :], accumulated in p order per column chunk.
                void Columns(int start, int end)
                {
                    var len = end - start;
                    var acc = new float[len];
                    for (var p = 0; p < k; p++)
                    {
                        var row = new ReadOnlySpan<float>((float*)bp + ((long)p * ldb) + start, len);
                        Simd.Axpy(((float*)xp)[p], row, acc);
                    }

                    var dst = new Span<float>((float*)cp + start, len);
                    for (var j = 0; j < len; j++)
                    {
                        dst[j] = (alpha * acc[j]) + (beta == 0 ? 0 : beta * dst[j]);
                    }
                }

                if (parallel)
                {
                    KernelParallelism.ForRange(n, 256, Columns);
                }
                else
                {
                    Columns(0, n);
                }
            }
        }
    }

    private static void Blocked(bool transA, bool transB, int m, int n, int k, float alpha, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc, bool allowParallel, byte* prepacked = null, bool bf16 = false)
    {
        var threads = allowParallel && (long)m * n * k >= ParallelThreshold ? KernelParallelism.MaxThreads : 1;
        var bPack = prepacked != null ? null : EnsureBPack((nuint)Math.Min(KC, k) * (nuint)RoundUp(Math.Min(NC, n), NR));
        var use512 = Vector512.IsHardwareAccelerated && !ForceVector256;
        var elementBytes = bf16 ? sizeof(ushort) : sizeof(float);

        for (var jc = 0; jc < n; jc += NC)
        {
            var nc = Math.Min(NC, n - jc);
            var panels = (nc + NR - 1) / NR;
            for (var pc = 0; pc < k; pc += KC)
            {
                var kc = Math.Min(KC, k - pc);
                var betaEff = pc == 0 ? beta : 1f;
                byte* bBase;
                long sliverBytes;
                if (prepacked != null)
                {
                    // Packed once by PackedMatrix: sliver s holds its 32 columns for all of k, row p at (s·k + p)·NR.
                    bBase = prepacked + ((((long)(jc / NR) * k) + pc) * NR * elementBytes);
                    sliverBytes = (long)k * NR * elementBytes;
                }
                else
                {
                    bBase = (byte*)bPack;
                    sliverBytes = (long)kc * NR * sizeof(float);

                    // Pack the KC×NC block of op(B) into NR-wide slivers.
                    var packArgs = (b: (nint)b, bPack: (nint)bPack, ldb, pc, jc, kc, nc, transB);
                    // A small block packs in less time than a fork/join takes.
                    if (threads > 1 && panels > 1 && (long)kc * nc >= ParallelPackFloats)
                    {
                        KernelParallelism.Run(panels, threads, p =>
                            PackB(packArgs.transB, (float*)packArgs.b, packArgs.ldb, packArgs.pc, packArgs.jc + (p * NR), packArgs.kc,
                                Math.Min(NR, packArgs.nc - (p * NR)), (float*)packArgs.bPack + ((long)p * NR * packArgs.kc)));
                    }
                    else
                    {
                        for (var p = 0; p < panels; p++)
                        {
                            PackB(transB, b, ldb, pc, jc + (p * NR), kc, Math.Min(NR, nc - (p * NR)), bPack + ((long)p * NR * kc));
                        }
                    }
                }

                // Tasks are (block of up to MC rows) × (range of B slivers). With few rows, split columns too. The
                // rows are shared evenly between the blocks (whole tiles each): 512 prompt rows as 4 × 128 rather than
                // 3 × 144 + 80, which left one of two threads a fifth idle. Which rows share a block changes no bit.
                var mBlocks = (m + MC - 1) / MC;
                var mcEven = RoundUp((m + mBlocks - 1) / mBlocks, MR);
                mBlocks = (m + mcEven - 1) / mcEven;
                var nSplits = threads == 1 ? 1 : Math.Clamp(((2 * threads) + mBlocks - 1) / mBlocks, 1, panels);
                var tasks = mBlocks * nSplits;
                var args = (a: (nint)a, lda, transA, c: (nint)c, ldc, bBase: (nint)bBase, sliverBytes, jc, pc, kc, nc, panels, nSplits, alpha, betaEff, m, use512, bf16, mcEven);

                void RunTask(int t)
                {
                    var ib = t / args.nSplits;
                    var js = t % args.nSplits;
                    var ic = ib * args.mcEven;
                    var mc = Math.Min(args.mcEven, args.m - ic);
                    var p0 = (int)((long)args.panels * js / args.nSplits);
                    var p1 = (int)((long)args.panels * (js + 1) / args.nSplits);
                    if (p0 == p1)
                    {
                        return;
                    }

                    var aPack = EnsureAPack();
                    var tile = aPack + (MC * KC);
                    PackA(args.transA, (float*)args.a, args.lda, ic, args.pc, mc, args.kc, aPack);
                    for (var p = p0; p < p1; p++)
                    {
                        var nr = Math.Min(NR, args.nc - (p * NR));
                        var bSliver = (byte*)args.bBase + (p * args.sliverBytes);

                        // As in the panel-outer loop: the last tile's call fetches the next sliver's block while it computes.
                        var next = p + 1 < p1 ? bSliver + args.sliverBytes : null;
                        for (var ir = 0; ir < mc; ir += MR)
                        {
                            var mr = Math.Min(MR, mc - ir);
                            var cTile = (float*)args.c + ((long)(ic + ir) * args.ldc) + args.jc + (p * NR);
                            MicroKernel(args.use512, args.bf16, args.kc, aPack + ((long)ir * args.kc), bSliver, cTile, args.ldc, mr, nr, args.alpha, args.betaEff, tile, ir + MR >= mc ? next : null);
                        }
                    }
                }

                if (threads > 1 && tasks > 1)
                {
                    KernelParallelism.Run(tasks, threads, RunTask);
                }
                else
                {
                    for (var t = 0; t < tasks; t++)
                    {
                        RunTask(t);
                    }
                }
            }
        }
    }

    /// <summary>
    /// Runs the micro-kernel that fits the machine, the tile's row count and the sliver's element type. The multi-row
    /// 512-bit kernels also ask for one row of <paramref name="prefetch"/> (a block of B read next) per k row into L2.
    /// </summary>
    private static void MicroKernel(bool use512, bool bf16, int kc, float* a, byte* b, float* c, int ldc, int mr, int nr, float alpha, float beta, float* tile, byte* prefetch = null)
    {
        if (bf16)
        {
            MicroKernel<BFloat16Sliver>(use512, kc, a, b, c, ldc, mr, nr, alpha, beta, tile, prefetch);
        }
        else
        {
            MicroKernel<Float32Sliver>(use512, kc, a, b, c, ldc, mr, nr, alpha, beta, tile, prefetch);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void MicroKernel<TB>(bool use512, int kc, float* a, byte* b, float* c, int ldc, int mr, int nr, float alpha, float beta, float* tile, byte* prefetch)
        where TB : struct, ISliverElement
    {
        // No block to fetch ahead: touch the one being read, whose lines are already in cache.
        prefetch = prefetch == null ? b : prefetch;
        if (use512 && mr <= 4)
        {
            Kernel512Few<TB>(kc, a, b, c, ldc, mr, nr, alpha, beta, tile);
        }
        else if (use512 && mr <= 8)
        {
            Kernel512<TB, EightRows>(kc, a, b, c, ldc, mr, nr, alpha, beta, tile, prefetch);
        }
        else if (use512)
        {
            Kernel512<TB, TwelveRows>(kc, a, b, c, ldc, mr, nr, alpha, beta, tile, prefetch);
        }
        else if (mr <= 4)
        {
            Kernel256Few<TB>(kc, a, b, c, ldc, mr, nr, alpha, beta, tile);
        }
        else
        {
            Kernel256<TB>(kc, a, b, c, ldc, mr, nr, alpha, beta, tile);
        }
    }

    private static int RoundUp(int x, int multiple) => (x + multiple - 1) / multiple * multiple;

    private static float* EnsureAPack()
    {
        if (_threadAPack == null)
        {
            // Lives for the thread's lifetime: the pool threads that run kernels are few and reused.
            // It also holds the micro-kernel's spill tile for edge blocks: a stackalloc there would give
            // the kernel a GS cookie, and without dynamic PGO the JIT then writes every accumulator
            // through to the stack on each FMA (a 3-4x slowdown, seen with tiering disabled).
            _threadAPack = (float*)NativeMemory.AlignedAlloc((nuint)(((MC * KC) + (MR * NR)) * sizeof(float)), 64);
        }

        return _threadAPack;
    }

    private static float* EnsureBPack(nuint floats)
    {
        if (_threadBPackLength < floats)
        {
            if (_threadBPack != null)
            {
                NativeMemory.AlignedFree(_threadBPack);
            }

            _threadBPack = (float*)NativeMemory.AlignedAlloc(floats * sizeof(float), 64);
            _threadBPackLength = floats;
        }

        return _threadBPack;
    }

    /// <summary>Packs rows [ic, ic+mc) × k-range [pc, pc+kc) of op(A) into MR-row slivers, zero-padded.</summary>
    private static void PackA(bool transA, float* a, int lda, int ic, int pc, int mc, int kc, float* dst)
    {
        for (var ir = 0; ir < mc; ir += MR)
        {
            var mr = Math.Min(MR, mc - ir);
            var sliver = dst + ((long)ir * kc);
            if (transA)
            {
                // op(A)(i, p) = A[p, i]: the MR values for one p are contiguous.
                for (var p = 0; p < kc; p++)
                {
                    var src = a + ((long)(pc + p) * lda) + ic + ir;
                    var d = sliver + (p * MR);
                    for (var r = 0; r < MR; r++)
                    {
                        d[r] = r < mr ? src[r] : 0f;
                    }
                }
            }
            else if (mr == MR && Avx.IsSupported)
            {
                // A full sliver is a transpose of 12 rows × kc: 8×8 and 4×4 register transposes for whole
                // blocks of 8 columns, the scalar loop for the rest. Moves only, so the same bits as the loop.
                var src = a + ((long)(ic + ir) * lda) + pc;
                var p = 0;
                for (; p + 8 <= kc; p += 8)
                {
                    Transpose8x8(src + p, lda, sliver + (p * MR), MR);
                    Transpose4x4(src + (8L * lda) + p, lda, sliver + (p * MR) + 8, MR);
                    Transpose4x4(src + (8L * lda) + p + 4, lda, sliver + ((p + 4) * MR) + 8, MR);
                }

                for (; p < kc; p++)
                {
                    for (var r = 0; r < MR; r++)
                    {
                        sliver[(p * MR) + r] = src[((long)r * lda) + p];
                    }
                }
            }
            else if (mr == 8 && Avx.IsSupported)
            {
                // The last sliver of a 32-row decode batch (rows 24-31): the same 8×8 transposes for its rows, zeros
                // in lanes 8-11. Moves only, so the same bits as the loop below.
                var src = a + ((long)(ic + ir) * lda) + pc;
                var p = 0;
                for (; p + 8 <= kc; p += 8)
                {
                    Transpose8x8(src + p, lda, sliver + (p * MR), MR);
                    for (var q = p; q < p + 8; q++)
                    {
                        Vector128<float>.Zero.Store(sliver + (q * MR) + 8);
                    }
                }

                for (; p < kc; p++)
                {
                    for (var r = 0; r < MR; r++)
                    {
                        sliver[(p * MR) + r] = r < 8 ? src[((long)r * lda) + p] : 0f;
                    }
                }
            }
            else
            {
                for (var r = 0; r < MR; r++)
                {
                    if (r < mr)
                    {
                        var src = a + ((long)(ic + ir + r) * lda) + pc;
                        for (var p = 0; p < kc; p++)
                        {
                            sliver[(p * MR) + r] = src[p];
                        }
                    }
                    else
                    {
                        for (var p = 0; p < kc; p++)
                        {
                            sliver[(p * MR) + r] = 0f;
                        }
                    }
                }
            }
        }
    }

    /// <summary>Packs k-range [pc, pc+kc) × columns [j0, j0+nr) of op(B) into one NR-wide sliver, zero-padded.</summary>
    private static void PackB(bool transB, float* b, int ldb, int pc, int j0, int kc, int nr, float* dst)
    {
        if (!transB)
        {
            for (var p = 0; p < kc; p++)
            {
                var src = b + ((long)(pc + p) * ldb) + j0;
                var d = dst + (p * NR);
                if (nr == NR)
                {
                    Vector512.Store(Vector512.Load(src), d);
                    Vector512.Store(Vector512.Load(src + 16), d + 16);
                }
                else
                {
                    for (var j = 0; j < NR; j++)
                    {
                        d[j] = j < nr ? src[j] : 0f;
                    }
                }
            }
        }
        else if (nr == NR && Avx.IsSupported)
        {
            // A full sliver is a transpose of 32 rows of B × kc: four 8×8 register transposes per block of
            // 8 columns, the scalar loop for the rest. Moves only, so the same bits as the loop below.
            var src = b + ((long)j0 * ldb) + pc;
            var p = 0;
            for (; p + 8 <= kc; p += 8)
            {
                for (var g = 0; g < NR; g += 8)
                {
                    Transpose8x8(src + ((long)g * ldb) + p, ldb, dst + (p * NR) + g, NR);
                }
            }

            for (; p < kc; p++)
            {
                for (var j = 0; j < NR; j++)
                {
                    dst[(p * NR) + j] = src[((long)j * ldb) + p];
                }
            }
        }
        else
        {
            // op(B)(p, j) = B[j, p]: read rows of B contiguously, write with stride NR.
            for (var j = 0; j < NR; j++)
            {
                if (j < nr)
                {
                    var src = b + ((long)(j0 + j) * ldb) + pc;
                    for (var p = 0; p < kc; p++)
                    {
                        dst[(p * NR) + j] = src[p];
                    }
                }
                else
                {
                    for (var p = 0; p < kc; p++)
                    {
                        dst[(p * NR) + j] = 0f;
                    }
                }
            }
        }
    }

    /// <summary>Writes the transpose of the 8×8 block at <paramref name="src"/> (row stride <paramref name="lds"/>) to <paramref name="dst"/> (row stride <paramref name="ldd"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose8x8(float* src, long lds, float* dst, long ldd)
    {
        var r0 = Avx.LoadVector256(src);
        var r1 = Avx.LoadVector256(src + lds);
        var r2 = Avx.LoadVector256(src + (2 * lds));
        var r3 = Avx.LoadVector256(src + (3 * lds));
        var r4 = Avx.LoadVector256(src + (4 * lds));
        var r5 = Avx.LoadVector256(src + (5 * lds));
        var r6 = Avx.LoadVector256(src + (6 * lds));
        var r7 = Avx.LoadVector256(src + (7 * lds));

        // Interleave pairs of rows, then pairs of pairs, then swap 128-bit halves.
        var t0 = Avx.UnpackLow(r0, r1);
        var t1 = Avx.UnpackHigh(r0, r1);
        var t2 = Avx.UnpackLow(r2, r3);
        var t3 = Avx.UnpackHigh(r2, r3);
        var t4 = Avx.UnpackLow(r4, r5);
        var t5 = Avx.UnpackHigh(r4, r5);
        var t6 = Avx.UnpackLow(r6, r7);
        var t7 = Avx.UnpackHigh(r6, r7);
        var u0 = Avx.Shuffle(t0, t2, 0x44);
        var u1 = Avx.Shuffle(t0, t2, 0xEE);
        var u2 = Avx.Shuffle(t1, t3, 0x44);
        var u3 = Avx.Shuffle(t1, t3, 0xEE);
        var u4 = Avx.Shuffle(t4, t6, 0x44);
        var u5 = Avx.Shuffle(t4, t6, 0xEE);
        var u6 = Avx.Shuffle(t5, t7, 0x44);
        var u7 = Avx.Shuffle(t5, t7, 0xEE);
        Avx.Store(dst, Avx.Permute2x128(u0, u4, 0x20));
        Avx.Store(dst + ldd, Avx.Permute2x128(u1, u5, 0x20));
        Avx.Store(dst + (2 * ldd), Avx.Permute2x128(u2, u6, 0x20));
        Avx.Store(dst + (3 * ldd), Avx.Permute2x128(u3, u7, 0x20));
        Avx.Store(dst + (4 * ldd), Avx.Permute2x128(u0, u4, 0x31));
        Avx.Store(dst + (5 * ldd), Avx.Permute2x128(u1, u5, 0x31));
        Avx.Store(dst + (6 * ldd), Avx.Permute2x128(u2, u6, 0x31));
        Avx.Store(dst + (7 * ldd), Avx.Permute2x128(u3, u7, 0x31));
    }

    /// <summary>Writes the transpose of the 4×4 block at <paramref name="src"/> (row stride <paramref name="lds"/>) to <paramref name="dst"/> (row stride <paramref name="ldd"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Transpose4x4(float* src, long lds, float* dst, long ldd)
    {
        var r0 = Sse.LoadVector128(src);
        var r1 = Sse.LoadVector128(src + lds);
        var r2 = Sse.LoadVector128(src + (2 * lds));
        var r3 = Sse.LoadVector128(src + (3 * lds));
        var t0 = Sse.UnpackLow(r0, r1);
        var t1 = Sse.UnpackLow(r2, r3);
        var t2 = Sse.UnpackHigh(r0, r1);
        var t3 = Sse.UnpackHigh(r2, r3);
        Sse.Store(dst, Sse.MoveLowToHigh(t0, t1));
        Sse.Store(dst + ldd, Sse.MoveHighToLow(t1, t0));
        Sse.Store(dst + (2 * ldd), Sse.MoveLowToHigh(t2, t3));
        Sse.Store(dst + (3 * ldd), Sse.MoveHighToLow(t3, t2));
    }

    /// <summary>
    /// The 12×32 AVX-512 micro-kernel: 24 accumulators, two B loads and 12 broadcasts per k. Instantiated with
    /// <see cref="EightRows"/> for edge tiles of five to eight rows (the last rows of a 32-row decode batch: 12 + 12 + 8),
    /// it skips the four zero-padded rows, a ninth of such a product's multiply-adds; each lane accumulates and is
    /// stored as in the twelve-row instance, so the bits are the same.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel512<TB, TRows>(int kc, float* a, byte* b, float* c, int ldc, int mr, int nr, float alpha, float beta, float* tile, byte* prefetch)
        where TB : struct, ISliverElement
        where TRows : struct, ITileRows
    {
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector512<float> c20 = default, c21 = default, c30 = default, c31 = default;
        Vector512<float> c40 = default, c41 = default, c50 = default, c51 = default;
        Vector512<float> c60 = default, c61 = default, c70 = default, c71 = default;
        Vector512<float> c80 = default, c81 = default, c90 = default, c91 = default;
        Vector512<float> c100 = default, c101 = default, c110 = default, c111 = default;

        for (var p = 0; p < kc; p++)
        {
            Sse.Prefetch1(prefetch);
            if (TB.RowBytes > 64)
            {
                Sse.Prefetch1(prefetch + 64);
            }

            prefetch += TB.RowBytes;
            TB.Load512(b, out var b0, out var b1);
            var av = Vector512.Create(a[0]);
            c00 = Vector512.FusedMultiplyAdd(av, b0, c00);
            c01 = Vector512.FusedMultiplyAdd(av, b1, c01);
            av = Vector512.Create(a[1]);
            c10 = Vector512.FusedMultiplyAdd(av, b0, c10);
            c11 = Vector512.FusedMultiplyAdd(av, b1, c11);
            av = Vector512.Create(a[2]);
            c20 = Vector512.FusedMultiplyAdd(av, b0, c20);
            c21 = Vector512.FusedMultiplyAdd(av, b1, c21);
            av = Vector512.Create(a[3]);
            c30 = Vector512.FusedMultiplyAdd(av, b0, c30);
            c31 = Vector512.FusedMultiplyAdd(av, b1, c31);
            av = Vector512.Create(a[4]);
            c40 = Vector512.FusedMultiplyAdd(av, b0, c40);
            c41 = Vector512.FusedMultiplyAdd(av, b1, c41);
            av = Vector512.Create(a[5]);
            c50 = Vector512.FusedMultiplyAdd(av, b0, c50);
            c51 = Vector512.FusedMultiplyAdd(av, b1, c51);
            av = Vector512.Create(a[6]);
            c60 = Vector512.FusedMultiplyAdd(av, b0, c60);
            c61 = Vector512.FusedMultiplyAdd(av, b1, c61);
            av = Vector512.Create(a[7]);
            c70 = Vector512.FusedMultiplyAdd(av, b0, c70);
            c71 = Vector512.FusedMultiplyAdd(av, b1, c71);
            if (TRows.Twelve)
            {
                av = Vector512.Create(a[8]);
                c80 = Vector512.FusedMultiplyAdd(av, b0, c80);
                c81 = Vector512.FusedMultiplyAdd(av, b1, c81);
                av = Vector512.Create(a[9]);
                c90 = Vector512.FusedMultiplyAdd(av, b0, c90);
                c91 = Vector512.FusedMultiplyAdd(av, b1, c91);
                av = Vector512.Create(a[10]);
                c100 = Vector512.FusedMultiplyAdd(av, b0, c100);
                c101 = Vector512.FusedMultiplyAdd(av, b1, c101);
                av = Vector512.Create(a[11]);
                c110 = Vector512.FusedMultiplyAdd(av, b0, c110);
                c111 = Vector512.FusedMultiplyAdd(av, b1, c111);
            }

            a += MR;
            b += TB.RowBytes;
        }

        if (TRows.Twelve && mr == MR && nr == NR)
        {
            var va = Vector512.Create(alpha);
            Store512(c, c00, c01, va, beta);
            Store512(c + ldc, c10, c11, va, beta);
            Store512(c + (2 * ldc), c20, c21, va, beta);
            Store512(c + (3 * ldc), c30, c31, va, beta);
            Store512(c + (4 * ldc), c40, c41, va, beta);
            Store512(c + (5 * ldc), c50, c51, va, beta);
            Store512(c + (6 * ldc), c60, c61, va, beta);
            Store512(c + (7 * ldc), c70, c71, va, beta);
            Store512(c + (8 * ldc), c80, c81, va, beta);
            Store512(c + (9 * ldc), c90, c91, va, beta);
            Store512(c + (10 * ldc), c100, c101, va, beta);
            Store512(c + (11 * ldc), c110, c111, va, beta);
            return;
        }

        c00.Store(tile + 0); c01.Store(tile + 16);
        c10.Store(tile + 32); c11.Store(tile + 48);
        c20.Store(tile + 64); c21.Store(tile + 80);
        c30.Store(tile + 96); c31.Store(tile + 112);
        c40.Store(tile + 128); c41.Store(tile + 144);
        c50.Store(tile + 160); c51.Store(tile + 176);
        c60.Store(tile + 192); c61.Store(tile + 208);
        c70.Store(tile + 224); c71.Store(tile + 240);
        if (TRows.Twelve)
        {
            c80.Store(tile + 256); c81.Store(tile + 272);
            c90.Store(tile + 288); c91.Store(tile + 304);
            c100.Store(tile + 320); c101.Store(tile + 336);
            c110.Store(tile + 352); c111.Store(tile + 368);
        }

        StorePartial(tile, c, ldc, mr, nr, alpha, beta);
    }

    /// <summary>
    /// The micro-kernel for an edge tile of at most four rows (a one-row product, or a batch's last
    /// rows). Each lane accumulates its element over k in the same order, from zero, with the same fused
    /// multiply-adds as <see cref="Kernel512"/>, and goes through the same partial-tile store, so the bits
    /// are those <see cref="Kernel512"/> would give; it skips the zero-padded rows, which for one row are
    /// eleven twelfths of the kernel's work.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel512Few<TB>(int kc, float* a, byte* b, float* c, int ldc, int mr, int nr, float alpha, float beta, float* tile)
        where TB : struct, ISliverElement
    {
        Debug.Assert(mr is >= 1 and <= 4);
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector512<float> c20 = default, c21 = default, c30 = default, c31 = default;
        if (mr == 1)
        {
            for (var p = 0; p < kc; p++)
            {
                Sse.Prefetch0(b + PrefetchBytes);

                TB.Load512(b, out var b0, out var b1);
                var av = Vector512.Create(a[0]);
                c00 = Vector512.FusedMultiplyAdd(av, b0, c00);
                c01 = Vector512.FusedMultiplyAdd(av, b1, c01);
                a += MR;
                b += TB.RowBytes;
            }
        }
        else
        {
            for (var p = 0; p < kc; p++)
            {
                Sse.Prefetch0(b + PrefetchBytes);
                TB.Load512(b, out var b0, out var b1);
                var av = Vector512.Create(a[0]);
                c00 = Vector512.FusedMultiplyAdd(av, b0, c00);
                c01 = Vector512.FusedMultiplyAdd(av, b1, c01);
                av = Vector512.Create(a[1]);
                c10 = Vector512.FusedMultiplyAdd(av, b0, c10);
                c11 = Vector512.FusedMultiplyAdd(av, b1, c11);
                av = Vector512.Create(a[2]);
                c20 = Vector512.FusedMultiplyAdd(av, b0, c20);
                c21 = Vector512.FusedMultiplyAdd(av, b1, c21);
                av = Vector512.Create(a[3]);
                c30 = Vector512.FusedMultiplyAdd(av, b0, c30);
                c31 = Vector512.FusedMultiplyAdd(av, b1, c31);
                a += MR;
                b += TB.RowBytes;
            }
        }

        c00.Store(tile + 0); c01.Store(tile + 16);
        c10.Store(tile + 32); c11.Store(tile + 48);
        c20.Store(tile + 64); c21.Store(tile + 80);
        c30.Store(tile + 96); c31.Store(tile + 112);
        StorePartial(tile, c, ldc, mr, nr, alpha, beta);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Store512(float* c, Vector512<float> lo, Vector512<float> hi, Vector512<float> alpha, float beta)
    {
        lo *= alpha;
        hi *= alpha;
        if (beta != 0)
        {
            var vb = Vector512.Create(beta);
            lo = Vector512.FusedMultiplyAdd(vb, Vector512.Load(c), lo);
            hi = Vector512.FusedMultiplyAdd(vb, Vector512.Load(c + 16), hi);
        }

        lo.Store(c);
        hi.Store(c + 16);
    }

    private static void StorePartial(float* tile, float* c, int ldc, int mr, int nr, float alpha, float beta)
    {
        for (var r = 0; r < mr; r++)
        {
            var dst = c + ((long)r * ldc);
            var src = tile + (r * NR);
            for (var j = 0; j < nr; j++)
            {
                var v = alpha * src[j];
                dst[j] = beta == 0 ? v : MathF.FusedMultiplyAdd(beta, dst[j], v);
            }
        }
    }

    /// <summary>
    /// The 256-bit micro-kernel for machines without AVX-512: same packed layout and the same per-element
    /// accumulation order, computed as four 12×8 passes so that the accumulators fit in 16 YMM registers.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel256<TB>(int kc, float* a, byte* b, float* c, int ldc, int mr, int nr, float alpha, float beta, float* tile)
        where TB : struct, ISliverElement
    {
        for (var g = 0; g < NR / 8; g++)
        {
            Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default, c4 = default, c5 = default, c6 = default, c7 = default, c8 = default, c9 = default, c10 = default, c11 = default;
            var pa = a;
            var pb = b + TB.Offset256(g);
            var high = g >= 2;
            for (var p = 0; p < kc; p++)
            {
                var bv = TB.Load256(pb, high);
                c0 = Vector256.FusedMultiplyAdd(Vector256.Create(pa[0]), bv, c0);
                c1 = Vector256.FusedMultiplyAdd(Vector256.Create(pa[1]), bv, c1);
                c2 = Vector256.FusedMultiplyAdd(Vector256.Create(pa[2]), bv, c2);
                c3 = Vector256.FusedMultiplyAdd(Vector256.Create(pa[3]), bv, c3);
                c4 = Vector256.FusedMultiplyAdd(Vector256.Create(pa[4]), bv, c4);
                c5 = Vector256.FusedMultiplyAdd(Vector256.Create(pa[5]), bv, c5);
                c6 = Vector256.FusedMultiplyAdd(Vector256.Create(pa[6]), bv, c6);
                c7 = Vector256.FusedMultiplyAdd(Vector256.Create(pa[7]), bv, c7);
                c8 = Vector256.FusedMultiplyAdd(Vector256.Create(pa[8]), bv, c8);
                c9 = Vector256.FusedMultiplyAdd(Vector256.Create(pa[9]), bv, c9);
                c10 = Vector256.FusedMultiplyAdd(Vector256.Create(pa[10]), bv, c10);
                c11 = Vector256.FusedMultiplyAdd(Vector256.Create(pa[11]), bv, c11);
                pa += MR;
                pb += TB.RowBytes;
            }

            var t = tile + (g * 8);
            c0.Store(t + (0 * NR));
            c1.Store(t + (1 * NR));
            c2.Store(t + (2 * NR));
            c3.Store(t + (3 * NR));
            c4.Store(t + (4 * NR));
            c5.Store(t + (5 * NR));
            c6.Store(t + (6 * NR));
            c7.Store(t + (7 * NR));
            c8.Store(t + (8 * NR));
            c9.Store(t + (9 * NR));
            c10.Store(t + (10 * NR));
            c11.Store(t + (11 * NR));
        }

        Debug.Assert(mr <= MR && nr <= NR);
        StorePartial(tile, c, ldc, mr, nr, alpha, beta);
    }

    /// <summary>
    /// <see cref="Kernel256{TB}"/> for an edge tile of at most four rows: the same per-element FMAs in the same
    /// order, so the same bits, without the eight zero-padded rows' work (eleven twelfths of it for one row).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel256Few<TB>(int kc, float* a, byte* b, float* c, int ldc, int mr, int nr, float alpha, float beta, float* tile)
        where TB : struct, ISliverElement
    {
        Debug.Assert(mr is >= 1 and <= 4);
        for (var g = 0; g < NR / 8; g++)
        {
            Vector256<float> c0 = default, c1 = default, c2 = default, c3 = default;
            var pa = a;
            var pb = b + TB.Offset256(g);
            var high = g >= 2;
            for (var p = 0; p < kc; p++)
            {
                var bv = TB.Load256(pb, high);
                c0 = Vector256.FusedMultiplyAdd(Vector256.Create(pa[0]), bv, c0);
                c1 = Vector256.FusedMultiplyAdd(Vector256.Create(pa[1]), bv, c1);
                c2 = Vector256.FusedMultiplyAdd(Vector256.Create(pa[2]), bv, c2);
                c3 = Vector256.FusedMultiplyAdd(Vector256.Create(pa[3]), bv, c3);
                pa += MR;
                pb += TB.RowBytes;
            }

            var t = tile + (g * 8);
            c0.Store(t + (0 * NR));
            c1.Store(t + (1 * NR));
            c2.Store(t + (2 * NR));
            c3.Store(t + (3 * NR));
        }

        StorePartial(tile, c, ldc, mr, nr, alpha, beta);
    }

    /// <summary>How many rows of a tile <see cref="Kernel512{TB, TRows}"/> computes: a type argument, so the JIT drops the unused rows' code.</summary>
    internal interface ITileRows
    {
        /// <summary>True for all twelve rows, false for the first eight.</summary>
        static abstract bool Twelve { get; }
    }

    /// <summary>All <see cref="MR"/> rows.</summary>
    internal readonly struct TwelveRows : ITileRows
    {
        public static bool Twelve => true;
    }

    /// <summary>The first eight rows, for edge tiles of five to eight.</summary>
    internal readonly struct EightRows : ITileRows
    {
        public static bool Twelve => false;
    }
}
