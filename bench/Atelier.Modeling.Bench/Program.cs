using System.Diagnostics;
using System.Globalization;
using System.Runtime.Intrinsics;
using Atelier.Modeling.Kernels;
using Atelier.Modeling.Mistral;
using Atelier.Modeling.Sampling;
using Atelier.Modeling.Training;

// Macro benchmark of the model engine: SGEMM against numpy/OpenBLAS measured by bench/modeling.sh in the
// same run, against the machine's FMA peak, and training/inference throughput of a ~10M and ~100M model.
//   dotnet Atelier.Modeling.Bench.dll gemv [--threads N] [--rounds N] [--models 100m,1b]   (packed-product micro-benchmark, GemvBench.cs)
//   dotnet Atelier.Modeling.Bench.dll train [--python PY] [--threads N] [--sizes tiny,10m,100m] [--runs N]   (bench/train.sh)
//   dotnet Atelier.Modeling.Bench.dll [--python /usr/bin/python3] [--sizes 512,1024] [--models 10m,100m] [--skip-models] [--skip-sgemm] [--threads N]
if (args is ["gemv", ..])
{
    // The packed product at decode shapes, float32 and bf16, against the memory limits (GemvBench.cs).
    Environment.ExitCode = GemvBench.Run(args[1..]);
    return;
}

if (args is ["train", ..])
{
    // bench/train.sh: LoRA training against a PyTorch loop (TrainBench.cs).
    Environment.ExitCode = TrainBench.Run(args[1..]);
    return;
}

var inv = CultureInfo.InvariantCulture;
string? python = null;
var sizes = new[] { 512, 1024, 2048, 4096 };
var models = new[] { "10m", "100m" };
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--python": python = args[++i]; break;
        case "--sizes": sizes = args[++i].Split(',').Select(int.Parse).ToArray(); break;
        case "--models": models = args[++i].Split(',', StringSplitOptions.RemoveEmptyEntries); break;
        case "--skip-models": models = []; break;
        case "--skip-sgemm": sizes = []; break;
        case "--threads": KernelParallelism.MaxThreads = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        default: throw new ArgumentException($"unknown argument {args[i]}");
    }
}

var blasName = "";

// ---- Machine ----
var cpuinfo = File.Exists("/proc/cpuinfo") ? File.ReadAllLines("/proc/cpuinfo") : [];
var model = cpuinfo.FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':')[1].Trim() ?? "unknown";
var mhz = cpuinfo.Where(l => l.StartsWith("cpu MHz", StringComparison.Ordinal)).Select(l => double.Parse(l.Split(':')[1], inv)).DefaultIfEmpty(0).Max();
var flags = cpuinfo.FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal)) ?? "";
var lanes = flags.Contains(" avx512f", StringComparison.Ordinal) ? 16 : flags.Contains(" avx2", StringComparison.Ordinal) ? 8 : 4;
var cores = Environment.ProcessorCount;
const int FmaPipes = 2; // two FMA pipes per core on Zen 4/5 and Intel server cores; an assumption, stated in the output
var nominalPeak = cores * mhz / 1000 * lanes * 2 * FmaPipes;
Console.WriteLine($"# Atelier model engine benchmark");
Console.WriteLine();
Console.WriteLine($"- CPU: {model}, {cores} cores visible, {mhz:F0} MHz reported by /proc/cpuinfo, {lanes}-lane FMA ({(lanes == 16 ? "AVX-512" : "AVX2")})");
Console.WriteLine($"- .NET {Environment.Version}, Vector512 accelerated: {Vector512.IsHardwareAccelerated}");
Console.WriteLine($"- Threads: {KernelParallelism.MaxThreads} for Atelier, OPENBLAS_NUM_THREADS={KernelParallelism.MaxThreads} for numpy");
Console.WriteLine($"- Load average at start (/proc/loadavg; the machine is shared): {LoadAverage()}");
Console.WriteLine($"- Nominal fp32 peak = cores × GHz × lanes × 2 (FMA) × {FmaPipes} pipes = {nominalPeak:F1} GFLOP/s");
var measuredPeak = MeasureFmaPeak(cores);
Console.WriteLine($"- Measured fp32 FMA throughput (register-only FMA loop on every core, best of 40 bursts): {measuredPeak:F1} GFLOP/s");
Console.WriteLine();

