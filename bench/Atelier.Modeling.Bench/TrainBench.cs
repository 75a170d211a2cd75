using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Atelier.Modeling.Kernels;
using Atelier.Modeling.Mistral;
using Atelier.Modeling.SafeTensors;
using Atelier.Modeling.Training;

/// <summary>
/// LoRA training tokens/s of Atelier against a PyTorch loop (torch_lora_train.py) on the same model: both
/// read the same safetensors weights, adapter initialisation and tokens written here, train with the same
/// LoRA rank, alpha and targets, AdamW hyper-parameters, clipping and learning-rate schedule, and the same
/// tokens per step. Runs alternate (Atelier, PyTorch, Atelier, ...) with the other engine idle, so both see
/// the same machine; the median of each is compared. Both engines' first-step losses are printed as a check
/// that they train the same thing.
/// </summary>
internal static class TrainBench
{
    private sealed record Size(string Name, MistralArgs Args, int StepsPerRun, int Runs);

    private const int Batch = 2;
    private const int Seq = 128;
    private const int WarmupSteps = 3;
    private const float Lr = 1e-4f;
    private const int LrWarmup = 2;
    private const int LrTotal = 1000;

    public static int Run(string[] args)
    {
        var inv = CultureInfo.InvariantCulture;
        var python = "/usr/bin/python3";
        var threads = 2;
        var names = new[] { "tiny", "10m", "100m" };
        var runsOverride = 0;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--python": python = args[++i]; break;
                case "--threads": threads = int.Parse(args[++i], inv); break;
                case "--sizes": names = args[++i].Split(',', StringSplitOptions.RemoveEmptyEntries); break;
                case "--runs": runsOverride = int.Parse(args[++i], inv); break;
                default: throw new ArgumentException($"unknown argument {args[i]}");
            }
        }

        KernelParallelism.MaxThreads = threads;
        var script = Path.Combine(AppContext.BaseDirectory, "torch_lora_train.py");
        var cpu = File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':')[1].Trim() ?? "unknown"
            : "unknown";
        Console.WriteLine("# LoRA training: Atelier against PyTorch (bench/train.sh)");
        Console.WriteLine();
        Console.WriteLine($"machine: {cpu}, {Environment.ProcessorCount} cores; .NET {Environment.Version}; {threads} threads for each engine (PyTorch: torch.set_num_threads({threads}), OMP_WAIT_POLICY=PASSIVE)");
        Console.WriteLine($"step: fp32, {Batch} sequences x {Seq} tokens = {Batch * Seq} tokens, LoRA rank 16 alpha 32 on all seven projections, AdamW(0.9, 0.95, 1e-8, wd 0.1), clip 1.0, warmup+cosine lr {Lr}");
        Console.WriteLine($"load average at start: {LoadAverage()}");
        Console.WriteLine();

        var sizes = new List<Size>();
        foreach (var n in names)
        {
            sizes.Add(n switch
            {
                "tiny" => new Size(n, TinyModelWriter.DefaultArgs, 60, 7),
                "10m" => new Size(n, new MistralArgs(256, 8, 64, 768, 4, 2, 1e-5f, 8192), 8, 5),
                "100m" => new Size(n, new MistralArgs(768, 8, 64, 2048, 12, 4, 1e-5f, 32768), 2, 3),
                _ => throw new ArgumentException($"unknown size {n} (tiny, 10m, 100m)"),
            });
        }

        var rows = new List<string>();
        var allMet = true;
        foreach (var size in sizes)
        {
            var (row, met) = RunSize(size with { Runs = runsOverride > 0 ? runsOverride : size.Runs }, python, script, threads);
            rows.Add(row);
            allMet &= met;
        }

        Console.WriteLine();
        Console.WriteLine("| model | params | tokens/step | runs x steps | Atelier tokens/s (median, best) | PyTorch tokens/s (median, best) | ratio (median) | first-step loss A / P | load avg (start -> end) | >= 1.0x |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|");
        foreach (var r in rows)
        {
            Console.WriteLine(r);
        }

        Console.WriteLine();
        Console.WriteLine($"load average at end: {LoadAverage()}");
        Console.WriteLine(allMet ? "goal (>= 1.0x PyTorch at every size): met" : "goal (>= 1.0x PyTorch at every size): NOT met");
        return 0;
    }

    private static (string Row, bool Met) RunSize(Size size, string python, string script, int threads)
    {
        var inv = CultureInfo.InvariantCulture;
        var margs = size.Args;
        var cfg = new LoraConfig(16, 32);
        var dir = Path.Combine(Path.GetTempPath(), $"atelier-trainbench-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        try
        {
            // One set of files for both engines: weights, the adapter's initial A (B is zero) and the tokens.
            using (var w = MistralWeights.CreateRandom(margs, 1))
            {
                w.Save(Path.Combine(dir, "consolidated.safetensors"), SafeTensorDType.F32);
            }

            using (var ad = LoraAdapter.Create(margs, cfg, 2))
            {
                ad.Save(Path.Combine(dir, "lora.safetensors"), SafeTensorDType.F32);
            }

            var rng = new Random(3);
            var sequences = new int[Batch][];
            using (var tokens = new BinaryWriter(File.Create(Path.Combine(dir, "tokens.bin"))))
            {
                for (var b = 0; b < Batch; b++)
                {
                    sequences[b] = new int[Seq + 1];
                    for (var t = 0; t <= Seq; t++)
                    {
                        sequences[b][t] = rng.Next(margs.VocabSize);
                        tokens.Write(sequences[b][t]);
                    }
                }
            }

            var opt = new AdamWOptions();
            var p = new Dictionary<string, object>
            {
                ["dim"] = margs.Dim,
                ["n_layers"] = margs.NLayers,
                ["head_dim"] = margs.HeadDim,
                ["n_heads"] = margs.NHeads,
                ["n_kv_heads"] = margs.NKvHeads,
                ["norm_eps"] = margs.NormEps,
                ["rope_theta"] = margs.RopeTheta,
                ["lora_scaling"] = cfg.Scaling,
                ["targets"] = cfg.EffectiveTargets.Select(LinearKinds.ModulePath).ToArray(),
                ["batch"] = Batch,
                ["seq"] = Seq,
                ["lr"] = Lr,
                ["warmup"] = LrWarmup,
                ["total_steps"] = LrTotal,
                ["beta1"] = opt.Beta1,
                ["beta2"] = opt.Beta2,
                ["adam_eps"] = opt.Epsilon,
                ["weight_decay"] = opt.WeightDecay,
                ["max_grad_norm"] = 1.0,
                ["warmup_steps"] = WarmupSteps,
            };
            File.WriteAllText(Path.Combine(dir, "bench.json"), JsonSerializer.Serialize(p));

            var psi = new ProcessStartInfo(python) { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
            psi.ArgumentList.Add(script);
            psi.ArgumentList.Add(dir);
            psi.ArgumentList.Add(threads.ToString(inv));
            psi.Environment["OMP_WAIT_POLICY"] = "PASSIVE";
            psi.Environment["OMP_NUM_THREADS"] = threads.ToString(inv);
            psi.Environment["MKL_NUM_THREADS"] = threads.ToString(inv);
            psi.Environment["OPENBLAS_NUM_THREADS"] = threads.ToString(inv);
            psi.Environment.Remove("OPENBLAS_CORETYPE");
            psi.Environment.Remove("OPENBLAS_L2_SIZE");
            using var torch = Process.Start(psi)!;
            try
            {
                using var model = new MistralModel(
                    MistralWeights.Load(margs, Path.Combine(dir, "consolidated.safetensors")),
                    LoraAdapter.Load(margs, cfg, Path.Combine(dir, "lora.safetensors")));
                var batch = TrainingBatch.Pack(sequences);
                using var trainer = new LoraTrainer(model, new LoraTrainingOptions(new WarmupCosineSchedule(Lr, LrWarmup, LrTotal), opt, MaxGradNorm: 1f));
                var firstA = trainer.Step([batch]).Loss;
                for (var s = 1; s < WarmupSteps; s++)
                {
                    trainer.Step([batch]);
                }

                // PyTorch warms up in its own process meanwhile; measuring starts once both are warm.
                var ready = torch.StandardOutput.ReadLine() ?? throw new InvalidOperationException("the PyTorch loop exited before it was ready (see its stderr above)");
                var readyParts = ready.Split(' ');
                var blas = File.Exists($"/proc/{torch.Id}/maps")
                    ? string.Join(',', File.ReadLines($"/proc/{torch.Id}/maps").Where(l => l.Contains("blas", StringComparison.OrdinalIgnoreCase)).Select(l => Path.GetFileName(l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[^1])).Distinct())
                    : "unknown";
                var firstP = double.Parse(readyParts[1], inv);
                Console.WriteLine($"{size.Name}: {margs.ParameterCount / 1e6:F2}M parameters (d={margs.Dim}, L={margs.NLayers}, hidden={margs.HiddenDim}, heads {margs.NHeads}/{margs.NKvHeads}, V={margs.VocabSize}), LoRA {trainer.OptimizerStepCount} warm-up steps done; {string.Join(' ', readyParts[2..])}, BLAS {blas}");

                var tokensPerRun = (double)size.StepsPerRun * batch.Length;
                var a = new List<double>();
                var t = new List<double>();
                var loadStart = LoadAverage();
                for (var r = 0; r < size.Runs; r++)
                {
                    var sw = Stopwatch.StartNew();
                    for (var s = 0; s < size.StepsPerRun; s++)
                    {
                        trainer.Step([batch]);
                    }

                    a.Add(tokensPerRun / sw.Elapsed.TotalSeconds);

                    torch.StandardInput.WriteLine($"run {size.StepsPerRun}");
                    torch.StandardInput.Flush();
                    var secs = double.Parse(torch.StandardOutput.ReadLine() ?? throw new InvalidOperationException("the PyTorch loop exited mid-run"), inv);
                    t.Add(tokensPerRun / secs);
                    Console.WriteLine(string.Create(inv, $"  run {r + 1}: Atelier {a[^1]:F0} tokens/s, PyTorch {t[^1]:F0} tokens/s"));
                }

                var loadEnd = LoadAverage();
                torch.StandardInput.WriteLine("quit");
                torch.StandardInput.Flush();
                torch.WaitForExit();

                var ma = Median(a);
                var mt = Median(t);
                var ratio = ma / mt;
                var met = ratio >= 1.0;
                var row = string.Create(inv,
                    $"| {size.Name} | {margs.ParameterCount / 1e6:F2}M | {batch.Length} | {size.Runs} x {size.StepsPerRun} | {ma:F0} ({a.Max():F0}) | {mt:F0} ({t.Max():F0}) | {ratio:F2}x | {firstA:F4} / {firstP:F4} | {Load1(loadStart)} -> {Load1(loadEnd)} | {(met ? "met" : "NOT met")} |");
                Console.WriteLine(string.Create(inv, $"  {size.Name}: ratio {ratio:F2}x ({(met ? "met" : "NOT met")}); load {loadStart} -> {loadEnd}"));
                return (row, met);
            }
            finally
            {
                if (!torch.HasExited)
                {
                    torch.Kill();
                    torch.WaitForExit();
                }
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static double Median(List<double> xs)
    {
        var s = xs.Order().ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[(s.Length / 2) - 1] + s[s.Length / 2]) / 2;
    }

    private static string LoadAverage() => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "n/a";

    private static string Load1(string load) => load.Split(' ')[0];
}
