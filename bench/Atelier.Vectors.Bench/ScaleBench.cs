using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Atelier.Vectors.Collections;

namespace Atelier.Vectors.Bench;

/// <summary>
/// A collection larger than memory (issue 14, part 3b): <c>scale-build</c> loads a data set written by
/// gen_scale.py into an int8 + PQ collection whose shards keep their full vectors in segment files over several
/// directories, then compacts it (snapshot, saved graph, saved payloads) and exits; <c>scale-search</c>, run
/// in a fresh process (the script drops the page cache first and can put it in a memory cgroup), opens the
/// collection under a memory budget and searches one query at a time, printing the open time, resident
/// memory and recall@10 with mean, p50 and p99 latency per ef.
/// </summary>
internal static class ScaleBench
{
    private const string Workspace = "bench";
    private const string Name = "scale";
    private const long ProcessReserveBytes = 256L << 20;

    /// <summary>scale-build &lt;data dir&gt; &lt;store dir&gt; &lt;pq subspaces&gt; &lt;M&gt; &lt;efConstruction&gt; &lt;shards&gt; &lt;drop base: 0|1&gt; &lt;dir&gt;...</summary>
    /// <remarks>
    /// With drop base, base.f32 is deleted once every point is in the collection and before the compaction: at
    /// 10M x 384 the data (15 GB), the log, the segments and the snapshot (15 GB each) would not fit on the disk
    /// together. The queries and the ground truth stay.
    /// </remarks>
    public static int Build(string dataDir, string storeDir, int subspaces, int m, int efConstruction, int shards, bool dropBase, string[] directories)
    {
        var meta = Meta.Load(dataDir);
        foreach (string d in directories.Append(storeDir))
        {
            if (Directory.Exists(d))
            {
                Directory.Delete(d, recursive: true);
            }
        }

        Directory.CreateDirectory(storeDir);
        var config = new CollectionConfig
        {
            Dimension = meta.Dim,
            Metric = DistanceMetric.L2,
            Storage = VectorStorage.Int8,
            ProductQuantization = subspaces,
            Shards = shards,
            Locations = ["local"],
            M = m,
            EfConstruction = efConstruction,
            EfSearch = 64,
        };
        var options = Options(directories, memoryBudget: 0) with { VectorCacheBytes = 64L << 20, MinSnapshotLogBytes = long.MaxValue };
        Console.Error.WriteLine($"scale-build: {meta.N} x {meta.Dim}, {shards} shards over {directories.Length} directories, int8 + PQ{subspaces}, M={m} efC={efConstruction}; load {Load()}");

        // The first batch trains the quantisers of every shard (each sees about batch / shards vectors).
        const int Batch = 50_000;
        long start = Stopwatch.GetTimestamp();
        var catalog = TableBench.BenchCatalog.Load(null);
        using (var store = Open(storeDir, catalog, options))
        {
            var collection = store.Store.CreateAsync(Workspace, Name, config, "any", "bench", CancellationToken.None).GetAwaiter().GetResult();
            using var file = File.OpenHandle(Path.Combine(dataDir, "base.f32"));
            var floats = new float[Batch * meta.Dim];
            for (long from = 0; from < meta.N; from += Batch)
            {
                int count = (int)Math.Min(Batch, meta.N - from);
                RandomAccess.Read(file, MemoryMarshal.AsBytes(floats.AsSpan(0, count * meta.Dim)), from * meta.Dim * sizeof(float));
                var batch = new CollectionPoint[count];
                for (int i = 0; i < count; i++)
                {
                    batch[i] = new CollectionPoint(from + i, floats.AsSpan(i * meta.Dim, meta.Dim).ToArray(), Payload.Empty);
                }

                collection.UpsertAsync(batch, "bench", CancellationToken.None).GetAwaiter().GetResult();
                if ((from / Batch) % 20 == 0)
                {
                    Console.Error.WriteLine($"  {from + count} / {meta.N} in {Stopwatch.GetElapsedTime(start).TotalSeconds:F0} s; load {Load()}");
                }
            }

            double insertSeconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            if (dropBase)
            {
                file.Dispose();
                File.Delete(Path.Combine(dataDir, "base.f32"));
            }

            Console.Error.WriteLine($"scale-build: inserted in {insertSeconds:F1} s; compacting");
            collection.CompactAsync(CancellationToken.None).GetAwaiter().GetResult();
            double buildSeconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
            catalog.Save(Path.Combine(storeDir, "catalog.json"));
            Console.WriteLine($"build: {meta.N} points inserted in {insertSeconds:F1} s, compacted (snapshot + saved graph) at {buildSeconds:F1} s; load {Load()}");
            Json.Write(Path.Combine(storeDir, "build.json"), new { n = meta.N, dim = meta.Dim, subspaces, m, efConstruction, shards, directories = directories.Length, insert_s = insertSeconds, build_s = buildSeconds });
        }

        return 0;
    }