// ---- SGEMM ----
if (sizes.Length > 0)
{
    // Ours and numpy's are measured alternately, size by size, and the best of each is kept, so that
    // load from other processes on a shared machine hits both sides alike.
    var rows = new List<string>();
    foreach (var n in sizes)
    {
        var a = Random(n * n, 1);
        var b = Random(n * n, 2);
        var c = new float[n * n];
        var reps = n <= 512 ? 20 : n <= 1024 ? 8 : n <= 2048 ? 3 : 1;
        var rounds = n >= 4096 ? 2 : n >= 2048 ? 4 : 6;
        double nn = double.MaxValue, nt = double.MaxValue, theirs = double.NaN;
        for (var round = 0; round < rounds; round++)
        {
            nn = Math.Min(nn, Best(reps, () => Sgemm.MatMul(a, b, c, n, n, n)));
            nt = Math.Min(nt, Best(reps, () => Sgemm.Multiply(false, true, n, n, n, 1f, a, n, b, n, 0f, c, n)));
            if (python is not null)
            {
                var (gflops, lib) = Numpy(python, n, reps);
                theirs = double.IsNaN(theirs) ? gflops : Math.Max(theirs, gflops);
                blasName = lib;
            }
        }

        var flops = 2.0 * n * n * n;
        var ours = flops / nn / 1e9;
        rows.Add($"| {n} | {ours:F1} | {flops / nt / 1e9:F1} | {(double.IsNaN(theirs) ? "n/a" : theirs.ToString("F1", inv))} | {(double.IsNaN(theirs) ? "n/a" : (ours / theirs).ToString("P0", inv))} | {ours / (nominalPeak * Math.Min(cores, KernelParallelism.MaxThreads) / cores):P0} |");
    }

    Console.WriteLine($"## SGEMM (square fp32; best of N runs after a warm-up, alternating with numpy){(blasName.Length > 0 ? $"; numpy BLAS: {blasName}" : "")}");
    Console.WriteLine();
    Console.WriteLine("| n | Atelier A·B GFLOP/s | Atelier A·Bᵀ GFLOP/s | numpy/OpenBLAS GFLOP/s | Atelier / OpenBLAS | Atelier / nominal peak of the threads used |");
    Console.WriteLine("|---|---|---|---|---|---|");
    foreach (var r in rows)
    {
        Console.WriteLine(r);
    }

    Console.WriteLine();
}

// ---- Models ----
if (models.Length > 0)
{
    Console.WriteLine("## Model throughput (fp32, LoRA rank 16 on all seven projections, all cores)");
    Console.WriteLine();
    Console.WriteLine("| model | params | train seq | train tokens/s | prefill tokens/s (128) | decode tokens/s (greedy, 1 seq) |");
    Console.WriteLine("|---|---|---|---|---|---|");
    foreach (var name in models)
    {
        var margs = name switch
        {
            "10m" => new MistralArgs(256, 8, 64, 768, 4, 2, 1e-5f, 8192),
            "100m" => new MistralArgs(768, 8, 64, 2048, 12, 4, 1e-5f, 32768),
            _ => throw new ArgumentException($"unknown model {name}"),
        };
        RunModel(name, margs);
    }
}

static void RunModel(string name, MistralArgs margs)
{
    using var m = new MistralModel(MistralWeights.CreateRandom(margs, 1), LoraAdapter.Create(margs, new LoraConfig(16, 32), 2));
    const int seq = 256;
    var rng = new Random(3);
    var tokens = Enumerable.Range(0, 2).Select(_ => Enumerable.Range(0, (seq / 2) + 1).Select(_ => rng.Next(margs.VocabSize)).ToArray()).ToArray();
    var batch = TrainingBatch.Pack(tokens);
    using var trainer = new LoraTrainer(m, new LoraTrainingOptions(new WarmupCosineSchedule(1e-4f, 1, 100), new AdamWOptions()));
    trainer.Step([batch]);
    var steps = margs.Dim >= 512 ? 3 : 8;
    var sw = Stopwatch.StartNew();
    for (var s = 0; s < steps; s++)
    {
        trainer.Step([batch]);
    }

    var trainTps = steps * batch.Length / sw.Elapsed.TotalSeconds;

    var prompt = Enumerable.Range(0, 128).Select(_ => rng.Next(margs.VocabSize)).ToArray();
    using (var warm = m.StartSession(200))
    {
        warm.Append(prompt.AsSpan(0, 16));
    }

    using var session = m.StartSession(prompt.Length + 64);
    sw.Restart();
    session.Append(prompt);
    var prefillTps = prompt.Length / sw.Elapsed.TotalSeconds;
    var decodeTokens = margs.Dim >= 512 ? 32 : 64;
    sw.Restart();
    var next = 1;
    for (var i = 0; i < decodeTokens; i++)
    {
        next = Sampler.Argmax(session.Append([next]));
    }

    var decodeTps = decodeTokens / sw.Elapsed.TotalSeconds;
    Console.WriteLine($"| ~{name} | {margs.ParameterCount / 1e6:F1}M (d={margs.Dim}, L={margs.NLayers}, V={margs.VocabSize}) | {seq} | {trainTps:F0} | {prefillTps:F0} | {decodeTps:F1} |");
}

