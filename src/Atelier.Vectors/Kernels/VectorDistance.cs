using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace Atelier.Vectors.Kernels;

/// <summary>
/// Distance kernels over float32, float16 and int8. The span overloads go through
/// <see cref="TensorPrimitives"/>; the pointer overloads are the index hot path and use
/// <see cref="Vector512"/>/<see cref="Vector256"/> directly: at the 64-1024 dimensions embeddings have,
/// TensorPrimitives' length checks and tail dispatch cost a measurable share of a 128-d distance.
/// </summary>
public static unsafe class VectorDistance
{
    private const int HalfChunk = 256;

    /// <summary>The distance between <paramref name="a"/> and <paramref name="b"/> under <paramref name="metric"/> (smaller is closer).</summary>
    /// <remarks>For <see cref="DistanceMetric.Cosine"/> the inputs need not be normalised.</remarks>
    public static float Distance(DistanceMetric metric, ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length)
        {
            VectorThrow.DimensionMismatch(a.Length, b.Length);
        }

        return metric switch
        {
            DistanceMetric.L2 => L2Squared(a, b),
            DistanceMetric.Dot => 1f - TensorPrimitives.Dot(a, b),
            _ => 1f - TensorPrimitives.CosineSimilarity(a, b),
        };
    }

    /// <summary>Squared Euclidean distance over float32.</summary>
    public static float L2Squared(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length)
        {
            VectorThrow.DimensionMismatch(a.Length, b.Length);
        }

        fixed (float* pa = a, pb = b)
        {
            return L2Squared(pa, pb, a.Length);
        }
    }

    /// <summary>Inner product over float32.</summary>
    public static float Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b) => TensorPrimitives.Dot(a, b);

    /// <summary>The distance between two float16 vectors; converts in stack chunks and reuses the float32 kernels.</summary>
    public static float Distance(DistanceMetric metric, ReadOnlySpan<Half> a, ReadOnlySpan<Half> b)
    {
        if (a.Length != b.Length)
        {
            VectorThrow.DimensionMismatch(a.Length, b.Length);
        }

        Span<float> fa = stackalloc float[HalfChunk];
        Span<float> fb = stackalloc float[HalfChunk];
        float sum = 0, na = 0, nb = 0;
        for (int i = 0; i < a.Length; i += HalfChunk)
        {
            int n = Math.Min(HalfChunk, a.Length - i);
            var ca = fa[..n];
            var cb = fb[..n];
            TensorPrimitives.ConvertToSingle(a.Slice(i, n), ca);
            TensorPrimitives.ConvertToSingle(b.Slice(i, n), cb);
            if (metric == DistanceMetric.L2)
            {
                sum += L2Squared(ca, cb);
            }
            else
            {
                sum += TensorPrimitives.Dot(ca, cb);
                if (metric == DistanceMetric.Cosine)
                {
                    na += TensorPrimitives.Dot(ca, ca);
                    nb += TensorPrimitives.Dot(cb, cb);
                }
            }
        }

        return metric switch
        {
            DistanceMetric.L2 => sum,
            DistanceMetric.Dot => 1f - sum,
            _ => na == 0 || nb == 0 ? 1f : 1f - (sum / MathF.Sqrt(na * nb)),
        };
    }

    /// <summary>Squared Euclidean distance between two int8 vectors, exact in 32-bit integers.</summary>
    public static int L2Squared(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b)
    {
        if (a.Length != b.Length)
        {
            VectorThrow.DimensionMismatch(a.Length, b.Length);
        }

        fixed (sbyte* pa = a, pb = b)
        {
            return L2Squared(pa, pb, a.Length);
        }
    }

    /// <summary>Inner product of two int8 vectors, exact in 32-bit integers.</summary>
    public static int Dot(ReadOnlySpan<sbyte> a, ReadOnlySpan<sbyte> b)
    {
        if (a.Length != b.Length)
        {
            VectorThrow.DimensionMismatch(a.Length, b.Length);
        }

        fixed (sbyte* pa = a, pb = b)
        {
            return Dot(pa, pb, a.Length);
        }
    }

    /// <summary>Squared Euclidean distance over float32 pointers (hot path, no checks).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float L2Squared(float* a, float* b, int length)
    {
        int i = 0;
        float sum = 0;
        if (Vector512.IsHardwareAccelerated && length >= 16)
        {
            var acc0 = Vector512<float>.Zero;
            var acc1 = Vector512<float>.Zero;
            for (; i <= length - 32; i += 32)
            {
                var d0 = Vector512.Load(a + i) - Vector512.Load(b + i);
                var d1 = Vector512.Load(a + i + 16) - Vector512.Load(b + i + 16);
                acc0 = Vector512.FusedMultiplyAdd(d0, d0, acc0);
                acc1 = Vector512.FusedMultiplyAdd(d1, d1, acc1);
            }

            for (; i <= length - 16; i += 16)
            {
                var d = Vector512.Load(a + i) - Vector512.Load(b + i);
                acc0 = Vector512.FusedMultiplyAdd(d, d, acc0);
            }

            sum = Vector512.Sum(acc0 + acc1);
        }
        else if (Vector256.IsHardwareAccelerated && length >= 8)
        {
            var acc0 = Vector256<float>.Zero;
            var acc1 = Vector256<float>.Zero;
            for (; i <= length - 16; i += 16)
            {
                var d0 = Vector256.Load(a + i) - Vector256.Load(b + i);
                var d1 = Vector256.Load(a + i + 8) - Vector256.Load(b + i + 8);
                acc0 = Vector256.FusedMultiplyAdd(d0, d0, acc0);
                acc1 = Vector256.FusedMultiplyAdd(d1, d1, acc1);
            }

            for (; i <= length - 8; i += 8)
            {
                var d = Vector256.Load(a + i) - Vector256.Load(b + i);
                acc0 = Vector256.FusedMultiplyAdd(d, d, acc0);
            }

            sum = Vector256.Sum(acc0 + acc1);
        }

        for (; i < length; i++)
        {
            float d = a[i] - b[i];
            sum += d * d;
        }

        return sum;
    }

    /// <summary>Inner product over float32 pointers (hot path, no checks).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Dot(float* a, float* b, int length)
    {
        int i = 0;
        float sum = 0;
        if (Vector512.IsHardwareAccelerated && length >= 16)
        {
            var acc0 = Vector512<float>.Zero;
            var acc1 = Vector512<float>.Zero;
            for (; i <= length - 32; i += 32)
            {
                acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), Vector512.Load(b + i), acc0);
                acc1 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i + 16), Vector512.Load(b + i + 16), acc1);
            }

            for (; i <= length - 16; i += 16)
            {
                acc0 = Vector512.FusedMultiplyAdd(Vector512.Load(a + i), Vector512.Load(b + i), acc0);
            }

            sum = Vector512.Sum(acc0 + acc1);
        }
        else if (Vector256.IsHardwareAccelerated && length >= 8)
        {
            var acc0 = Vector256<float>.Zero;
            var acc1 = Vector256<float>.Zero;
            for (; i <= length - 16; i += 16)
            {
                acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), acc0);
                acc1 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i + 8), Vector256.Load(b + i + 8), acc1);
            }

            for (; i <= length - 8; i += 8)
            {
                acc0 = Vector256.FusedMultiplyAdd(Vector256.Load(a + i), Vector256.Load(b + i), acc0);
            }

            sum = Vector256.Sum(acc0 + acc1);
        }

        for (; i < length; i++)
        {
            sum += a[i] * b[i];
        }

        return sum;
    }

    /// <summary>Squared Euclidean distance over int8 pointers (hot path, no checks), exact in int32.</summary>
    /// <remarks>
    /// Widens to int16 before subtracting (an int8 difference overflows int8) and uses pmaddwd, which
    /// multiplies int16 pairs and adds adjacent products into int32 lanes in one instruction.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int L2Squared(sbyte* a, sbyte* b, int length)
    {
        int i = 0;
        int sum = 0;
        if (Avx512BW.IsSupported && length >= 32)
        {
            var acc = Vector512<int>.Zero;
            for (; i <= length - 32; i += 32)
            {
                var d = Avx512BW.ConvertToVector512Int16(Vector256.Load(a + i)) - Avx512BW.ConvertToVector512Int16(Vector256.Load(b + i));
                acc += Avx512BW.MultiplyAddAdjacent(d, d);
            }

            sum = Vector512.Sum(acc);
        }
        else if (Avx2.IsSupported && length >= 16)
        {
            var acc = Vector256<int>.Zero;
            for (; i <= length - 16; i += 16)
            {
                var d = Avx2.ConvertToVector256Int16(Vector128.Load(a + i)) - Avx2.ConvertToVector256Int16(Vector128.Load(b + i));
                acc += Avx2.MultiplyAddAdjacent(d, d);
            }

            sum = Vector256.Sum(acc);
        }

        for (; i < length; i++)
        {
            int d = a[i] - b[i];
            sum += d * d;
        }

        return sum;
    }

    /// <summary>Inner product over int8 pointers (hot path, no checks), exact in int32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Dot(sbyte* a, sbyte* b, int length)
    {
        int i = 0;
        int sum = 0;
        if (Avx512BW.IsSupported && length >= 32)
        {
            var acc = Vector512<int>.Zero;
            for (; i <= length - 32; i += 32)
            {
                acc += Avx512BW.MultiplyAddAdjacent(
                    Avx512BW.ConvertToVector512Int16(Vector256.Load(a + i)),
                    Avx512BW.ConvertToVector512Int16(Vector256.Load(b + i)));
            }

            sum = Vector512.Sum(acc);
        }
        else if (Avx2.IsSupported && length >= 16)
        {
            var acc = Vector256<int>.Zero;
            for (; i <= length - 16; i += 16)
            {
                acc += Avx2.MultiplyAddAdjacent(
                    Avx2.ConvertToVector256Int16(Vector128.Load(a + i)),
                    Avx2.ConvertToVector256Int16(Vector128.Load(b + i)));
            }

            sum = Vector256.Sum(acc);
        }

        for (; i < length; i++)
        {
            sum += a[i] * b[i];
        }

        return sum;
    }

    /// <summary>Scales <paramref name="vector"/> in place to unit length (a zero vector is left as is).</summary>
    public static void Normalize(Span<float> vector)
    {
        float norm = TensorPrimitives.Norm(vector);
        if (norm > 0)
        {
            TensorPrimitives.Divide(vector, norm, vector);
        }
    }
}
