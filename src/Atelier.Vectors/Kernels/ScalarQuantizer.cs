using System.Numerics.Tensors;

namespace Atelier.Vectors.Kernels;

/// <summary>
/// Scalar int8 quantisation with one global step and per-dimension offsets:
/// <c>code[i] = clamp(round((x[i] - offset[i]) / step), -127, 127)</c>.
/// </summary>
/// <remarks>
/// One step for every dimension (rather than one per dimension) keeps the code-space distance a plain
/// integer kernel: squared L2 is <c>step^2 * |ca - cb|^2</c> because the offsets cancel. For the dot and
/// cosine metrics the offsets are zero, so the inner product is <c>step^2 * (ca . cb)</c>.
/// The step is set from a high quantile of |x - offset| rather than the maximum, so that one outlier does not
/// waste the 8 bits; values past it clamp, and the index re-ranks its candidates on full vectors anyway.
/// </remarks>
public sealed class ScalarQuantizer
{
    private const double ClipQuantile = 0.9995;
    private readonly float[] _offsets;

    /// <summary>Creates a quantiser from its parameters (as persisted).</summary>
    public ScalarQuantizer(float step, float[] offsets)
    {
        if (!(step > 0) || float.IsInfinity(step))
        {
            VectorThrow.BadArgument("The quantisation step must be positive and finite.");
        }

        Step = step;
        _offsets = offsets;
        InverseStep = 1f / step;
        StepSquared = step * step;
    }

    /// <summary>The dimension of the vectors this quantiser encodes.</summary>
    public int Dimension => _offsets.Length;

    /// <summary>The value one code unit stands for.</summary>
    public float Step { get; }

    /// <summary><see cref="Step"/> squared: the factor from integer code distances to float distances.</summary>
    public float StepSquared { get; }

    internal float InverseStep { get; }

    /// <summary>The per-dimension offsets subtracted before scaling (zero for dot and cosine).</summary>
    public ReadOnlySpan<float> Offsets => _offsets;

    /// <summary>Fits a quantiser on a sample of row-major vectors.</summary>
    /// <param name="metric">For <see cref="DistanceMetric.L2"/> offsets are the per-dimension means; otherwise zero.</param>
    /// <param name="vectors">Row-major sample, <paramref name="dimension"/> floats per vector.</param>
    /// <param name="dimension">The vector dimension.</param>
    public static ScalarQuantizer Train(DistanceMetric metric, ReadOnlySpan<float> vectors, int dimension)
    {
        int count = vectors.Length / dimension;
        if (count == 0)
        {
            VectorThrow.BadArgument("A quantiser needs at least one vector to train on.");
        }

        var offsets = new float[dimension];
        if (metric == DistanceMetric.L2)
        {
            for (int v = 0; v < count; v++)
            {
                TensorPrimitives.Add(offsets, vectors.Slice(v * dimension, dimension), offsets);
            }

            TensorPrimitives.Divide(offsets, count, offsets);
        }

        // At most ~1M absolute deviations are sorted to find the clip quantile.
        int stride = Math.Max(1, (int)((long)count * dimension / 1_000_000));
        var deviations = new float[(count + stride - 1) / stride * dimension];
        int n = 0;
        for (int v = 0; v < count; v += stride)
        {
            var row = vectors.Slice(v * dimension, dimension);
            for (int i = 0; i < dimension; i++)
            {
                deviations[n++] = MathF.Abs(row[i] - offsets[i]);
            }
        }

        Array.Sort(deviations, 0, n);
        float clip = deviations[Math.Min(n - 1, (int)(n * ClipQuantile))];
        if (!(clip > 0))
        {
            clip = Math.Max(deviations[n - 1], 1e-6f);
        }

        return new ScalarQuantizer(clip / 127f, offsets);
    }

    /// <summary>Encodes one vector into <paramref name="codes"/>.</summary>
    public void Encode(ReadOnlySpan<float> vector, Span<sbyte> codes)
    {
        float inv = InverseStep;
        for (int i = 0; i < vector.Length; i++)
        {
            float q = MathF.Round((vector[i] - _offsets[i]) * inv);
            codes[i] = (sbyte)Math.Clamp(q, -127f, 127f);
        }
    }

    /// <summary>Decodes codes back to approximate float values.</summary>
    public void Decode(ReadOnlySpan<sbyte> codes, Span<float> vector)
    {
        for (int i = 0; i < codes.Length; i++)
        {
            vector[i] = (codes[i] * Step) + _offsets[i];
        }
    }
}
