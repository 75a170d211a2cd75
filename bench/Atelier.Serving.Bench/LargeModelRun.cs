using System.Diagnostics;
using Atelier.Inference;
using Atelier.Modeling.Kernels;
using Atelier.Modeling.Mistral;

/// <summary>
/// A 7B-shaped bf16 checkpoint served as loaded (decision 0024): load time, peak memory against the issue's
/// 24 GiB, and decode at batch 1 against the memory-bandwidth roofline of the weights as held (bf16).
/// </summary>
/// <remarks>
/// Decode only: on a 2-core machine a 7B step takes seconds, so the batched, prefix-cache and LoRA
/// scenarios of <see cref="ServingRun"/> stay on the smaller models. The PyTorch peer is not run here
/// (its loop would hold a float32 copy of ~29 GB).
/// </remarks>
internal static class LargeModelRun
{
    private const long Goal = 24L << 30;

    public static async Task<List<string>> RunAsync(ModelSpec spec, string dir, int threads)
    {
        var a = spec.Args;
        var name = "~" + spec.Name;
        var rows = new List<string>();
        var clock = Stopwatch.StartNew();
        Console.WriteLine(Bench.Inv($"## {name}: {a.ParameterCount / 1e9:F2}B parameters (d={a.Dim}, L={a.NLayers}, hidden={a.HiddenDim}, {a.NHeads} heads / {a.NKvHeads} KV heads of {a.HeadDim}, V={a.VocabSize}), bf16 weights"));
        Console.WriteLine();

        var path = Path.Combine(dir, $"{spec.Name}.safetensors");
        try
        {
            RandomCheckpoint.Write(a, path, 42, bf16: true);
            Log(clock, Bench.Inv($"random bf16 weights written as safetensors ({new FileInfo(path).Length / 1e9:F2} GB); load {Bench.LoadAverage()}"));

            var loadClock = Stopwatch.StartNew();
            using var weights = PackedModelWeights.Load(a, path);
            var loadSeconds = loadClock.Elapsed.TotalSeconds;
            var afterLoad = ProcessMemory.Read();
            Log(clock, Bench.Inv($"loaded as {weights.ElementType} in {loadSeconds:F1} s (the file partly in the page cache as just written): {weights.ResidentBytes / 1e9:F2} GB held (packed projections and output, norms), {weights.MappedBytes / 1e9:F2} GB of embeddings used in place from the map; process {afterLoad}"));

            // The bytes one decode step streams: every packed matrix as stored, the norms, one embedding row.
            var bytesPerToken = weights.ResidentBytes + (a.Dim * 2L);
            var kvPerPosition = 2L * a.NLayers * a.KvWidth * sizeof(float);
            var prompt = Enumerable.Range(0, 16).Select(i => 1 + (i * 997 % (a.VocabSize - 1))).ToArray();
            double decodeTps;
            var engine = new InferenceEngine(weights, new InferenceEngineOptions { KvCacheBytes = kvPerPosition * 256 });
            await using (engine.ConfigureAwait(false))
            {
                // Warm-up (first-call allocations, thread-local buffers), then the steady rate between the first and last token.
                await Decode(engine, prompt, 2);
                Log(clock, Bench.Inv($"warm-up done; load {Bench.LoadAverage()}"));
                var (first, last) = await Decode(engine, prompt, spec.DecodeTokens);
                decodeTps = (spec.DecodeTokens - 1) / (last - first);
                Log(clock, Bench.Inv($"decode at batch 1: {decodeTps:F3} tokens/s ({1000 / decodeTps:F0} ms/token); load {Bench.LoadAverage()}"));
            }

            // Read before the limit's run, whose two 512 MiB arrays would otherwise count in the peak.
            var end = ProcessMemory.Read();
            Log(clock, $"process after decoding: {end}");
            var stream = MachineLimits.StreamCopyGBs(threads);
            Log(clock, Bench.Inv($"STREAM copy {stream:F1} GB/s ({threads} threads), measured after the engine in the same run; load {Bench.LoadAverage()}"));

            var roofline = stream * 1e9 / bytesPerToken;
            rows.Add(Row(name, "peak memory (VmHWM), bf16 weights + 64 MiB KV", Bench.Inv($"{end.PeakBytes / (double)(1L << 30):F2} GiB"),
                Bench.Inv($"24 GiB (weights held {weights.ResidentBytes / (double)(1L << 30):F2} GiB, load {loadSeconds:F0} s)"), end.PeakBytes / (double)Goal, "≤ 100%", end.PeakBytes <= Goal));
            rows.Add(Row(name, "decode tokens/s, batch 1", Bench.Inv($"{decodeTps:F3}"),
                Bench.Inv($"roofline {roofline:F3} tokens/s ({bytesPerToken / 1e9:F2} GB of weights as held per token ÷ {stream:F1} GB/s STREAM copy)"), decodeTps / roofline, "≥ 70%", decodeTps / roofline >= 0.70));
            return rows;
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static async Task<(double First, double Last)> Decode(InferenceEngine engine, int[] prompt, int tokens)
    {
        var clock = Stopwatch.StartNew();
        double first = -1, last = 0;
        var stream = engine.Submit(new GenerationRequest(prompt, tokens));
        await foreach (var _ in stream)
        {
            last = clock.Elapsed.TotalSeconds;
            if (first < 0)
            {
                first = last;
            }
        }

        await stream.Completion;
        return (first, last);
    }

    private static string Row(string model, string figure, string value, string peer, double ratio, string goal, bool met)
        => $"| {model} | {figure} | {value} | {peer} | {ratio * 100:F0}% | {goal} | {Bench.Met(met)} |";

    private static void Log(Stopwatch clock, string line) => Console.WriteLine(Bench.Inv($"- [{clock.Elapsed.TotalSeconds,5:F0} s] {line}"));
}

/// <summary>The process's memory as /proc/self/status reports it: peak and current resident set, and its anonymous part.</summary>
internal readonly record struct ProcessMemory(long PeakBytes, long ResidentBytes, long AnonymousBytes)
{
    public static ProcessMemory Read()
    {
        long Field(string[] lines, string key)
        {
            var line = lines.FirstOrDefault(l => l.StartsWith(key, StringComparison.Ordinal));
            return line is null ? -1 : long.Parse(line[key.Length..].Trim().Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture) * 1024;
        }

        var status = File.Exists("/proc/self/status") ? File.ReadAllLines("/proc/self/status") : [];
        return new ProcessMemory(Field(status, "VmHWM:"), Field(status, "VmRSS:"), Field(status, "RssAnon:"));
    }

    public override string ToString()
        => Bench.Inv($"VmHWM {PeakBytes / (double)(1L << 30):F2} GiB, VmRSS {ResidentBytes / (double)(1L << 30):F2} GiB (RssAnon {AnonymousBytes / (double)(1L << 30):F2} GiB)");
}
