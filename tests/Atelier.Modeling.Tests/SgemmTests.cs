using Atelier.Modeling.Kernels;

namespace Atelier.Modeling.Tests;

[Collection(GlobalKernelSettings.Name)]
public class SgemmTests
{
    private static double[] Reference(bool ta, bool tb, int m, int n, int k, float alpha, float[] a, int lda, float[] b, int ldb, float beta, float[] c0, int ldc)
    {
        var c = new double[m * ldc];
        for (var i = 0; i < m; i++)
        {
            for (var j = 0; j < n; j++)
            {
                double s = 0;
                for (var p = 0; p < k; p++)
                {
                    var av = ta ? a[(p * lda) + i] : a[(i * lda) + p];
                    var bv = tb ? b[(j * ldb) + p] : b[(p * ldb) + j];
                    s += (double)av * bv;
                }

                c[(i * ldc) + j] = (alpha * s) + (beta == 0 ? 0 : beta * (double)c0[(i * ldc) + j]);
            }
        }

        return c;
    }

    public static TheoryData<bool, bool, int, int, int> Shapes => new()
    {
        { false, false, 1, 70, 33 },
        { false, true, 1, 70, 33 },
        { true, false, 1, 5, 9 },
        { false, false, 37, 45, 300 },
        { false, true, 37, 45, 300 },
        { true, false, 37, 45, 300 },
        { true, true, 37, 45, 300 },
        { false, false, 12, 32, 256 },
        { true, false, 13, 33, 257 },
        { false, true, 25, 64, 512 },
        { false, true, 130, 97, 19 },
        { true, false, 3, 1, 513 },
        { false, false, 200, 4100, 5 },
        { false, true, 32, 70, 300 }, // a last A sliver of 8 rows (a 32-row decode batch), k not a multiple of 8
        { false, false, 20, 33, 77 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void Multiply_MatchesDoublePrecisionReference_ForEveryTransposeAndEdgeShape(bool ta, bool tb, int m, int n, int k)
    {
        var lda = (ta ? m : k) + 3;
        var ldb = (tb ? k : n) + 1;
        var ldc = n + 2;
        var a = TestData.Uniform((ta ? k : m) * lda, 1);
        var b = TestData.Uniform((tb ? n : k) * ldb, 2);
        var c = TestData.Uniform(m * ldc, 3);
        var expected = Reference(ta, tb, m, n, k, 0.75f, a, lda, b, ldb, 0.5f, c, ldc);
        Sgemm.Multiply(ta, tb, m, n, k, 0.75f, a, lda, b, ldb, 0.5f, c, ldc);
        for (var i = 0; i < m; i++)
        {
            for (var j = 0; j < n; j++)
            {
                var e = expected[(i * ldc) + j];
                if (!(Math.Abs(c[(i * ldc) + j] - e) <= (1e-4 * Math.Sqrt(k)) + (1e-5 * Math.Abs(e))))
                {
                    Assert.Fail($"C[{i},{j}] = {c[(i * ldc) + j]}, expected {e}");
                }
            }
        }
    }

    [Fact]
    public void Multiply_WithZeroBeta_IgnoresNaNAlreadyInC()
    {
        var a = TestData.Uniform(20 * 30, 4);
        var b = TestData.Uniform(30 * 40, 5);
        var c = Enumerable.Repeat(float.NaN, 20 * 40).ToArray();
        Sgemm.MatMul(a, b, c, 20, 40, 30);
        Assert.All(c, v => Assert.False(float.IsNaN(v)));
    }

    [Fact]
    public void Multiply_GivesBitIdenticalResults_ForOneAndManyThreadsAndBothKernels()
    {
        var (m, n, k) = (150, 300, 600);
        var a = TestData.Uniform(m * k, 6);
        var b = TestData.Uniform(n * k, 7);
        var saved = KernelParallelism.MaxThreads;
        try
        {
            float[] Run(int threads, bool force256)
            {
                KernelParallelism.MaxThreads = threads;
                Sgemm.ForceVector256 = force256;
                var c = new float[m * n];
                Sgemm.Multiply(false, true, m, n, k, 1f, a, k, b, k, 0f, c, n);
                return c;
            }

            var one = Run(1, false);
            Assert.Equal(one, Run(4, false));
            Assert.Equal(one, Run(2, true));
        }
        finally
        {
            KernelParallelism.MaxThreads = saved;
            Sgemm.ForceVector256 = false;
        }
    }

    [Fact]
    public void Multiply_RejectsOperandsTooSmallForTheirShape()
    {
        Assert.Throws<ArgumentException>(() => Sgemm.MatMul(new float[10], new float[12], new float[12], 3, 4, 4));
    }
}

[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class GlobalKernelSettings
{
    public const string Name = "Tests that change global kernel settings";
}
