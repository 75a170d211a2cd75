using Atelier.Modeling.Kernels;

namespace Atelier.Modeling.Tests;

/// <summary>RoPE's vector path gives the bits of the scalar formula, forwards and backwards.</summary>
public class RopeTests
{
    [Theory]
    [InlineData(64, 12, false)]
    [InlineData(64, 4, true)]
    [InlineData(128, 3, false)]
    [InlineData(6, 5, false)] // not a multiple of eight: the scalar loop
    public void Apply_EqualsTheScalarFormulaBitForBit(int headDim, int heads, bool inverse)
    {
        int[] positions = [0, 1, 7, 300, 4095, 32767];
        const double Theta = 1e6;
        var rope = new RopeAngles(positions, headDim, Theta);
        var x = TestData.Uniform(positions.Length * heads * headDim, 5);
        var expected = (float[])x.Clone();
        for (var t = 0; t < positions.Length; t++)
        {
            for (var h = 0; h < heads; h++)
            {
                for (var i = 0; i < headDim / 2; i++)
                {
                    var angle = positions[t] * (1.0 / Math.Pow(Theta, 2.0 * i / headDim));
                    var c = (float)Math.Cos(angle);
                    var s = inverse ? -(float)Math.Sin(angle) : (float)Math.Sin(angle);
                    var at = (((t * heads) + h) * headDim) + (2 * i);
                    var x0 = x[at];
                    var x1 = x[at + 1];
                    expected[at] = (x0 * c) - (x1 * s);
                    expected[at + 1] = (x0 * s) + (x1 * c);
                }
            }
        }

        rope.Apply(x, heads, inverse);
        Assert.Equal(expected, x);
    }
}
