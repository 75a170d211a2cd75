using System.Diagnostics;
using Atelier.Modeling.Kernels;

/// <summary>The machine's limits measured in the same run as the engine: memory bandwidth and SGEMM rate.</summary>
internal static unsafe class MachineLimits
{
    /// <summary>
    /// STREAM "copy" (a[i] = b[i]) over 512 MiB arrays on every thread, each thread its own contiguous
    /// part; bytes counted as STREAM does, read plus written (2 × 512 MiB per pass). Best of 8 passes.
    /// </summary>
    public static double StreamCopyGBs(int threads)
    {
        const long Bytes = 512L << 20;
        var src = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)Bytes, 64);
        var dst = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)Bytes, 64);
        try
        {
            // Touch every page first: the first pass would otherwise measure page faults.
            new Span<byte>(src, (int)Bytes).Fill(1);
            new Span<byte>(dst, (int)Bytes).Clear();
            var part = Bytes / threads;
            var best = double.MaxValue;
            for (var pass = 0; pass < 9; pass++)
            {
                var sw = Stopwatch.StartNew();
                Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
                {
                    var length = t == threads - 1 ? Bytes - (part * t) : part;
                    Buffer.MemoryCopy(src + (part * t), dst + (part * t), length, length);
                });
                var s = sw.Elapsed.TotalSeconds;
                if (pass > 0)
                {
                    best = Math.Min(best, s);
                }
            }

            return 2.0 * Bytes / best / 1e9;
        }
        finally
        {
            System.Runtime.InteropServices.NativeMemory.AlignedFree(src);
            System.Runtime.InteropServices.NativeMemory.AlignedFree(dst);
        }
    }

    /// <summary>Square fp32 SGEMM (A·B, n × n) GFLOP/s: best of a few after a warm-up, the figure bench/modeling.sh reports.</summary>
    public static double SgemmGFlops(int n, int reps)
    {
        var a = Random(n * n, 1);
        var b = Random(n * n, 2);
        var c = new float[n * n];
        Sgemm.MatMul(a, b, c, n, n, n);
        var best = double.MaxValue;
        for (var i = 0; i < reps; i++)
        {
            var sw = Stopwatch.StartNew();
            Sgemm.MatMul(a, b, c, n, n, n);
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }

        return 2.0 * n * n * n / best / 1e9;
    }

    /// <summary>
    /// The engine's own product at decode shape: <paramref name="m"/> rows times a packed [n × k] weight
    /// (what each projection of a batch-32 decode step runs), GFLOP/s, best of a few.
    /// </summary>
    public static double PackedGFlops(int m, int n, int k, int reps, PackedElementType type = PackedElementType.Float32)
    {
        var x = Random(m * k, 3);
        var values = Random(n * k, 4);
        using var w = type == PackedElementType.BFloat16
            ? PackedMatrix.FromBFloat16(values.Select(Atelier.Modeling.SafeTensors.SafeTensorDTypes.ToBFloat16).ToArray(), n, k)
            : new PackedMatrix(values, n, k);
        var y = new float[m * n];
        Sgemm.MultiplyBatchInvariant(m, 1f, x, k, w, 0f, y, n);
        var best = double.MaxValue;
        for (var i = 0; i < reps; i++)
        {
            var sw = Stopwatch.StartNew();
            Sgemm.MultiplyBatchInvariant(m, 1f, x, k, w, 0f, y, n);
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }

        return 2.0 * m * n * k / best / 1e9;
    }

    private static float[] Random(int n, int seed)
    {
        var r = new Random(seed);
        var x = new float[n];
        for (var i = 0; i < n; i++)
        {
            x[i] = (float)r.NextDouble() - 0.5f;
        }

        return x;
    }
}