    /// <summary>scale-search &lt;data dir&gt; &lt;store dir&gt; &lt;budget bytes&gt; &lt;ef,ef,...&gt; &lt;rerank multiplier&gt; &lt;out.json&gt; &lt;dir&gt;...</summary>
    public static int Search(string dataDir, string storeDir, long budgetBytes, int[] efs, int rerank, string output, string[] directories)
    {
        var meta = Meta.Load(dataDir);
        var queries = ReadFloats(Path.Combine(dataDir, "queries.f32"));
        var truth = MemoryMarshal.Cast<byte, int>(File.ReadAllBytes(Path.Combine(dataDir, "gt.i32"))).ToArray();
        // The collection's budget is the process's less a reserve for what is not the collection's: the runtime,
        // JIT and GC headroom, and the page cache of the re-rank reads in flight (the cgroup counts all of it).
        long collectionBudget = budgetBytes - ProcessReserveBytes;
        var options = Options(directories, collectionBudget) with { RerankMultiplier = rerank };
        Console.Error.WriteLine($"scale-search: load {Load()}; {Memory.Describe()}");

        long start = Stopwatch.GetTimestamp();
        using var store = Open(storeDir, TableBench.BenchCatalog.Load(Path.Combine(storeDir, "catalog.json")), options);
        var collection = store.Store.GetAsync(Workspace, Name, CancellationToken.None).GetAwaiter().GetResult();
        double openSeconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        var afterOpen = Memory.Read();
        Console.WriteLine($"open: {collection.Count} points in {openSeconds:F2} s, {collection.ShardsOpenedFromSavedGraph} of {collection.Config.Shards} shards from their saved graph (no rebuild); graphs resident {collection.ResidentIndexBytes / (1 << 20)} MiB of the collection's {collectionBudget / (1 << 20)} MiB budget (the process's {budgetBytes / (1 << 20)} MiB less {ProcessReserveBytes >> 20} MiB for the runtime), cache {collection.VectorCache!.BudgetBytes / (1 << 20)} MiB{(collection.OverMemoryBudget ? " (graphs OVER budget)" : string.Empty)}; {afterOpen}");

        int nq = meta.Nq;
        int k = 10;
        var rows = new List<object>();
        foreach (int ef in efs)
        {
            var latencies = new double[nq];
            int hits = 0;
            long readsBefore = collection.SegmentDiskReads;
            for (int q = 0; q < nq; q++)
            {
                var query = queries.AsSpan(q * meta.Dim, meta.Dim).ToArray();
                long t = Stopwatch.GetTimestamp();
                var found = collection.Search(query, k, null, ef, withVector: false);
                latencies[q] = Stopwatch.GetElapsedTime(t).TotalMicroseconds;
                var gt = truth.AsSpan(q * meta.Kgt, k);
                foreach (var point in found)
                {
                    if (gt.Contains((int)point.Id))
                    {
                        hits++;
                    }
                }
            }

            double mean = latencies.Average();
            Array.Sort(latencies);
            double recall = (double)hits / (nq * k);
            double p50 = SearchRun.Percentile(latencies, 0.50), p99 = SearchRun.Percentile(latencies, 0.99);
            double reads = (double)(collection.SegmentDiskReads - readsBefore) / nq;
            var memory = Memory.Read();
            bool met = recall >= 0.95 && p99 <= 5000;
            Console.WriteLine($"search ef={ef} rerank={rerank}k: recall@10={recall:F4} mean={mean / 1000:F2} ms p50={p50 / 1000:F2} ms p99={p99 / 1000:F2} ms, segment reads/query={reads:F1}, cache hit ratio={collection.VectorCache.HitRatio:F3}; goal (recall@10 >= 0.95 at p99 <= 5 ms) {(met ? "met" : "NOT met")}; {memory}; load {Load()}");
            rows.Add(new { ef, rerank, recall, mean_ms = mean / 1000, p50_ms = p50 / 1000, p99_ms = p99 / 1000, segment_reads_per_query = reads, goal_met = met, memory = memory.ToJson() });
        }

        Json.Write(output, new { n = meta.N, dim = meta.Dim, nq, budget_bytes = budgetBytes, collection_budget_bytes = collectionBudget, open_s = openSeconds, resident_index_bytes = collection.ResidentIndexBytes, cache_bytes = collection.VectorCache.BudgetBytes, after_open = afterOpen.ToJson(), rows });
        return 0;
    }

