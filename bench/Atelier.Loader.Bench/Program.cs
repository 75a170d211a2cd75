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
//   4. a short training run fed by the loader: the time the trainer waited in NextAsync.
// Usage: Atelier.Loader.Bench --dir DIR [--shards 4] [--windows-per-shard 512] [--seq-len 4096]
//        [--batch 1] [--prefetch 4] [--steps 12]
var options = Args.Parse(args);
var dir = options.Get("dir", Path.Combine(Path.GetTempPath(), "atelier-loader-bench"));
var shardCount = options.GetInt("shards", 4);
var perShard = options.GetInt("windows-per-shard", 512);
var seqLen = options.GetInt("seq-len", 4096);
var batchSize = options.GetInt("batch", 1);
var prefetch = options.GetInt("prefetch", 4);
var steps = options.GetInt("steps", 12);
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
var supply = new Dictionary<string, double>(StringComparer.Ordinal);
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

// 4. The trainer's demand: LoRA steps of the tiny model at the same seq_len, one window per micro-batch.
var modelDir = Path.Combine(dir, "model");
TinyModelWriter.Write(modelDir, seed: 7);
using var model = MistralModel.Load(modelDir);
model.Adapter = LoraAdapter.Create(model.Args, new LoraConfig(8, 16f), 7);
using var trainer = new LoraTrainer(model, new LoraTrainingOptions(new WarmupCosineSchedule(1e-3f, 2, 1000), new AdamWOptions(), 1f, 7));
var warmLoader = new LoaderOptions { Seed = 2, BatchSize = batchSize, Workers = 2, PrefetchBatches = prefetch };
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

    var stepSeconds = stepClock.Elapsed.TotalSeconds / (held.Count - 1);
    var demand = batchSize / stepSeconds;
    Console.WriteLine(Invariant($"trainer (tiny model, LoRA r8, {batchSize} window(s)/step): {stepSeconds * 1000,8:F0} ms/step = {demand,8:F1} windows/s demand"));
    Console.WriteLine(Invariant($"RESULT trainer_step_ms={stepSeconds * 1000:F0} demand_windows_s={demand:F2}"));
    foreach (var (name, rate) in supply)
    {
        Console.WriteLine(Invariant($"supply/demand, loader {name[..4]} {name[4..]} worker(s): {rate / demand,8:F0}x"));
    }

    Console.WriteLine(Invariant($"RESULT ratio_cold_1w={supply["cold1"] / demand:F0} ratio_cold_2w={supply["cold2"] / demand:F0} ratio_warm_2w={supply["warm2"] / demand:F0}"));
}

// 5. A short training run fed by the loader (cold cache): how long did the trainer wait for data?
PageCache.Evict(dir, "*.arrow");
await using (var feed = ShardedSequenceLoader.Open(sources, warmLoader with { Seed = 3 }))
{
    var run = Stopwatch.StartNew();
    var first = TimeSpan.Zero;
    for (var step = 0; step < steps; step++)
    {
        var batch = await feed.NextAsync();
        if (step == 0)
        {
            // The first call waits for the shard checks and the first read: a start-up cost, not a stall.
            first = feed.Stats.WaitTime;
        }

        trainer.Step(Micro(batch));
    }

    var runSeconds = run.Elapsed.TotalSeconds;
    var stats = feed.Stats;
    var steady = (stats.WaitTime - first).TotalMilliseconds;
    Console.WriteLine(Invariant($"training run, {steps} steps fed by the loader (2 workers, prefetch {prefetch}, cold cache): {runSeconds:F1} s; first batch {first.TotalMilliseconds:F1} ms; then the trainer waited {steady:F2} ms in NextAsync over steps 2..{steps} = {100 * steady / 1000 / runSeconds:F3}% of the run ({stats.Waits} waiting call(s) in all)"));
    Console.WriteLine(Invariant($"RESULT run_s={runSeconds:F1} first_ms={first.TotalMilliseconds:F1} waited_ms={steady:F2} waits={stats.Waits} waited_pct={100 * steady / 1000 / runSeconds:F3}"));
}

Directory.Delete(dir, recursive: true);

static List<TrainingBatch> Micro(LoaderBatch batch) =>
    [.. batch.Windows.Select(Atelier.Training.Jobs.FineTuningRunner.ToBatch)];

static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
