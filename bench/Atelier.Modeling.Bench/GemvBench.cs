using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using Atelier.Modeling.Kernels;

/// <summary>
/// Kernel micro-benchmark for issue 15 (<c>Atelier.Modeling.Bench.dll gemv</c>): the packed product at the serving
/// engine's decode shapes, float32 and bf16 weights, against the machine's memory limits measured in the same run.
/// </summary>
/// <remarks>
/// Each weight is packed into enough copies to exceed the last-level cache (at least 256 MiB in all), and the product
/// cycles through them, so every figure streams its weights from memory as a decode step over a whole model does.
/// The peers: a read-only stream (every thread sums its part of a 1 GiB buffer, the faster of two loops: bytes read,
/// the physical limit of a weight stream) and STREAM copy (bytes read + written, how bench/serving.sh defines the decode roofline).
/// </remarks>
internal static unsafe class GemvBench
{
    private const long CopyBytes = 256L << 20;

    private static readonly (string Model, string Name, int N, int K)[] Shapes =
    [
        ("~100m", "wqkv", 1536, 768), ("~100m", "wo", 768, 768), ("~100m", "w1|w3", 4096, 768), ("~100m", "w2", 768, 2048), ("~100m", "output", 32768, 768),
        ("~1b", "wqkv", 2560, 2048), ("~1b", "wo", 2048, 2048), ("~1b", "w1|w3", 11264, 2048), ("~1b", "w2", 2048, 5632), ("~1b", "output", 32768, 2048),
    ];

