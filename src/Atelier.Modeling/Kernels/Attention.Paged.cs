using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace Atelier.Modeling.Kernels;

public static partial class Attention
{
    // Multiply-adds (positions × heads × head size, for q·k and again for p·v) below which a paged call runs
    // on the calling thread: about 20 µs of work, the cost of a fork/join on a loaded two-core machine.
    private const long SerialAttentionWork = 1L << 18;

    /// <summary>Shape of one paged attention call.</summary>
    /// <param name="Queries">Query rows T (from any number of sequences).</param>
    /// <param name="Heads">Query heads.</param>
    /// <param name="KvHeads">Key/value heads (divides <paramref name="Heads"/>).</param>
    /// <param name="HeadDim">Dimension of one head.</param>
    /// <param name="BlockSize">Positions per cache block.</param>
    public readonly record struct PagedShape(int Queries, int Heads, int KvHeads, int HeadDim, int BlockSize)
    {
        /// <summary>Query heads sharing one key/value head.</summary>
        public int Group => Heads / KvHeads;

        /// <summary>Floats of one cached position (all key/value heads).</summary>
        public int KvWidth => KvHeads * HeadDim;
    }

    /// <summary>
    /// Attention whose keys and values live in a paged cache: a pool of fixed-size blocks, each
    /// [<see cref="PagedShape.BlockSize"/> × kv·hd], and per query row a block table that maps its
    /// sequence's logical positions to blocks. Row t attends to its sequence's positions
    /// [<paramref name="lo"/>[t], <paramref name="hi"/>[t]] (causal, and the sliding window when lo is above 0);
    /// position p lives in block <c>blockTables[tableOffsets[t] + p / BlockSize]</c> at row <c>p % BlockSize</c>.
    /// </summary>
    /// <remarks>
    /// Each (row, head) is computed on its own, in an order fixed by its key range alone: scores by
    /// <see cref="Simd.Dot"/> position by position, the softmax with one vectorised exponential over the row's
    /// scores and a fixed-order sum, then the values accumulated position by position. So a row's output does not depend on which
    /// other rows (of its own or other sequences) share the call, nor on the thread count: the batch
    /// invariance a serving engine promises for seeded requests rests on it. It trades the SGEMM score
    /// blocks of <see cref="Forward"/> for that; decode steps, which dominate serving, read one row per
    /// sequence either way.
    /// </remarks>
    /// <param name="shape">The shape.</param>
    /// <param name="q">Queries [T × heads·hd], already rotated.</param>
    /// <param name="kPool">Key blocks of one layer, [blocks × BlockSize × kv·hd].</param>
    /// <param name="vPool">Value blocks of one layer, laid out as <paramref name="kPool"/>.</param>
    /// <param name="blockTables">The block tables of every sequence in the call, concatenated.</param>
    /// <param name="tableOffsets">Per row, where its sequence's table starts in <paramref name="blockTables"/>.</param>
    /// <param name="lo">Per row, the first position attended.</param>
    /// <param name="hi">Per row, the last position attended (its own position).</param>
    /// <param name="o">Output [T × heads·hd].</param>
    public static void PagedForward(PagedShape shape, ReadOnlySpan<float> q, ReadOnlySpan<float> kPool, ReadOnlySpan<float> vPool,
        ReadOnlySpan<int> blockTables, ReadOnlySpan<int> tableOffsets, ReadOnlySpan<int> lo, ReadOnlySpan<int> hi, Span<float> o)
    {
        CheckPaged(shape, q, kPool, vPool, blockTables, tableOffsets, lo, hi, o);
        if (shape.Queries == 0)
        {
            return;
        }

        unsafe
        {
            fixed (float* pq = q, pk = kPool, pv = vPool, po = o)
            fixed (int* pt = blockTables, poff = tableOffsets, plo = lo, phi = hi)
            {
                var p = (q: (nint)pq, k: (nint)pk, v: (nint)pv, o: (nint)po, t: (nint)pt, off: (nint)poff, lo: (nint)plo, hi: (nint)phi);
                void Task(int task)
                {
                    var row = task / shape.KvHeads;
                    var g = task % shape.KvHeads;
                    PagedRow(shape, row, g, (float*)p.q, (float*)p.k, (float*)p.v, (int*)p.t, ((int*)p.off)[row], ((int*)p.lo)[row], ((int*)p.hi)[row], (float*)p.o);
                }

                // A decode step of one or a few short sequences attends to a few thousand cached positions: less
                // work than the fork/join of a parallel loop (once per layer per token). Tasks are independent,
                // so running them in one thread gives the same bits.
                long attended = 0;
                for (var r = 0; r < shape.Queries; r++)
                {
                    attended += ((int*)p.hi)[r] - ((int*)p.lo)[r] + 1;
                }

                if (attended * shape.Heads * shape.HeadDim < SerialAttentionWork)
                {
                    for (var task = 0; task < shape.Queries * shape.KvHeads; task++)
                    {
                        Task(task);
                    }
                }
                else
                {
                    KernelParallelism.For(shape.Queries * shape.KvHeads, Task);
                }
            }
        }
    }

