using System.Diagnostics;
using System.Globalization;
using Atelier.Core.Residency;
using Atelier.Storage.Audit;
using Atelier.Storage.Placement;
using Atelier.Training.Checkpoints;

// Checkpoint store macro benchmark. Simulates a LoRA fine-tune: frozen base weights, adapters and
// Adam moments that change every step, a data-loader position and RNG state. Measures:
//   1. persist throughput of a first (all-new) checkpoint, to compare with dd on the same disk;
//   2. the training stall per checkpoint (back-pressure + snapshot) against a simulated step time,
//      over successive checkpoints taken while "training" (sleeping for the step time) goes on;
//   3. the dedup ratio across those checkpoints;
//   4. restore time of the last checkpoint (every chunk hash-verified).
// Usage: Atelier.Training.Bench --dir DIR [--base-mib 1024] [--adapter-mib 128] [--checkpoints 3]
//        [--steps-between 5] [--step-ms 1000] [--chunk-mib 4] [--write-concurrency 4]
//        [--commit-concurrency 4] [--warm]
var options = Args.Parse(args);
var dir = options.Get("dir", Path.Combine(Path.GetTempPath(), "atelier-ckpt-bench"));
var baseMib = options.GetInt("base-mib", 1024);
var adapterMib = options.GetInt("adapter-mib", 128);
var checkpoints = options.GetInt("checkpoints", 3);
var stepsBetween = options.GetInt("steps-between", 5);
var stepMs = options.GetInt("step-ms", 1000);
var chunkMib = options.GetInt("chunk-mib", 4);
var defaults = new CheckpointStoreOptions { Locations = ["local-nvme"] };
var writeConcurrency = options.GetInt("write-concurrency", defaults.WriteConcurrency);
var commitConcurrency = options.GetInt("commit-concurrency", defaults.CommitConcurrency);
const long MiB = 1 << 20;

if (Directory.Exists(dir))
{
    Directory.Delete(dir, recursive: true);
}

Directory.CreateDirectory(dir);
var local = new LocationDescriptor { Id = "local-nvme", Uri = "local-nvme", Country = "FR", Blocs = ["EU"], OnPrem = true };
var locations = new StorageLocations([local], dir);
using var audit = new AuditLog(Path.Combine(dir, "audit"), TimeProvider.System);
var guard = new PlacementGuard(locations, audit);
var storeOptions = defaults with { ChunkSize = chunkMib * (int)MiB, WriteConcurrency = writeConcurrency, CommitConcurrency = commitConcurrency };
await using var store = new CheckpointStore(guard, storeOptions);
var job = new CheckpointJob("bench", "ftjob-bench", new ResidencyPolicy { Name = "eu-checkpoints", AllowedJurisdictions = ["EU"], RequireOnPrem = true });

// The trainer's state. Random bytes: tensors do not compress or dedup by accident.
var random = new Random(12345);
var baseWeights = Fill(new byte[baseMib * MiB], random);
var adapter = Fill(new byte[adapterMib * MiB], random);
var adamM = Fill(new byte[adapterMib * MiB], random);
var adamV = Fill(new byte[adapterMib * MiB], random);
var loader = new byte[16];
var rng = Fill(new byte[32], random);
CheckpointContent Content() => new CheckpointContent()
    .AddTensor("base/consolidated", "BF16", [baseWeights.Length / 2], baseWeights, frozen: true)
    .AddTensor("adapter/lora", "F32", [adapter.Length / 4], adapter)
    .AddTensor("optimizer/adam_m", "F32", [adamM.Length / 4], adamM)
    .AddTensor("optimizer/adam_v", "F32", [adamV.Length / 4], adamV)
    .AddBlob("loader/position", loader)
    .AddBlob("rng/state", rng);
var total = baseWeights.LongLength + (3 * adapter.LongLength) + loader.Length + rng.Length;
var trainable = total - baseWeights.LongLength;

// A step of "training": every value of the adapters and moments changes (one byte per 4 KiB
// page is enough to change every chunk), the loader advances, the RNG moves.
void TrainStep(long step)
{
    for (var i = (int)(step % 4096); i < adapter.Length; i += 4096)
    {
        adapter[i]++;
        adamM[i]++;
        adamV[i]++;
    }

    BitConverter.TryWriteBytes(loader, step);
    rng[step % rng.Length]++;
}