    private static CollectionStoreOptions Options(string[] directories, long memoryBudget) => new()
    {
        VectorSegmentDirectories = [.. directories],
        MemoryBudgetBytes = memoryBudget,
    };

    private static string Load() => File.ReadAllText("/proc/loadavg").Split(' ')[0..3].Aggregate((a, b) => a + " " + b);

    private static float[] ReadFloats(string path) => MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(path)).ToArray();

    /// <summary>The bench's collection store over <c>storeDir/blobs</c>, its audit log in <c>storeDir/audit</c>.</summary>
    private static TableBench.OpenStore Open(string storeDir, TableBench.BenchCatalog catalog, CollectionStoreOptions options)
    {
        string blobs = Path.Combine(storeDir, "blobs");
        Directory.CreateDirectory(blobs);
        return TableBench.Open(blobs, catalog, options);
    }

    private sealed record Meta(long N, int Nq, int Dim, int Kgt)
    {
        public static Meta Load(string dataDir)
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dataDir, "meta.json")));
            var root = doc.RootElement;
            return new Meta(root.GetProperty("n").GetInt64(), root.GetProperty("nq").GetInt32(), root.GetProperty("dim").GetInt32(), root.GetProperty("kgt").GetInt32());
        }
    }

    /// <summary>The process's resident memory (anonymous and file-backed, from /proc/self/status) and its memory cgroup's usage, when in one.</summary>
    private sealed record Memory(long RssKiB, long AnonKiB, long FileKiB, long? CgroupBytes, long? CgroupMaxBytes, long? CgroupLimitBytes)
    {
        public static Memory Read()
        {
            long rss = 0, anon = 0, file = 0;
            foreach (var line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    rss = KiB(line);
                }
                else if (line.StartsWith("RssAnon:", StringComparison.Ordinal))
                {
                    anon = KiB(line);
                }
                else if (line.StartsWith("RssFile:", StringComparison.Ordinal))
                {
                    file = KiB(line);
                }
            }

            string? group = CgroupDirectory();
            return new Memory(rss, anon, file, ReadLong(group, "memory.usage_in_bytes"), ReadLong(group, "memory.max_usage_in_bytes"), ReadLong(group, "memory.limit_in_bytes"));
        }

        public static string Describe() => Read().ToString();

        public override string ToString()
        {
            string cgroup = CgroupBytes is long usage
                ? $"; cgroup usage (page cache included) {usage / (1 << 20)} MiB, max {CgroupMaxBytes / (1 << 20)} MiB, limit {(CgroupLimitBytes > (1L << 50) ? "none" : (CgroupLimitBytes / (1 << 20)) + " MiB")}"
                : string.Empty;
            return $"RSS {RssKiB / 1024} MiB (anonymous {AnonKiB / 1024} MiB, file-backed {FileKiB / 1024} MiB){cgroup}";
        }

        public object ToJson() => new { rss_mib = RssKiB / 1024, anon_mib = AnonKiB / 1024, file_mib = FileKiB / 1024, cgroup_usage_mib = CgroupBytes / (1 << 20), cgroup_max_mib = CgroupMaxBytes / (1 << 20), cgroup_limit_mib = CgroupLimitBytes / (1 << 20) };

        private static long KiB(string line) => long.Parse(line.Split(':', 2)[1].Trim().Split(' ')[0], CultureInfo.InvariantCulture);

        private static string? CgroupDirectory()
        {
            // cgroup v1: "N:memory:/path".
            foreach (var line in File.ReadLines("/proc/self/cgroup"))
            {
                var parts = line.Split(':', 3);
                if (parts.Length == 3 && parts[1].Split(',').Contains("memory") && parts[2] != "/")
                {
                    return "/sys/fs/cgroup/memory" + parts[2];
                }
            }

            return null;
        }

        private static long? ReadLong(string? directory, string file)
        {
            if (directory is null)
            {
                return null;
            }

            string path = Path.Combine(directory, file);
            return File.Exists(path) ? long.Parse(File.ReadAllText(path).Trim(), CultureInfo.InvariantCulture) : null;
        }
    }
}