    private static unsafe void PagedRow(PagedShape s, int row, int g, float* q, float* k, float* v, int* tables, int tableOffset, int lo, int hi, float* o)
    {
        var hd = s.HeadDim;
        var qWidth = s.Heads * hd;
        var kvWidth = s.KvWidth;
        var bs = s.BlockSize;
        if (hi < lo)
        {
            for (var r = 0; r < s.Group; r++)
            {
                new Span<float>(o + ((long)row * qWidth) + (((g * s.Group) + r) * hd), hd).Clear();
            }

            return;
        }

        var n = hi - lo + 1;
        var scores = System.Buffers.ArrayPool<float>.Shared.Rent(n);
        var offsets = System.Buffers.ArrayPool<long>.Shared.Rent(n);
        try
        {
            // Where each attended position's key (and value) for this KV head lies, found once for the group's heads
            // and a block at a time: a division and a remainder per position and per head cost more than the
            // position's dot product. Only addresses change, so the values read and the bits are the same.
            var offs = offsets.AsSpan(0, n);
            for (int pos = lo, j = 0; pos <= hi;)
            {
                var row0 = pos % bs;
                var slot = ((long)tables[tableOffset + (pos / bs)] * bs) + row0;
                var count = Math.Min(bs - row0, hi - pos + 1);
                for (var i = 0; i < count; i++, j++)
                {
                    offs[j] = ((slot + i) * kvWidth) + (g * hd);
                }

                pos += count;
            }

            var sc = scores.AsSpan(0, n);
            var scale = 1f / MathF.Sqrt(hd);
            for (var r = 0; r < s.Group; r++)
            {
                var h = (g * s.Group) + r;
                var qh = new ReadOnlySpan<float>(q + ((long)row * qWidth) + (h * hd), hd);
                var po = o + ((long)row * qWidth) + (h * hd);
                var max = float.NegativeInfinity;
                for (var j = 0; j < n; j++)
                {
                    var score = Simd.Dot(qh, new ReadOnlySpan<float>(k + offs[j], hd)) * scale;
                    sc[j] = score;
                    max = MathF.Max(max, score);
                }

                // One vectorised exp over the row's scores: each element's result depends on its value and on n (which
                // of TensorPrimitives' paths runs) alone, and n is fixed by the row's key range, so no other row changes it.
                TensorPrimitives.Subtract(sc, max, sc);
                TensorPrimitives.Exp(sc, sc);
                var inv = (float)(1.0 / Simd.Sum(sc));
                if (hd == 64 && Vector512.IsHardwareAccelerated)
                {
                    // The common head size in registers: the same fused multiply-adds in the same order as Axpy into
                    // memory, so the same bits, without a store and reload per position.
                    Vector512<float> o0 = default, o1 = default, o2 = default, o3 = default;
                    for (var j = 0; j < n; j++)
                    {
                        var w = Vector512.Create(sc[j] * inv);
                        var vj = v + offs[j];
                        o0 = Vector512.FusedMultiplyAdd(w, Vector512.Load(vj), o0);
                        o1 = Vector512.FusedMultiplyAdd(w, Vector512.Load(vj + 16), o1);
                        o2 = Vector512.FusedMultiplyAdd(w, Vector512.Load(vj + 32), o2);
                        o3 = Vector512.FusedMultiplyAdd(w, Vector512.Load(vj + 48), o3);
                    }

                    o0.Store(po);
                    o1.Store(po + 16);
                    o2.Store(po + 32);
                    o3.Store(po + 48);
                    continue;
                }

                var oh = new Span<float>(po, hd);
                oh.Clear();
                for (var j = 0; j < n; j++)
                {
                    Simd.Axpy(sc[j] * inv, new ReadOnlySpan<float>(v + offs[j], hd), oh);
                }
            }
        }
        finally
        {
            System.Buffers.ArrayPool<long>.Shared.Return(offsets);
            System.Buffers.ArrayPool<float>.Shared.Return(scores);
        }
    }

    private static void CheckPaged(PagedShape s, ReadOnlySpan<float> q, ReadOnlySpan<float> kPool, ReadOnlySpan<float> vPool,
        ReadOnlySpan<int> blockTables, ReadOnlySpan<int> tableOffsets, ReadOnlySpan<int> lo, ReadOnlySpan<int> hi, Span<float> o)
    {
        if (s.Heads <= 0 || s.KvHeads <= 0 || s.Heads % s.KvHeads != 0 || s.HeadDim <= 0 || s.BlockSize <= 0 || s.Queries < 0)
        {
            throw new ArgumentException("Heads must be a positive multiple of KV heads, and the block size positive.");
        }

        var blockFloats = (long)s.BlockSize * s.KvWidth;
        if (q.Length != (long)s.Queries * s.Heads * s.HeadDim || o.Length != q.Length || kPool.Length != vPool.Length
            || kPool.Length % blockFloats != 0 || tableOffsets.Length != s.Queries || lo.Length != s.Queries || hi.Length != s.Queries)
        {
            throw new ArgumentException("Paged attention operand sizes do not match the shape.");
        }

        var blocks = kPool.Length / blockFloats;
        for (var t = 0; t < s.Queries; t++)
        {
            if (hi[t] < lo[t])
            {
                continue;
            }

            if (lo[t] < 0 || tableOffsets[t] < 0 || tableOffsets[t] + (hi[t] / s.BlockSize) >= blockTables.Length)
            {
                throw new ArgumentOutOfRangeException(nameof(lo), $"Key range [{lo[t]}, {hi[t]}] of row {t} is outside its block table.");
            }

            for (var b = lo[t] / s.BlockSize; b <= hi[t] / s.BlockSize; b++)
            {
                var block = blockTables[tableOffsets[t] + b];
                if (block < 0 || block >= blocks)
                {
                    throw new ArgumentOutOfRangeException(nameof(blockTables), $"Block {block} of row {t} is outside the pool of {blocks}.");
                }
            }
        }
    }
}
