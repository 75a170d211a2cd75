using System.Diagnostics;
using System.Globalization;
using Atelier.Data.Packing;
using Atelier.Data.Shards;
using Atelier.Modeling.Mistral;
using Atelier.Modeling.Training;
using Atelier.Training.Loading;

// Data loader macro benchmark. Writes token shards like a dataset build would (random tokens of
// the tiny model's byte vocabulary, samples of 200-2000 tokens packed to seq_len), then measures:
//   1. a peer: ArrowShardReader reading every shard front to back (no shuffle, one thread);
//   2. ShardedSequenceLoader over one epoch of the global shuffle with 1 and 2 workers, with the
//      page cache evicted first (cold) and warm;
//   3. the reference LoRA trainer's step time on the tiny model at the same seq_len (its demand);
//   4. short training runs fed by the loader: the time the trainer waited in NextAsync, for each
//      latency injected per remote range read (--latency-ms 0,2,10: ShardSources.WithReadLatency, as
//      a shard on another rack or in an object store), with the loader's default options and with
//      LoaderOptions.ForLatency (coalesced concurrent range reads, read-ahead sized from the latency
//      and the trainer's measured step time); with --modeled-step-ms, the same again with a step
//      that only sleeps that long (a fast accelerator's step), where the loader has far less slack.
//   --runs-only skips 1-2 (and the supply/demand ratios).
// Usage: Atelier.Loader.Bench --dir DIR [--shards 4] [--windows-per-shard 512] [--seq-len 4096]
//        [--batch 1] [--prefetch 4] [--steps 12] [--latency-ms 0] [--modeled-step-ms 0] [--runs-only]
var options = Args.Parse(args);
var dir = options.Get("dir", Path.Combine(Path.GetTempPath(), "atelier-loader-bench"));
var shardCount = options.GetInt("shards", 4);
var perShard = options.GetInt("windows-per-shard", 512);
var seqLen = options.GetInt("seq-len", 4096);
var batchSize = options.GetInt("batch", 1);
var prefetch = options.GetInt("prefetch", 4);
var steps = options.GetInt("steps", 12);
var latencies = options.Get("latency-ms", "0").Split(',').Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray();
var modeledStepMs = options.GetInt("modeled-step-ms", 0);
var runsOnly = options.Has("runs-only");
const double MiB = 1 << 20;

if (Directory.Exists(dir))
{
    Directory.Delete(dir, recursive: true);
}

Directory.CreateDirectory(dir);
var vocab = TinyModelWriter.ByteVocabSize;

// 1. Shards.
var write = Stopwatch.StartNew();
var random = new Random(2026);
var sources = new List<ShardSource>();
long fileBytes = 0;
for (var s = 0; s < shardCount; s++)
{
    var packer = new SequencePacker(seqLen);
    var windows = new List<PackedWindow>();
    long ordinal = 0;
    while (windows.Count < perShard)
    {
        var tokens = new int[random.Next(200, 2000)];
        var mask = new bool[tokens.Length];
        for (var i = 0; i < tokens.Length; i++)
        {
            tokens[i] = random.Next(vocab);
            mask[i] = i > tokens.Length / 4;
        }

        packer.Add(ordinal++, tokens, mask, windows);
    }

    windows.RemoveRange(perShard, windows.Count - perShard);
    var path = Path.Combine(dir, $"shard-{s:D5}.arrow");
    await using (var stream = File.Create(path))
    {
        await ArrowShardWriter.WriteAsync(stream, windows, CancellationToken.None);
    }

    fileBytes += new FileInfo(path).Length;
    sources.Add(new ShardSource(Path.GetFileName(path), perShard, _ => ValueTask.FromResult<Stream>(new FileStream(path, new FileStreamOptions { Mode = FileMode.Open, Access = FileAccess.Read, Share = FileShare.Read, BufferSize = 0, Options = FileOptions.RandomAccess }))));
}

var total = shardCount * perShard;
Console.WriteLine(Invariant($"shards: {shardCount} x {perShard} windows of seq_len {seqLen} = {total} windows, {fileBytes / MiB:F0} MiB on disk (written in {write.Elapsed.TotalSeconds:F1} s)"));

