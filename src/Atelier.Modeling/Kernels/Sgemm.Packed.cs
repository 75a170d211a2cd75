using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Atelier.Modeling.Kernels;

/// <summary>Products with a weight packed once (<see cref="PackedMatrix"/>), in float32 or bf16.</summary>
public static unsafe partial class Sgemm
{
    [ThreadStatic]
    private static float* _threadAAll;

    [ThreadStatic]
    private static nuint _threadAAllLength;

    /// <summary>
    /// Products with at most this many rows run panel-outer (<see cref="PanelOuter"/>); more rows go through
    /// the blocked loop. Settable for the kernel micro-benchmark, which compares the two; both give the same bits.
    /// </summary>
    /// <remarks>
    /// 32: a batch-32 decode step's products ran 15-30% faster panel-outer than blocked at every ~100M and ~1B
    /// shape (GemvBench), float32 and bf16; larger row counts (prefill) were not measured and stay blocked.
    /// </remarks>
    internal static int PanelOuterMaxRows { get; set; } = 32;

    /// <summary>Packs the row-major [n × k] bf16 matrix <paramref name="w"/> in the layout of <see cref="PackAll"/>, two bytes a value.</summary>
    /// <remarks>
    /// Within a sliver's k row, the 32 values sit as 16 little-endian uint32 lanes, lane i holding column i in its
    /// low half and column i + 16 in its high half: the kernel widens a row with one load, a shift (columns
    /// 0-15) and a mask (columns 16-31), exactly, since bf16 is the upper half of a float32.
    /// </remarks>
    internal static void PackAllBFloat16(ushort* w, int n, int k, ushort* dst)
    {
        var args = (w: (nint)w, n, k, dst: (nint)dst);
        KernelParallelism.For((n + NR - 1) / NR, s =>
        {
            var sliver = (ushort*)args.dst + ((long)s * args.k * NR);
            for (var j = 0; j < NR; j++)
            {
                var column = (s * NR) + j;
                var slot = (2 * (j % 16)) + (j / 16);
                if (column < args.n)
                {
                    var src = (ushort*)args.w + ((long)column * args.k);
                    for (var p = 0; p < args.k; p++)
                    {
                        sliver[((long)p * NR) + slot] = src[p];
                    }
                }
                else
                {
                    for (var p = 0; p < args.k; p++)
                    {
                        sliver[((long)p * NR) + slot] = 0;
                    }
                }
            }
        });
    }