static string LoadAverage() => File.Exists("/proc/loadavg") ? File.ReadAllText("/proc/loadavg").Trim() : "n/a";

static (double GFlops, string Library) Numpy(string python, int n, int reps)
{
    // Same shape, dtype, warm-up and best-of-reps as our side; reports which BLAS numpy really loaded.
    const string Script = """
import sys, time, numpy as np
n, reps = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(1)
a = (rng.random((n, n), dtype=np.float32) - 0.5); b = (rng.random((n, n), dtype=np.float32) - 0.5)
c = a @ b
best = 1e30
for _ in range(reps):
    t = time.perf_counter(); c = a @ b; best = min(best, time.perf_counter() - t)
libs = sorted({l.split()[-1].rsplit('/', 1)[-1] for l in open('/proc/self/maps') if 'blas' in l.lower()})
print(2.0 * n ** 3 / best / 1e9, ','.join(libs) or 'unknown')
""";
    var psi = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
    psi.ArgumentList.Add("-c");
    psi.ArgumentList.Add(Script);
    psi.ArgumentList.Add(n.ToString(CultureInfo.InvariantCulture));
    psi.ArgumentList.Add(reps.ToString(CultureInfo.InvariantCulture));
    psi.Environment.Remove("OPENBLAS_CORETYPE");
    psi.Environment.Remove("OPENBLAS_L2_SIZE");
    psi.Environment["OPENBLAS_NUM_THREADS"] = KernelParallelism.MaxThreads.ToString(CultureInfo.InvariantCulture);
    using var p = Process.Start(psi)!;
    var output = p.StandardOutput.ReadToEnd();
    var err = p.StandardError.ReadToEnd();
    p.WaitForExit();
    if (p.ExitCode != 0)
    {
        Console.Error.WriteLine($"numpy failed: {err}");
        return (double.NaN, "unavailable");
    }

    var parts = output.Trim().Split(' ', 2);
    return (double.Parse(parts[0], CultureInfo.InvariantCulture), parts.Length > 1 ? parts[1] : "unknown");
}

static float[] Random(int n, int seed)
{
    var r = new Random(seed);
    var x = new float[n];
    for (var i = 0; i < n; i++)
    {
        x[i] = (float)r.NextDouble() - 0.5f;
    }

    return x;
}

static double Best(int reps, Action run)
{
    run();
    var best = double.MaxValue;
    for (var i = 0; i < reps; i++)
    {
        var sw = Stopwatch.StartNew();
        run();
        best = Math.Min(best, sw.Elapsed.TotalSeconds);
    }

    return best;
}

static double MeasureFmaPeak(int threads)
{
    // Many short bursts, best kept: like the SGEMM figures, it should catch the quiet moments of a shared machine.
    const long iters = 2_000_000;
    double Run()
    {
        var sw = Stopwatch.StartNew();
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, _ => FmaLoop(iters));
        return threads * iters * 12.0 * 16 * 2 / sw.Elapsed.TotalSeconds / 1e9;
    }

    var best = Run();
    for (var i = 0; i < 40; i++)
    {
        best = Math.Max(best, Run());
    }

    return best;
}

static float FmaLoop(long iters)
{
    // Twelve independent accumulator chains hide the FMA latency (4 cycles × 2 pipes = 8 needed).
    var x = Vector512.Create(1.0000001f);
    var y = Vector512.Create(0.9999999f);
    Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default, a4 = default, a5 = default;
    Vector512<float> a6 = default, a7 = default, a8 = default, a9 = default, a10 = default, a11 = default;
    for (long i = 0; i < iters; i++)
    {
        a0 = Vector512.FusedMultiplyAdd(a0, x, y); a1 = Vector512.FusedMultiplyAdd(a1, x, y);
        a2 = Vector512.FusedMultiplyAdd(a2, x, y); a3 = Vector512.FusedMultiplyAdd(a3, x, y);
        a4 = Vector512.FusedMultiplyAdd(a4, x, y); a5 = Vector512.FusedMultiplyAdd(a5, x, y);
        a6 = Vector512.FusedMultiplyAdd(a6, x, y); a7 = Vector512.FusedMultiplyAdd(a7, x, y);
        a8 = Vector512.FusedMultiplyAdd(a8, x, y); a9 = Vector512.FusedMultiplyAdd(a9, x, y);
        a10 = Vector512.FusedMultiplyAdd(a10, x, y); a11 = Vector512.FusedMultiplyAdd(a11, x, y);
    }

    return Vector512.Sum(a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11);
}