Console.WriteLine($"checkpoint: {total / (double)MiB:F0} MiB ({baseMib} MiB frozen base, {3 * adapterMib} MiB adapters + Adam moments), chunk {chunkMib} MiB, write concurrency {storeOptions.WriteConcurrency}, commit concurrency {storeOptions.CommitConcurrency}");

// As a job runner would at job start: snapshot buffers for the trainable state, pages touched.
var reserve = Stopwatch.StartNew();
var reserved = store.ReserveSnapshotMemory(trainable);
Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"reserved {reserved / (double)MiB:F0} MiB of snapshot buffers in {reserve.Elapsed.TotalMilliseconds:F0} ms (at job start, not in a step)"));

// 1. The first checkpoint: every byte is new.
var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
var sw = Stopwatch.StartNew();
var first = await store.SaveAsync(job, 0, Content());
var returned = sw.Elapsed;
var firstResult = await first.Durable;
var firstTotal = sw.Elapsed;
var firstCpu = Process.GetCurrentProcess().TotalProcessorTime - cpuBefore;
var persistMibs = firstResult.BytesWritten / (double)MiB / firstResult.PersistTime.TotalSeconds;
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"first checkpoint: {firstResult.BytesWritten / (double)MiB:F0} MiB written in {firstResult.PersistTime.TotalSeconds:F2} s persist = {persistMibs:F1} MiB/s; snapshot {first.SnapshotTime.TotalMilliseconds:F0} ms (copied {first.BytesCopied / (double)MiB:F0} MiB); SaveAsync returned after {returned.TotalMilliseconds:F0} ms; durable after {firstTotal.TotalSeconds:F2} s; process CPU {firstCpu.TotalSeconds:F2} s = {firstCpu.TotalSeconds / (total / (double)(1L << 30)):F2} CPU-s per GiB (snapshot, SHA-256, kernel copies, fsyncs)"));
Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"RESULT persist_mibs={persistMibs:F1}"));

// 2 + 3. Successive checkpoints while training goes on. A simulated step is its forward and
// backward passes (90% of the step time, sleeping: the GPU's share, which leaves the CPU free for
// the persist) and then the optimiser update, which changes the trainable tensors. Two modes:
//   sync:    SaveAsync at the step boundary; the trainer is blocked for the snapshot copy.
//   overlap: BeginSaveAsync at the step boundary; the copy overlaps the next forward/backward, and
//            the trainer waits on Snapshotted only before its next optimiser update.
var step = 0L;
long logical = total;
long written = firstResult.BytesWritten;
long steadyLogical = 0;
long steadyWritten = 0;
var lastStep = 0L;
var summaries = new List<string>();
foreach (var overlap in new[] { false, true })
{
    var mode = overlap ? "overlap" : "sync";
    var stalls = new List<double>();
    var snapshots = new List<double>();
    var waits = new List<double>();
    var durables = new List<Task<CheckpointPersistResult>>();
    CheckpointSave? pending = null;
    for (var c = 1; c <= checkpoints; c++)
    {
        for (var s = 0; s < stepsBetween; s++)
        {
            step++;
            Thread.Sleep(stepMs * 9 / 10);
            if (pending is not null)
            {
                var blocked = Stopwatch.StartNew();
                await pending.Snapshotted;
                stalls[^1] += blocked.Elapsed.TotalMilliseconds;
                snapshots.Add(pending.SnapshotTime.TotalMilliseconds);
                pending = null;
            }

            TrainStep(step);
            Thread.Sleep(stepMs / 10);
        }

        var call = Stopwatch.StartNew();
        var save = overlap
            ? await store.BeginSaveAsync(job, step, Content(), new CheckpointMetrics { TrainLoss = 2.0 / step, ValidLoss = 2.1 / step })
            : await store.SaveAsync(job, step, Content(), new CheckpointMetrics { TrainLoss = 2.0 / step, ValidLoss = 2.1 / step });
        stalls.Add(call.Elapsed.TotalMilliseconds);
        waits.Add(save.BackPressureWait.TotalMilliseconds);
        if (overlap)
        {
            pending = save;
        }
        else
        {
            snapshots.Add(save.SnapshotTime.TotalMilliseconds);
        }

        durables.Add(save.Durable);
        steadyLogical += total;
    }

    if (pending is not null)
    {
        var blocked = Stopwatch.StartNew();
        await pending.Snapshotted;
        stalls[^1] += blocked.Elapsed.TotalMilliseconds;
        snapshots.Add(pending.SnapshotTime.TotalMilliseconds);
    }

    var results = await Task.WhenAll(durables);
    lastStep = results[^1].Checkpoint.Step;
    steadyWritten += results.Sum(r => r.BytesWritten);
    var stallMean = stalls.Average();
    var stallMax = stalls.Max();
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"steady {mode}: {checkpoints} checkpoints every {stepsBetween} steps of {stepMs} ms; stall per checkpoint mean {stallMean:F1} ms, max {stallMax:F1} ms (snapshot copy mean {snapshots.Average():F1} ms, back-pressure mean {waits.Average():F1} ms) = {100 * stallMean / stepMs:F2}% (max {100 * stallMax / stepMs:F2}%) of a step; persist mean {results.Average(r => r.PersistTime.TotalMilliseconds):F0} ms, {results.Average(r => r.BytesWritten) / MiB:F0} MiB written per checkpoint"));
    summaries.Add(string.Create(CultureInfo.InvariantCulture, $"stall_{mode}_ms={stallMean:F1} stall_{mode}_pct={100 * stallMean / stepMs:F2}"));
}

