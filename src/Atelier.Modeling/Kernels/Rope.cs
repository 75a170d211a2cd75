using System.Runtime.Intrinsics;

namespace Atelier.Modeling.Kernels;

/// <summary>
/// Rotary position embedding as in Mistral's reference code: consecutive pairs <c>(x[2i], x[2i+1])</c>
/// of each head are rotated by <c>pos · θ^(−2i/head_dim)</c>.
/// </summary>
public sealed class RopeAngles
{
    // Per position, each pair's cosine twice and its sine as (−s, s): the vector path's operands as they are, and
    // the scalar loop's cosine and sine at each pair's first and second slot.
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
        _cos = new float[Count * headDim];
        _sin = new float[Count * headDim];
        // The frequencies depend on the pair alone: computed once, not once per position.
        var freqs = new double[_half];
        for (var i = 0; i < _half; i++)
        {
            freqs[i] = 1.0 / Math.Pow(theta, 2.0 * i / headDim);
        }

        for (var t = 0; t < Count; t++)
        {
            for (var i = 0; i < _half; i++)
            {
                var angle = positions[t] * freqs[i];
                var at = (t * headDim) + (2 * i);
                _cos[at] = _cos[at + 1] = (float)Math.Cos(angle);
                _sin[at + 1] = (float)Math.Sin(angle);
                _sin[at] = -_sin[at + 1];
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

        if (Vector256.IsHardwareAccelerated && headDim % Vector256<float>.Count == 0)
        {
            ApplyVector(x, heads, inverse);
            return;
        }

        for (var t = 0; t < Count; t++)
        {
            var cos = _cos.AsSpan(t * headDim, headDim);
            var sin = _sin.AsSpan(t * headDim, headDim);
            var row = x.Slice(t * width, width);
            for (var h = 0; h < heads; h++)
            {
                var head = row.Slice(h * headDim, headDim);
                for (var i = 0; i < _half; i++)
                {
                    var c = cos[2 * i];
                    var s = inverse ? -sin[(2 * i) + 1] : sin[(2 * i) + 1];
                    var x0 = head[2 * i];
                    var x1 = head[(2 * i) + 1];
                    head[2 * i] = (x0 * c) - (x1 * s);
                    head[(2 * i) + 1] = (x0 * s) + (x1 * c);
                }
            }
        }
    }

    /// <summary>
    /// <see cref="Apply"/> eight values (four pairs) at a time: <c>x·c + swap(x)·(−s, s)</c>, where swap exchanges the two
    /// values of each pair. Each element gets <c>x0·c − x1·s</c> or <c>x1·c + x0·s</c> from two roundings of products and one
    /// of their sum, as the scalar loop computes them (adding a negated product is subtracting it, and a sum does not
    /// depend on its order), so the bits are the same; there is no fused multiply-add on either path.
    /// </summary>
    private void ApplyVector(Span<float> x, int heads, bool inverse)
    {
        var headDim = 2 * _half;
        var width = heads * headDim;
        var swap = Vector256.Create(1, 0, 3, 2, 5, 4, 7, 6);
        for (var t = 0; t < Count; t++)
        {
            var cos = _cos.AsSpan(t * headDim, headDim);
            var sin = _sin.AsSpan(t * headDim, headDim);
            var row = x.Slice(t * width, width);
            for (var h = 0; h < heads; h++)
            {
                var head = row.Slice(h * headDim, headDim);
                for (var i = 0; i < headDim; i += Vector256<float>.Count)
                {
                    var v = Vector256.Create<float>(head[i..]);
                    var c = Vector256.Create<float>(cos[i..]);
                    var sn = Vector256.Create<float>(sin[i..]);
                    if (inverse)
                    {
                        sn = -sn;
                    }

                    var rotated = (v * c) + (Vector256.Shuffle(v, swap) * sn);
                    rotated.CopyTo(head[i..]);
                }
            }
        }
    }
}
