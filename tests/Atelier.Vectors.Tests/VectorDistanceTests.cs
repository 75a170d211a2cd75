using Atelier.Vectors.Kernels;

namespace Atelier.Vectors.Tests;

public class VectorDistanceTests
{
    // Odd lengths exercise the vector loops and the scalar tails together.
    public static TheoryData<int> Lengths => [1, 7, 16, 31, 33, 128, 769];

    private static float[] RandomVector(Random random, int length) =>
        Enumerable.Range(0, length).Select(_ => (float)((random.NextDouble() * 2) - 1)).ToArray();

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Float32Kernels_AgreeWithScalarReference(int length)
    {
        var random = new Random(length);
        var a = RandomVector(random, length);
        var b = RandomVector(random, length);
        double l2 = 0, dot = 0, na = 0, nb = 0;
        for (int i = 0; i < length; i++)
        {
            l2 += (a[i] - b[i]) * (a[i] - b[i]);
            dot += a[i] * b[i];
            na += a[i] * a[i];
            nb += b[i] * b[i];
        }

        Assert.Equal(l2, VectorDistance.Distance(DistanceMetric.L2, a, b), 3);
        Assert.Equal(1 - dot, VectorDistance.Distance(DistanceMetric.Dot, a, b), 3);
        Assert.Equal(1 - (dot / Math.Sqrt(na * nb)), VectorDistance.Distance(DistanceMetric.Cosine, a, b), 4);
        unsafe
        {
            fixed (float* pa = a, pb = b)
            {
                Assert.Equal(dot, VectorDistance.Dot(pa, pb, length), 3);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void HalfKernels_AgreeWithFloat32OnTheSameValues(int length)
    {
        var random = new Random(length + 100);
        var a = RandomVector(random, length).Select(x => (Half)x).ToArray();
        var b = RandomVector(random, length).Select(x => (Half)x).ToArray();
        var fa = a.Select(x => (float)x).ToArray();
        var fb = b.Select(x => (float)x).ToArray();

        foreach (var metric in new[] { DistanceMetric.L2, DistanceMetric.Dot, DistanceMetric.Cosine })
        {
            Assert.Equal(VectorDistance.Distance(metric, fa, fb), VectorDistance.Distance(metric, a, b), 3);
        }
    }

    [Theory]
    [MemberData(nameof(Lengths))]
    public void Int8Kernels_AreExactIncludingExtremeValues(int length)
    {
        var random = new Random(length + 200);
        var a = new sbyte[length];
        var b = new sbyte[length];
        for (int i = 0; i < length; i++)
        {
            // Extremes first: -128 * -128 and (127 - -128)^2 are where int16 arithmetic would overflow.
            a[i] = i % 5 == 0 ? sbyte.MinValue : (sbyte)random.Next(-128, 128);
            b[i] = i % 5 == 0 ? (i % 2 == 0 ? sbyte.MinValue : sbyte.MaxValue) : (sbyte)random.Next(-128, 128);
        }

        int l2 = 0, dot = 0;
        for (int i = 0; i < length; i++)
        {
            l2 += (a[i] - b[i]) * (a[i] - b[i]);
            dot += a[i] * b[i];
        }

        Assert.Equal(l2, VectorDistance.L2Squared(a, b));
        Assert.Equal(dot, VectorDistance.Dot(a, b));
    }

    [Fact]
    public void Distance_WithMismatchedLengths_IsRejected()
    {
        Assert.Throws<Atelier.Core.Errors.BadRequestException>(() => VectorDistance.Distance(DistanceMetric.L2, new float[3], new float[4]));
    }

    [Fact]
    public void ScalarQuantizer_RoundTripsWithinHalfAStepAndPreservesL2()
    {
        var data = ClusteredData.Generate(500, 64, clusters: 5, seed: 41);
        var quantizer = ScalarQuantizer.Train(DistanceMetric.L2, data, 64);
        var codesA = new sbyte[64];
        var codesB = new sbyte[64];
        var decoded = new float[64];
        var a = data.AsSpan(0, 64);
        var b = data.AsSpan(64, 64);

        quantizer.Encode(a, codesA);
        quantizer.Encode(b, codesB);
        quantizer.Decode(codesA, decoded);

        int inRange = 0;
        for (int i = 0; i < 64; i++)
        {
            inRange += Math.Abs(decoded[i] - a[i]) <= (quantizer.Step / 2) + 1e-5 ? 1 : 0;
        }

        Assert.True(inRange >= 63, "all but clipped outliers decode within half a step");
        float exact = VectorDistance.L2Squared(a, b);
        float approximate = quantizer.StepSquared * VectorDistance.L2Squared(codesA, codesB);
        Assert.InRange(approximate, exact * 0.95f, exact * 1.05f);
    }
}