var supply = new Dictionary<string, double>(StringComparer.Ordinal);
if (!runsOnly)
{
    // 2. Peer: sequential ArrowShardReader (decodes whole record batches; no shuffle, no random access).
    PageCache.Evict(dir, "*.arrow");
    var peer = Stopwatch.StartNew();
    long peerWindows = 0;
    foreach (var file in Directory.GetFiles(dir, "*.arrow").Order(StringComparer.Ordinal))
    {
        await using var stream = File.OpenRead(file);
        await foreach (var window in ArrowShardReader.ReadAsync(stream, file))
        {
            peerWindows++;
        }
    }

    var peerSeconds = peer.Elapsed.TotalSeconds;
    Console.WriteLine(Invariant($"peer  ArrowShardReader sequential, cold: {peerWindows / peerSeconds,8:F0} windows/s  {fileBytes / MiB / peerSeconds,7:F0} MiB/s (file bytes)"));
    Console.WriteLine(Invariant($"RESULT peer_windows_s={peerWindows / peerSeconds:F0}"));

    // 3. The loader over one epoch, cold and warm, 1 and 2 workers.
    foreach (var cold in new[] { true, false })
    {
        foreach (var workers in new[] { 1, 2 })
        {
            if (cold)
            {
                PageCache.Evict(dir, "*.arrow");
            }

            var loaderOptions = new LoaderOptions { Seed = 1, BatchSize = batchSize, Workers = workers, PrefetchBatches = prefetch };
            var clock = Stopwatch.StartNew();
            await using var loader = ShardedSequenceLoader.Open(sources, loaderOptions);
            var batches = total / batchSize;
            for (var b = 0; b < batches; b++)
            {
                _ = await loader.NextAsync();
            }

            var seconds = clock.Elapsed.TotalSeconds;
            var stats = loader.Stats;
            var rate = batches * batchSize / seconds;
            supply[$"{(cold ? "cold" : "warm")}{workers}"] = rate;
            Console.WriteLine(Invariant($"loader shuffled, {(cold ? "cold" : "warm")}, {workers} worker(s): {rate,8:F0} windows/s  {stats.BytesRead / MiB / seconds,7:F0} MiB/s (column bytes)  {rate * seqLen / 1e6,6:F1} M tokens/s"));
            Console.WriteLine(Invariant($"RESULT loader_{(cold ? "cold" : "warm")}_{workers}w_windows_s={rate:F0} mibs={stats.BytesRead / MiB / seconds:F0}"));
        }
    }
}

// 4. The trainer's demand: LoRA steps of the tiny model at the same seq_len, one window per micro-batch.
var modelDir = Path.Combine(dir, "model");
TinyModelWriter.Write(modelDir, seed: 7);
using var model = MistralModel.Load(modelDir);
model.Adapter = LoraAdapter.Create(model.Args, new LoraConfig(8, 16f), 7);
using var trainer = new LoraTrainer(model, new LoraTrainingOptions(new WarmupCosineSchedule(1e-3f, 2, 1000), new AdamWOptions(), 1f, 7));
var warmLoader = new LoaderOptions { Seed = 2, BatchSize = batchSize, Workers = 2, PrefetchBatches = prefetch };
double stepSeconds;
await using (var feed = ShardedSequenceLoader.Open(sources, warmLoader))
{
    // Warm-up (JIT, buffers), then timed steps on batches already in memory.
    var held = new List<LoaderBatch>();
    for (var i = 0; i < 4; i++)
    {
        held.Add(await feed.NextAsync());
    }

    trainer.Step(Micro(held[0]));
    var stepClock = Stopwatch.StartNew();
    for (var i = 1; i < held.Count; i++)
    {
        trainer.Step(Micro(held[i]));
    }

    stepSeconds = stepClock.Elapsed.TotalSeconds / (held.Count - 1);
    var demand = batchSize / stepSeconds;
    Console.WriteLine(Invariant($"trainer (tiny model, LoRA r8, {batchSize} window(s)/step): {stepSeconds * 1000,8:F0} ms/step = {demand,8:F1} windows/s demand"));
    Console.WriteLine(Invariant($"RESULT trainer_step_ms={stepSeconds * 1000:F0} demand_windows_s={demand:F2}"));
    foreach (var (name, rate) in supply)
    {
        Console.WriteLine(Invariant($"supply/demand, loader {name[..4]} {name[4..]} worker(s): {rate / demand,8:F0}x"));
    }

    if (!runsOnly)
    {
        Console.WriteLine(Invariant($"RESULT ratio_cold_1w={supply["cold1"] / demand:F0} ratio_cold_2w={supply["cold2"] / demand:F0} ratio_warm_2w={supply["warm2"] / demand:F0}"));
    }
}