    /// <summary>
    /// <c>C = alpha · A · Wᵀ + beta · C</c> for up to a few dozen rows, with one fork/join per product: the slivers of W are
    /// split between the threads once, and each thread runs every KC block of its slivers in k order, streaming
    /// each sliver front to back. A is packed once for all of k before the fork, except one row on the 512-bit
    /// kernels, which read it in place.
    /// </summary>
    /// <remarks>
    /// Each element of C still sees its KC blocks in order, each accumulated from zero by the same micro-kernel
    /// with the same effective beta as in <see cref="Blocked"/>, so the bits are those of the blocked loop; only
    /// the loop order across elements differs (the blocked loop forks and joins once per KC block, about 230
    /// times per decoded token on a ~100M model).
    /// </remarks>
    private static void PanelOuter(int m, int n, int k, float alpha, float* a, int lda, byte* w, bool bf16, float beta, float* c, int ldc)
    {
        var use512 = Vector512.IsHardwareAccelerated && !ForceVector256;
        var mPad = RoundUp(m, MR);

        // One row on the 512-bit kernels reads A where it lies: its one-row kernels step through the row's k
        // values one by one, as they would through column 0 of a packed sliver, so the values and their order are
        // the same. Packing it cost more than the product: the row padded to MR rows of zeros, value by value,
        // 10-30 us a product against 25-65 us of streaming on a ~100M decode step.
        var oneRow = m == 1 && use512;
        var aAll = oneRow ? a : EnsureAAll((nuint)mPad * (nuint)k);
        for (var pc = 0; !oneRow && pc < k; pc += KC)
        {
            // Block pc holds its MR-row slivers of kc values at aAll + pc·mPad, as PackA lays out one block.
            PackA(false, a, lda, 0, pc, m, Math.Min(KC, k - pc), aAll + ((long)pc * mPad));
        }

        var slivers = (n + NR - 1) / NR;
        var threads = (long)m * n * k >= ParallelThreshold ? Math.Min(KernelParallelism.MaxThreads, slivers) : 1;
        var args = (a: (nint)aAll, mPad, m, n, k, w: (nint)w, bf16, c: (nint)c, ldc, alpha, beta, use512, slivers, threads, oneRow);

        void RunTask(int t)
        {
            var s0 = (int)((long)args.slivers * t / args.threads);
            var s1 = (int)((long)args.slivers * (t + 1) / args.threads);
            var tile = EnsureAPack() + (MC * KC);
            var elementBytes = args.bf16 ? sizeof(ushort) : sizeof(float);
            var s = s0;
            if (args.oneRow)
            {
                // One row: four slivers at a time, so that eight independent FMA chains hide each other's latency.
                for (; s + 4 <= s1; s += 4)
                {
                    var sliver = (byte*)args.w + ((long)s * args.k * NR * elementBytes);
                    var sliverBytes = (long)args.k * NR * elementBytes;
                    for (var pc = 0; pc < args.k; pc += KC)
                    {
                        var kc = Math.Min(KC, args.k - pc);
                        var betaEff = pc == 0 ? args.beta : 1f;
                        var bBlock = sliver + ((long)pc * NR * elementBytes);
                        var aBlock = (float*)args.a + pc;
                        var cTile = (float*)args.c + (s * NR);
                        var lastNr = Math.Min(NR, args.n - ((s + 3) * NR));
                        if (args.bf16)
                        {
                            Kernel512OneRowFour<BFloat16Sliver>(kc, aBlock, bBlock, sliverBytes, cTile, lastNr, args.alpha, betaEff, tile);
                        }
                        else
                        {
                            Kernel512OneRowFour<Float32Sliver>(kc, aBlock, bBlock, sliverBytes, cTile, lastNr, args.alpha, betaEff, tile);
                        }
                    }
                }
            }

            for (; s < s1; s++)
            {
                var nr = Math.Min(NR, args.n - (s * NR));
                var sliver = (byte*)args.w + ((long)s * args.k * NR * elementBytes);
                for (var pc = 0; pc < args.k; pc += KC)
                {
                    var kc = Math.Min(KC, args.k - pc);
                    var betaEff = pc == 0 ? args.beta : 1f;
                    var bBlock = sliver + ((long)pc * NR * elementBytes);
                    if (args.oneRow)
                    {
                        // A sliver left over after the groups of four; A is the row itself.
                        if (args.bf16)
                        {
                            Kernel512OneRow<BFloat16Sliver>(kc, (float*)args.a + pc, bBlock, (float*)args.c + (s * NR), nr, args.alpha, betaEff, tile);
                        }
                        else
                        {
                            Kernel512OneRow<Float32Sliver>(kc, (float*)args.a + pc, bBlock, (float*)args.c + (s * NR), nr, args.alpha, betaEff, tile);
                        }

                        continue;
                    }

                    var aBlock = (float*)args.a + ((long)pc * args.mPad);

                    // The first tile's call reads this block of W from memory; the later ones find it in cache, and
                    // without a prefetch the memory would sit idle through them and the next block's first call
                    // would wait on it again. So the last call fetches the next block (contiguous: the rest of this
                    // sliver, then the next one) into L2 while it computes. Alternating runs on the 2-core machine
                    // (2026-12-07): a 32 × 11264 × 2048 bf16 product streamed from memory went from 321 to 363 GFLOP/s
                    // on 2 threads, 167 to 188 on one. A prefetch reads nothing into any value: the bits are the same.
                    var next = bBlock + ((long)kc * NR * elementBytes);
                    var lastBlock = s == s1 - 1 && pc + KC >= args.k;
                    for (var ir = 0; ir < args.m; ir += MR)
                    {
                        var cTile = (float*)args.c + ((long)ir * args.ldc) + (s * NR);
                        var prefetch = !lastBlock && ir + MR >= args.m ? next : null;
                        MicroKernel(args.use512, args.bf16, kc, aBlock + ((long)ir * kc), bBlock, cTile, args.ldc, Math.Min(MR, args.m - ir), nr, args.alpha, betaEff, tile, prefetch);
                    }
                }
            }
        }

        if (threads > 1)
        {
            KernelParallelism.Run(threads, threads, RunTask);
        }
        else
        {
            RunTask(0);
        }
    }

