using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Atelier.Modeling.Kernels;

/// <summary>
/// Reductions with a fixed order of operations. <c>TensorPrimitives.Dot</c> and <c>Sum</c> may peel
/// elements to reach an aligned address, so their rounding depends on where the data happens to
/// sit in memory; training must be bit-reproducible, so reductions go through these instead, whose
/// lane assignment depends only on the index.
/// </summary>
public static class Simd
{
    /// <summary>Dot product of two equal-length spans, in an order fixed by the length alone.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Dot(ReadOnlySpan<float> x, ReadOnlySpan<float> y)
    {
        if (x.Length != y.Length)
        {
            throw new ArgumentException("Spans must have equal lengths.", nameof(y));
        }

        ref var rx = ref MemoryMarshal.GetReference(x);
        ref var ry = ref MemoryMarshal.GetReference(y);
        var n = x.Length;
        var i = 0;
        float sum;
        if (Vector512.IsHardwareAccelerated && n >= 64)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i <= n - 64; i += 64)
            {
                a0 = Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref rx, (nuint)i), Vector512.LoadUnsafe(ref ry, (nuint)i), a0);
                a1 = Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref rx, (nuint)(i + 16)), Vector512.LoadUnsafe(ref ry, (nuint)(i + 16)), a1);
                a2 = Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref rx, (nuint)(i + 32)), Vector512.LoadUnsafe(ref ry, (nuint)(i + 32)), a2);
                a3 = Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref rx, (nuint)(i + 48)), Vector512.LoadUnsafe(ref ry, (nuint)(i + 48)), a3);
            }

            for (; i <= n - 16; i += 16)
            {
                a0 = Vector512.FusedMultiplyAdd(Vector512.LoadUnsafe(ref rx, (nuint)i), Vector512.LoadUnsafe(ref ry, (nuint)i), a0);
            }

            sum = Vector512.Sum((a0 + a1) + (a2 + a3));
        }
        else if (Vector256.IsHardwareAccelerated && n >= 16)
        {
            Vector256<float> a0 = default, a1 = default;
            for (; i <= n - 16; i += 16)
            {
                a0 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref rx, (nuint)i), Vector256.LoadUnsafe(ref ry, (nuint)i), a0);
                a1 = Vector256.FusedMultiplyAdd(Vector256.LoadUnsafe(ref rx, (nuint)(i + 8)), Vector256.LoadUnsafe(ref ry, (nuint)(i + 8)), a1);
            }

            sum = Vector256.Sum(a0 + a1);
        }
        else
        {
            sum = 0;
        }

        for (; i < n; i++)
        {
            sum = MathF.FusedMultiplyAdd(Unsafe.Add(ref rx, i), Unsafe.Add(ref ry, i), sum);
        }

        return sum;
    }

    /// <summary>Sum of a span in double, in an order fixed by the length alone (16 float lanes, then one double).</summary>
    public static double Sum(ReadOnlySpan<float> x)
    {
        ref var rx = ref MemoryMarshal.GetReference(x);
        var n = x.Length;
        var i = 0;
        double sum = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            // Float lanes over blocks of 1024 elements, widened to double per block, bound the rounding error.
            while (i <= n - 16)
            {
                var acc = Vector512<float>.Zero;
                var end = Math.Min(n - 15, i + 1024);
                for (; i < end; i += 16)
                {
                    acc += Vector512.LoadUnsafe(ref rx, (nuint)i);
                }

                sum += Vector512.Sum(acc);
            }
        }

        for (; i < n; i++)
        {
            sum += Unsafe.Add(ref rx, i);
        }

        return sum;
    }

    /// <summary><c>y += a · x</c>, element-wise (no reduction, so any vectorisation is exact per element).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Axpy(float a, ReadOnlySpan<float> x, Span<float> y)
    {
        if (x.Length != y.Length)
        {
            throw new ArgumentException("Spans must have equal lengths.", nameof(y));
        }

        ref var rx = ref MemoryMarshal.GetReference(x);
        ref var ry = ref MemoryMarshal.GetReference(y);
        var n = x.Length;
        var i = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var va = Vector512.Create(a);
            for (; i <= n - 16; i += 16)
            {
                Vector512.FusedMultiplyAdd(va, Vector512.LoadUnsafe(ref rx, (nuint)i), Vector512.LoadUnsafe(ref ry, (nuint)i)).StoreUnsafe(ref ry, (nuint)i);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var va = Vector256.Create(a);
            for (; i <= n - 8; i += 8)
            {
                Vector256.FusedMultiplyAdd(va, Vector256.LoadUnsafe(ref rx, (nuint)i), Vector256.LoadUnsafe(ref ry, (nuint)i)).StoreUnsafe(ref ry, (nuint)i);
            }
        }

        for (; i < n; i++)
        {
            Unsafe.Add(ref ry, i) = MathF.FusedMultiplyAdd(a, Unsafe.Add(ref rx, i), Unsafe.Add(ref ry, i));
        }
    }
}
