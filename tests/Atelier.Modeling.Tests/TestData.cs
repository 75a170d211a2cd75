namespace Atelier.Modeling.Tests;

/// <summary>Seeded test data, independent of the library's own generator.</summary>
internal static class TestData
{
    public static float[] Uniform(int n, int seed, float scale = 1f)
    {
        var r = new Random(seed);
        var x = new float[n];
        for (var i = 0; i < n; i++)
        {
            x[i] = (float)((r.NextDouble() * 2) - 1) * scale;
        }

        return x;
    }

    public static int[] Tokens(int n, int vocab, int seed)
    {
        var r = new Random(seed);
        var x = new int[n];
        for (var i = 0; i < n; i++)
        {
            x[i] = r.Next(vocab);
        }

        return x;
    }

    /// <summary>Σ r_i·y_i in double: turns a vector output into a scalar loss whose gradient is r.</summary>
    public static double Project(ReadOnlySpan<float> y, ReadOnlySpan<float> r)
    {
        double s = 0;
        for (var i = 0; i < y.Length; i++)
        {
            s += (double)y[i] * r[i];
        }

        return s;
    }

    /// <summary>
    /// Central finite difference of <paramref name="loss"/> with respect to x[i], for each i in
    /// <paramref name="indices"/>, compared with <paramref name="analytic"/>.
    /// </summary>
    public static void CheckGradient(string what, float[] x, ReadOnlySpan<float> analytic, Func<double> loss, float eps = 1e-2f,
        double absTol = 2e-3, double relTol = 2e-2, IEnumerable<int>? indices = null)
    {
        var worst = 0.0;
        var worstAt = -1;
        string? failure = null;
        foreach (var i in indices ?? Enumerable.Range(0, x.Length))
        {
            var saved = x[i];
            x[i] = saved + eps;
            var up = loss();
            x[i] = saved - eps;
            var down = loss();
            x[i] = saved;
            var numeric = (up - down) / (2.0 * eps);
            var err = Math.Abs(numeric - analytic[i]);
            var allowed = absTol + (relTol * Math.Abs(numeric));
            if (err / allowed > worst)
            {
                worst = err / allowed;
                worstAt = i;
            }

            if (err > allowed && failure is null)
            {
                failure = $"{what}[{i}]: analytic {analytic[i]:G6}, numeric {numeric:G6}";
            }
        }

        Assert.True(failure is null, failure + $" (worst ratio {worst:F2} at {worstAt})");
    }

    public static IEnumerable<int> Sample(int length, int count, int seed)
    {
        if (length <= count)
        {
            return Enumerable.Range(0, length);
        }

        var r = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => r.Next(length)).Distinct().ToArray();
    }
}