    /// <summary>
    /// One row of A (its <paramref name="kc"/> values contiguous at <paramref name="a"/>) times four consecutive slivers of B (<paramref name="sliverBytes"/> apart): C's 128 elements
    /// from <paramref name="c"/>, the last sliver <paramref name="lastNr"/> wide. Each lane accumulates its element
    /// over k in order from zero with the same fused multiply-adds, and stores through the same partial-tile store,
    /// as <see cref="Kernel512Few{TB}"/> with one row, so the bits are the same; the four slivers only give the core
    /// eight independent FMA chains instead of two.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel512OneRowFour<TB>(int kc, float* a, byte* b, long sliverBytes, float* c, int lastNr, float alpha, float beta, float* tile)
        where TB : struct, ISliverElement
    {
        Vector512<float> c00 = default, c01 = default, c10 = default, c11 = default;
        Vector512<float> c20 = default, c21 = default, c30 = default, c31 = default;
        var b1p = b + sliverBytes;
        var b2p = b + (2 * sliverBytes);
        var b3p = b + (3 * sliverBytes);
        for (var p = 0; p < kc; p++)
        {
            Sse.Prefetch0(b + OneRowPrefetchBytes);
            Sse.Prefetch0(b1p + OneRowPrefetchBytes);
            Sse.Prefetch0(b2p + OneRowPrefetchBytes);
            Sse.Prefetch0(b3p + OneRowPrefetchBytes);
            var av = Vector512.Create(a[p]);
            TB.Load512(b, out var x0, out var x1);
            c00 = Vector512.FusedMultiplyAdd(av, x0, c00);
            c01 = Vector512.FusedMultiplyAdd(av, x1, c01);
            TB.Load512(b1p, out x0, out x1);
            c10 = Vector512.FusedMultiplyAdd(av, x0, c10);
            c11 = Vector512.FusedMultiplyAdd(av, x1, c11);
            TB.Load512(b2p, out x0, out x1);
            c20 = Vector512.FusedMultiplyAdd(av, x0, c20);
            c21 = Vector512.FusedMultiplyAdd(av, x1, c21);
            TB.Load512(b3p, out x0, out x1);
            c30 = Vector512.FusedMultiplyAdd(av, x0, c30);
            c31 = Vector512.FusedMultiplyAdd(av, x1, c31);
            b += TB.RowBytes;
            b1p += TB.RowBytes;
            b2p += TB.RowBytes;
            b3p += TB.RowBytes;
        }

        c00.Store(tile + 0); c01.Store(tile + 16);
        c10.Store(tile + 32); c11.Store(tile + 48);
        c20.Store(tile + 64); c21.Store(tile + 80);
        c30.Store(tile + 96); c31.Store(tile + 112);
        StorePartial(tile, c, 0, 1, NR, alpha, beta);
        StorePartial(tile + NR, c + NR, 0, 1, NR, alpha, beta);
        StorePartial(tile + (2 * NR), c + (2 * NR), 0, 1, NR, alpha, beta);
        StorePartial(tile + (3 * NR), c + (3 * NR), 0, 1, lastNr, alpha, beta);
    }

    /// <summary>
    /// One row of A (its <paramref name="kc"/> values contiguous at <paramref name="a"/>) times one sliver of B, <paramref name="nr"/>
    /// columns of C: a sliver left over after <see cref="Kernel512OneRowFour{TB}"/>'s groups of four, with the same
    /// operations per lane, so the same bits.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Kernel512OneRow<TB>(int kc, float* a, byte* b, float* c, int nr, float alpha, float beta, float* tile)
        where TB : struct, ISliverElement
    {
        Vector512<float> c0 = default, c1 = default;
        for (var p = 0; p < kc; p++)
        {
            Sse.Prefetch0(b + OneRowPrefetchBytes);
            var av = Vector512.Create(a[p]);
            TB.Load512(b, out var x0, out var x1);
            c0 = Vector512.FusedMultiplyAdd(av, x0, c0);
            c1 = Vector512.FusedMultiplyAdd(av, x1, c1);
            b += TB.RowBytes;
        }

        c0.Store(tile);
        c1.Store(tile + 16);
        StorePartial(tile, c, 0, 1, nr, alpha, beta);
    }