logical += steadyLogical;
written += steadyWritten;
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"dedup: successive checkpoints wrote {steadyWritten / (double)MiB:F0} MiB for {steadyLogical / (double)MiB:F0} MiB logical = {steadyLogical / (double)Math.Max(1, steadyWritten):F2}x; whole run (incl. first) {logical / (double)MiB:F0} MiB logical, {written / (double)MiB:F0} MiB written = {logical / (double)written:F2}x"));
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"RESULT {string.Join(' ', summaries)} dedup_steady={steadyLogical / (double)Math.Max(1, steadyWritten):F2} dedup_run={logical / (double)written:F2}"));

// Retention, as a job would run it after each checkpoint.
sw.Restart();
var deleted = await store.ApplyRetentionAsync(job.JobId, new RetentionPolicy(KeepLast: 2, KeepBest: 1));
Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"retention keep-last 2 + best 1: deleted {deleted.Count} checkpoints in {sw.Elapsed.TotalMilliseconds:F0} ms"));

// 4. Restore of the last checkpoint, cold: our own files are evicted from the page cache
// (posix_fadvise DONTNEED on each; they are fsynced, so the pages are clean), without dropping the
// whole machine's cache under other processes.
var evicted = options.Has("warm") ? 0 : PageCache.Evict(Path.Combine(dir, "local-nvme"));
Console.WriteLine(evicted > 0 ? $"page cache: evicted {evicted} files of the checkpoint location (cold restore)" : "page cache: not evicted (warm restore)");

var restoreCpu = Process.GetCurrentProcess().TotalProcessorTime;
sw.Restart();
var restored = await store.RestoreAsync(job.JobId, lastStep);
var restoreSeconds = sw.Elapsed.TotalSeconds;
restoreCpu = Process.GetCurrentProcess().TotalProcessorTime - restoreCpu;
var ok = restored["adapter/lora"].AsSpan().SequenceEqual(adapter) && restored["base/consolidated"].AsSpan().SequenceEqual(baseWeights);
Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
    $"restore ({(evicted > 0 ? "cold" : "warm")}): {total / (double)MiB:F0} MiB in {restoreSeconds:F2} s = {total / (double)MiB / restoreSeconds:F1} MiB/s, every chunk SHA-256 verified; process CPU {restoreCpu.TotalSeconds:F2} s; bit-identical: {ok}"));
Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"RESULT restore_s={restoreSeconds:F2} restore_mibs={total / (double)MiB / restoreSeconds:F1} identical={ok}"));
Console.WriteLine($"audit events: {audit.LastSeq}");
return ok ? 0 : 1;

static byte[] Fill(byte[] buffer, Random random)
{
    random.NextBytes(buffer);
    return buffer;
}
