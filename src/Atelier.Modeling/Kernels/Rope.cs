namespace Atelier.Modeling.Kernels;

/// <summary>
/// Rotary position embedding as in Mistral's reference code: consecutive pairs <c>(x[2i], x[2i+1])</c>
/// of each head are rotated by <c>pos · θ^(−2i/head_dim)</c>.
/// </summary>
public sealed class RopeAngles
{
    private readonly float[] _cos;
    private readonly float[] _sin;
    private readonly int _half;

    /// <summary>Computes the rotation for each position (angles in double, then rounded once).</summary>
    public RopeAngles(ReadOnlySpan<int> positions, int headDim, double theta)
    {
        if (headDim <= 0 || headDim % 2 != 0)
        {
            throw new ArgumentException("RoPE needs an even head dimension.", nameof(headDim));
        }

        _half = headDim / 2;
        Count = positions.Length;
        _cos = new float[Count * _half];
        _sin = new float[Count * _half];
        for (var t = 0; t < Count; t++)
        {
            for (var i = 0; i < _half; i++)
            {
                var freq = 1.0 / Math.Pow(theta, 2.0 * i / headDim);
                var angle = positions[t] * freq;
                _cos[(t * _half) + i] = (float)Math.Cos(angle);
                _sin[(t * _half) + i] = (float)Math.Sin(angle);
            }
        }
    }

    /// <summary>The number of positions.</summary>
    public int Count { get; }

    /// <summary>
    /// Rotates every head of every row of <paramref name="x"/> [rows × heads·head_dim] in place; with
    /// <paramref name="inverse"/> it rotates backwards, which is the backward pass (rotations are orthogonal).
    /// </summary>
    public void Apply(Span<float> x, int heads, bool inverse = false)
    {
        var headDim = 2 * _half;
        var width = heads * headDim;
        if (x.Length != Count * width)
        {
            throw new ArgumentException("RoPE input does not have one row per position.", nameof(x));
        }

        for (var t = 0; t < Count; t++)
        {
            var cos = _cos.AsSpan(t * _half, _half);
            var sin = _sin.AsSpan(t * _half, _half);
            var row = x.Slice(t * width, width);
            for (var h = 0; h < heads; h++)
            {
                var head = row.Slice(h * headDim, headDim);
                for (var i = 0; i < _half; i++)
                {
                    var c = cos[i];
                    var s = inverse ? -sin[i] : sin[i];
                    var x0 = head[2 * i];
                    var x1 = head[(2 * i) + 1];
                    head[2 * i] = (x0 * c) - (x1 * s);
                    head[(2 * i) + 1] = (x0 * s) + (x1 * c);
                }
            }
        }
    }
}