    public static int Run(string[] args)
    {
        var rounds = 5;
        var models = new[] { "~100m", "~1b" };
        string[]? weights = null;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--threads": KernelParallelism.MaxThreads = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--rounds": rounds = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
                case "--models": models = args[++i].Split(',').Select(m => "~" + m).ToArray(); break;
                case "--weights": weights = args[++i].Split(','); break;
                default: throw new ArgumentException($"unknown argument {args[i]}");
            }
        }

        var threads = KernelParallelism.MaxThreads;
        Console.WriteLine("# Packed-product micro-benchmark (issue 15)");
        Console.WriteLine();
        Console.WriteLine(Inv($"- {threads} threads, Vector512 accelerated: {Vector512.IsHardwareAccelerated}; load average at start: {LoadAverage()}"));
        var read = ReadStreamGBs(threads);
        var copy = MachineLimits.StreamCopyGBs(threads);
        var sgemm = MachineLimits.SgemmGFlops(2048, 4);
        Console.WriteLine(Inv($"- read-only stream ({threads} threads, 1 GiB): {read:F1} GB/s; STREAM copy (read + written, 2 × 512 MiB): {copy:F1} GB/s; SGEMM 2048²: {sgemm:F1} GFLOP/s"));
        Console.WriteLine();
        Console.WriteLine("1-row product: GB/s of weights streamed (packed bytes ÷ time); 'blocked' is the pre-change loop (one fork/join per 256-deep k block),");
        Console.WriteLine("'panel' the one-fork/join panel-outer loop; 'read beside' the read-only stream measured again just before the row (the machine is");
        Console.WriteLine("shared and its bandwidth moves by tens of percent within a run). 32-row product: GFLOP/s, blocked loop against panel-outer, ratio to SGEMM 2048².");
        Console.WriteLine();
        Console.WriteLine("| model | weight | n × k | type | MB | m=1 blocked GB/s | m=1 panel GB/s | read beside GB/s | ÷ read beside | ÷ STREAM copy at start | m=32 blocked GFLOP/s | m=32 panel GFLOP/s | ÷ SGEMM (best) |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        var readMax = read;
        var totals = new Dictionary<(string, string), (double Bytes, double Seconds1, double Flops32, double Seconds32, double ReadSum, int Rows)>();
        foreach (var (model, name, n, k) in Shapes)
        {
            if (!models.Contains(model) || (weights != null && !weights.Contains(name)))
            {
                continue;
            }

            foreach (var type in new[] { PackedElementType.Float32, PackedElementType.BFloat16 })
            {
                var copies = Pack(n, k, type);
                try
                {
                    var bytes = copies[0].StorageBytes;
                    var readBeside = ReadStreamGBs(threads, passes: 4);
                    readMax = Math.Max(readMax, readBeside);
                    var blocked1 = Seconds(copies, 1, 0, rounds);
                    var panel1 = Seconds(copies, 1, 4, rounds);
                    var blocked32 = Seconds(copies, 32, 0, rounds);
                    var panel32 = Seconds(copies, 32, 32, rounds);
                    var flops32 = 2.0 * 32 * n * k;
                    var gbs = bytes / panel1 / 1e9;
                    Console.WriteLine(Inv($"| {model} | {name} | {n} × {k} | {type} | {bytes / 1e6:F1} | {bytes / blocked1 / 1e9:F1} | {gbs:F1} | {readBeside:F1} | {gbs / readBeside:P1} | {gbs / copy:P1} | {flops32 / blocked32 / 1e9:F1} | {flops32 / panel32 / 1e9:F1} | {flops32 / Math.Min(blocked32, panel32) / 1e9 / sgemm:P1} |"));
                    var key = (model, type.ToString());
                    totals.TryGetValue(key, out var t);
                    totals[key] = (t.Bytes + bytes, t.Seconds1 + panel1, t.Flops32 + flops32, t.Seconds32 + Math.Min(blocked32, panel32), t.ReadSum + readBeside, t.Rows + 1);
                }
                finally
                {
                    foreach (var c in copies)
                    {
                        c.Dispose();
                    }
                }
            }
        }

        var copyEnd = MachineLimits.StreamCopyGBs(threads);
        var copyMax = Math.Max(copy, copyEnd);
        Console.WriteLine();
        Console.WriteLine(Inv($"STREAM copy again at the end: {copyEnd:F1} GB/s. The limits used below are the highest of the run: read-only stream {readMax:F1} GB/s, STREAM copy {copyMax:F1} GB/s."));
        Console.WriteLine();
        Console.WriteLine("Whole set (one of each weight, as a decode step reads them; the layer count scales both sides equally):");
        Console.WriteLine();
        foreach (var ((model, type), t) in totals)
        {
            var gbs = t.Bytes / t.Seconds1 / 1e9;
            var rate = t.Flops32 / t.Seconds32 / 1e9;
            var readMean = t.ReadSum / t.Rows;
            Console.WriteLine(Inv($"- {model} {type}: 1-row {gbs:F1} GB/s = {gbs / readMax:P1} of the highest read stream, {gbs / readMean:P1} of the mean read stream beside its rows ({readMean:F1} GB/s), {gbs / copyMax:P1} of the highest STREAM copy (goal ≥ 70% of the copy roofline: {(gbs / copyMax >= 0.7 ? "met" : "NOT met")}); 32-row {rate:F1} GFLOP/s = {rate / sgemm:P1} of SGEMM 2048² (goal ≥ 50%: {(rate / sgemm >= 0.5 ? "met" : "NOT met")})"));
        }

        Console.WriteLine();
        Console.WriteLine(Inv($"Load average at end: {LoadAverage()}"));
        return 0;
    }

    private static PackedMatrix[] Pack(int n, int k, PackedElementType type)
    {
        var r = new Random(n ^ k);
        var count = n * k;
        var bytesEach = (long)count * (type == PackedElementType.BFloat16 ? 2 : 4);
        var copies = (int)Math.Max(2, (CopyBytes + bytesEach - 1) / bytesEach);
        var result = new PackedMatrix[copies];
        if (type == PackedElementType.BFloat16)
        {
            var bits = new ushort[count];
            for (var i = 0; i < count; i++)
            {
                bits[i] = (ushort)(BitConverter.SingleToUInt32Bits((float)r.NextDouble() - 0.5f) >> 16);
            }

            for (var c = 0; c < copies; c++)
            {
                result[c] = PackedMatrix.FromBFloat16(bits, n, k);
            }
        }
        else
        {
            var w = new float[count];
            for (var i = 0; i < count; i++)
            {
                w[i] = (float)r.NextDouble() - 0.5f;
            }

            for (var c = 0; c < copies; c++)
            {
                result[c] = new PackedMatrix(w, n, k);
            }
        }

        return result;
    }

    /// <summary>Seconds per product of <paramref name="m"/> rows, cycling through the copies; best round of <paramref name="rounds"/>.</summary>
    private static double Seconds(PackedMatrix[] copies, int m, int panelOuterMaxRows, int rounds)
    {
        var saved = Sgemm.PanelOuterMaxRows;
        Sgemm.PanelOuterMaxRows = panelOuterMaxRows;
        try
        {
            var n = copies[0].Rows;
            var k = copies[0].Columns;
            var x = new float[m * k];
            for (var i = 0; i < x.Length; i++)
            {
                x[i] = (i % 7) - 3;
            }

            var y = new float[m * n];
            foreach (var w in copies)
            {
                Sgemm.MultiplyBatchInvariant(m, 1f, x, k, w, 0f, y, n);
            }

            // At least ~0.1 s a round, however small the matrices.
            var best = double.MaxValue;
            for (var round = 0; round < rounds; round++)
            {
                var products = 0;
                var sw = Stopwatch.StartNew();
                do
                {
                    foreach (var w in copies)
                    {
                        Sgemm.MultiplyBatchInvariant(m, 1f, x, k, w, 0f, y, n);
                    }

                    products += copies.Length;
                }
                while (sw.Elapsed.TotalSeconds < 0.1);
                best = Math.Min(best, sw.Elapsed.TotalSeconds / products);
            }

            return best;
        }
        finally
        {
            Sgemm.PanelOuterMaxRows = saved;
        }
    }

    /// <summary>
    /// Every thread sums its contiguous part of a 1 GiB buffer with 512-bit loads; bytes read ÷ time, best of 8 passes
    /// of each of two loops (eight accumulators with and without a software prefetch 1 KiB ahead), whichever is faster.
    /// </summary>
    private static double ReadStreamGBs(int threads, int passes = 9)
    {
        const long Bytes = 1L << 30;
        var buffer = (float*)NativeMemory.AlignedAlloc((nuint)Bytes, 64);
        try
        {
            new Span<byte>(buffer, (int)Bytes).Clear();
            var floats = Bytes / sizeof(float);
            var part = floats / threads;
            var sinks = new float[threads];
            var best = double.MaxValue;
            foreach (var prefetch in new[] { false, true })
            {
                for (var pass = 0; pass < passes; pass++)
                {
                    var sw = Stopwatch.StartNew();
                    Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
                    {
                        var p = buffer + (part * t);
                        var end = p + part;
                        Vector512<float> s0 = default, s1 = default, s2 = default, s3 = default, s4 = default, s5 = default, s6 = default, s7 = default;
                        for (; p < end; p += 128)
                        {
                            if (prefetch)
                            {
                                Sse.Prefetch0(p + 256);
                                Sse.Prefetch0(p + 272);
                                Sse.Prefetch0(p + 288);
                                Sse.Prefetch0(p + 304);
                                Sse.Prefetch0(p + 320);
                                Sse.Prefetch0(p + 336);
                                Sse.Prefetch0(p + 352);
                                Sse.Prefetch0(p + 368);
                            }

                            s0 += Vector512.LoadAligned(p);
                            s1 += Vector512.LoadAligned(p + 16);
                            s2 += Vector512.LoadAligned(p + 32);
                            s3 += Vector512.LoadAligned(p + 48);
                            s4 += Vector512.LoadAligned(p + 64);
                            s5 += Vector512.LoadAligned(p + 80);
                            s6 += Vector512.LoadAligned(p + 96);
                            s7 += Vector512.LoadAligned(p + 112);
                        }

                        sinks[t] = Vector512.Sum(s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7);
                    });
                    if (pass > 0)
                    {
                        best = Math.Min(best, sw.Elapsed.TotalSeconds);
                    }
                }
            }

            return Bytes / best / 1e9;
        }
        finally
        {
            NativeMemory.AlignedFree(buffer);
        }
    }

    private static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";

    private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