// 5. Short training runs fed by the loader (cold cache), with each injected latency per remote range
// read: how long did the trainer wait for data, as a share of its step time? (Variants below.) The
// step time measured above sizes "sized". The first NextAsync waits for the shard checks and the first read: a
// start-up cost, reported apart.
var seed = 3UL;
foreach (var latencyMs in latencies)
{
    var latency = TimeSpan.FromMilliseconds(latencyMs);
    var remote = latencyMs > 0 ? ShardSources.WithReadLatency(sources, latency) : sources;
    string[] variants = latencyMs > 0 ? ["unbatched", "default", "sized"] : ["default"];
    foreach (var variant in variants)
    {
        var loaderOptions = Variant(warmLoader with { Seed = seed++ }, variant, latency, TimeSpan.FromSeconds(stepSeconds));
        var (run, first, waited, waits, stats) = await TrainAsync(remote, loaderOptions, steps, batch => trainer.Step(Micro(batch)));
        Report("trainer", latencyMs, variant, loaderOptions, run, first, waited, waits, stats, steps);
    }

    if (modeledStepMs > 0)
    {
        // A fast accelerator's step: the loader's slack is the step time, so latency shows far sooner.
        var modeledSteps = Math.Max(steps, 5000 / modeledStepMs);
        foreach (var variant in variants)
        {
            var loaderOptions = Variant(warmLoader with { Seed = seed++ }, variant, latency, TimeSpan.FromMilliseconds(modeledStepMs));
            var (run, first, waited, waits, stats) = await TrainAsync(remote, loaderOptions, modeledSteps, _ => Thread.Sleep(modeledStepMs));
            Report(Invariant($"modeled-{modeledStepMs}ms"), latencyMs, variant, loaderOptions, run, first, waited, waits, stats, modeledSteps);
        }
    }
}

Directory.Delete(dir, recursive: true);

async Task<(TimeSpan Run, TimeSpan First, TimeSpan Waited, long Waits, LoaderStats Stats)> TrainAsync(IReadOnlyList<ShardSource> feedFrom, LoaderOptions loaderOptions, int count, Action<LoaderBatch> step)
{
    PageCache.Evict(dir, "*.arrow");
    await using var feed = ShardedSequenceLoader.Open(feedFrom, loaderOptions);
    var first = TimeSpan.Zero;
    var clock = Stopwatch.StartNew();
    for (var i = 0; i < count; i++)
    {
        var batch = await feed.NextAsync();
        if (i == 0)
        {
            first = feed.Stats.WaitTime;
            clock.Restart();
        }

        step(batch);
    }

    var stats = feed.Stats;
    return (clock.Elapsed, first, stats.WaitTime - first, stats.Waits, stats);
}

// "unbatched": one slice at a time per batch, never merged: how the loader read before range reads
// were coalesced and run concurrently. "default": the options a job uses today. "sized": ForLatency
// with the latency and the step time.
static LoaderOptions Variant(LoaderOptions options, string variant, TimeSpan latency, TimeSpan stepTime) => variant switch
{
    "unbatched" => options with { ConcurrentReads = options.Workers, CoalesceGapBytes = 0, MaxRangeBytes = 1 },
    "sized" => options.ForLatency(latency, stepTime),
    _ => options,
};

static void Report(string trainerName, double latencyMs, string name, LoaderOptions used, TimeSpan run, TimeSpan first, TimeSpan waited, long waits, LoaderStats stats, int count)
{
    // Steps 2..count: the run clock starts once the first batch is in hand.
    var compute = run - waited;
    var stepMs = compute.TotalMilliseconds / (count - 1);
    var pct = 100 * waited.TotalMilliseconds / compute.TotalMilliseconds;
    Console.WriteLine(Invariant($"{trainerName}, {latencyMs:F0} ms per remote read, loader {name} (workers {used.Workers}, prefetch {used.PrefetchBatches}, {used.ConcurrentReads} reads at once, gap {used.CoalesceGapBytes / 1024} KiB): {count} steps of {stepMs:F0} ms; first batch {first.TotalMilliseconds:F0} ms (start-up); then waited {waited.TotalMilliseconds:F1} ms = {pct:F2}% of step time; {stats.RangeReads} range reads for {stats.WindowsRead} windows"));
    Console.WriteLine(Invariant($"RESULT wait trainer={trainerName} latency_ms={latencyMs:F0} loader={name} step_ms={stepMs:F0} first_ms={first.TotalMilliseconds:F0} waited_ms={waited.TotalMilliseconds:F1} waited_pct={pct:F2} waits={waits}"));
}

static List<TrainingBatch> Micro(LoaderBatch batch) =>
    [.. batch.Windows.Select(Atelier.Training.Jobs.FineTuningRunner.ToBatch)];

static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