    /// <summary>
    /// How far ahead the one-row kernel asks for each of its four slivers: 16 k rows of bf16 (8 of float32). A
    /// one-row product does 2 FLOPs a weight, so it waits on memory alone; four streams per thread at the blocked
    /// kernel's 256 bytes left too little in flight. Alternating ~100M batch-1 decode runs on the quiet 2-core
    /// machine (2026-12-07, 15:00-15:06 UTC): 1024 bytes 66%, 65%, 65% of the STREAM-copy roofline; 256 bytes 56%,
    /// 58%, 57%; 2048 bytes 61%, 54%. A prefetch changes no value, so the bits are the same.
    /// </summary>
    private const int OneRowPrefetchBytes = 1024;

    private static float* EnsureAAll(nuint floats)
    {
        if (_threadAAllLength < floats)
        {
            if (_threadAAll != null)
            {
                NativeMemory.AlignedFree(_threadAAll);
            }

            // Lives for the thread's lifetime, like the blocked loop's packing buffers; only the thread that
            // starts a product writes it, and its tasks only read it before the product returns.
            _threadAAll = (float*)NativeMemory.AlignedAlloc(floats * sizeof(float), 64);
            _threadAAllLength = floats;
        }

        return _threadAAll;
    }

    /// <summary>How the micro-kernels read one k row of a packed 32-column sliver of B, widened to float32.</summary>
    internal interface ISliverElement
    {
        /// <summary>Bytes from one k row of a sliver to the next.</summary>
        static abstract int RowBytes { get; }

        /// <summary>Loads columns 0-15 and 16-31 of the row at <paramref name="row"/> (64-byte aligned).</summary>
        static abstract void Load512(byte* row, out Vector512<float> low, out Vector512<float> high);

        /// <summary>Where, from a row's start, the 256-bit kernel's group <paramref name="group"/> (columns 8g to 8g+7) is read.</summary>
        static abstract int Offset256(int group);

        /// <summary>Loads the group at <paramref name="at"/>; <paramref name="high"/> for groups 2 and 3.</summary>
        static abstract Vector256<float> Load256(byte* at, bool high);
    }

    /// <summary>Slivers of float32, column j of a row at float j.</summary>
    internal readonly struct Float32Sliver : ISliverElement
    {
        public static int RowBytes => NR * sizeof(float);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Load512(byte* row, out Vector512<float> low, out Vector512<float> high)
        {
            low = Vector512.LoadAligned((float*)row);
            high = Vector512.LoadAligned((float*)row + 16);
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static int Offset256(int group) => group * 8 * sizeof(float);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load256(byte* at, bool high) => Vector256.Load((float*)at);
    }

    /// <summary>Slivers of bf16 as <see cref="PackAllBFloat16"/> lays them out: lane i of a row's 16 uint32 holds columns i and i + 16.</summary>
    internal readonly struct BFloat16Sliver : ISliverElement
    {
        public static int RowBytes => NR * sizeof(ushort);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static void Load512(byte* row, out Vector512<float> low, out Vector512<float> high)
        {
            var u = Vector512.LoadAligned((uint*)row);
            low = (u << 16).AsSingle();
            high = (u & Vector512.Create(0xFFFF0000u)).AsSingle();
        }

        // Groups 0 and 2 read lanes 0-7, groups 1 and 3 lanes 8-15.
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static int Offset256(int group) => (group & 1) * 8 * sizeof(uint);

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public static Vector256<float> Load256(byte* at, bool high)
        {
            var u = Vector256.Load((uint*)at);
            return high ? (u & Vector256.Create(0xFFFF0000u)).AsSingle() : (u << 16).AsSingle();
        }
    }
}
