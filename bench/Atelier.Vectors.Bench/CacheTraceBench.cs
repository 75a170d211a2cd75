using System.Diagnostics;
using System.Runtime.InteropServices;
using Atelier.Vectors.Collections;
using Atelier.Vectors.Collections.Segments;
using BitFaster.Caching.Lfu;
using BitFaster.Caching.Lru;
using BitFaster.Caching.Scheduler;

namespace Atelier.Vectors.Bench;

/// <summary>
/// Eviction policies for the full-vector cache, compared on a real trace: an int8 cosine collection with its
/// vectors on disk serves a query stream from gen_trace.py (topical Zipf traffic, a scan-like burst, a
/// popularity shift) through the collection store, recording every full-vector read its re-rank makes, in
/// order; the trace is then replayed through W-TinyLFU (BitFaster's ConcurrentLfu), S3-FIFO, SIEVE, LRU and
/// the product's <see cref="FullVectorCache"/> at several cache sizes, with Belady's offline optimum as the bound.
/// </summary>
internal static class CacheTraceBench
{
    private const string Workspace = "bench";
    private const int UpsertBatch = 10_000;
    private const int K = 10;

    public static int Run(string dataPath, string queriesPath, int ef, string output, string directory)
    {
        var data = BenchData.Load(dataPath);
        var (queries, phases) = LoadQueries(queriesPath, data.Dimension);
        var trace = RecordTrace(data, queries, phases, ef, directory, out int[] queryStarts, out double recordSeconds);
        int distinct = new HashSet<long>(trace).Count;
        Console.Error.WriteLine($"cache trace: {trace.Length:N0} reads by {phases.Length:N0} queries ({distinct:N0} distinct vectors of {data.Count:N0}), recorded in {recordSeconds:F1} s");
        File.WriteAllBytes(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(output))!, "cache-trace.bin"), MemoryMarshal.AsBytes(trace.AsSpan()).ToArray());

        // The phase of each read, to report the hit ratio after the popularity shift separately.
        var readPhase = new byte[trace.Length];
        for (int q = 0; q < phases.Length; q++)
        {
            int end = q + 1 < queryStarts.Length ? queryStarts[q + 1] : trace.Length;
            readPhase.AsSpan(queryStarts[q], end - queryStarts[q]).Fill((byte)phases[q]);
        }

        var rows = new List<object>();
        foreach (double fraction in new[] { 0.01, 0.05, 0.10, 0.25 })
        {
            int capacity = (int)(data.Count * fraction);
            var (optimum, optimumShifted) = Belady(trace, readPhase, capacity);
            Console.Error.WriteLine($"capacity {fraction:P0} ({capacity:N0} vectors): Belady MIN (offline bound) {optimum:F4}");
            rows.Add(new { capacityFraction = fraction, capacity, policy = "Belady MIN (offline optimum)", hitRatio = optimum, hitRatioAfterShift = optimumShifted, opsPerSecond = 0.0, opsPerSecond2 = 0.0 });
            foreach (var (name, create) in Policies(data.Dimension))
            {
                // Best of three replays for ops/s (a fresh cache each); the hit ratio is the last replay's.
                double best = 0, hitRatio = 0, afterShift = 0;
                for (int pass = 0; pass < 3; pass++)
                {
                    var cache = create(capacity);
                    long start = Stopwatch.GetTimestamp();
                    var (hits, shiftedHits, shiftedReads) = Replay(cache, trace, readPhase);
                    best = Math.Max(best, trace.Length / Stopwatch.GetElapsedTime(start).TotalSeconds);
                    hitRatio = (double)hits / trace.Length;
                    afterShift = (double)shiftedHits / Math.Max(1, shiftedReads);
                }

                double best2 = 0;
                for (int pass = 0; pass < 3; pass++)
                {
                    best2 = Math.Max(best2, ReplayOnTwoThreads(create(capacity), trace));
                }

                Console.Error.WriteLine($"capacity {fraction:P0}: {name} hit ratio {hitRatio:F4} (after the shift {afterShift:F4}), {best / 1e6:F2} M reads/s, {best2 / 1e6:F2} M reads/s on 2 threads");
                rows.Add(new { capacityFraction = fraction, capacity, policy = name, hitRatio, hitRatioAfterShift = afterShift, opsPerSecond = best, opsPerSecond2 = best2 });
            }
        }

        Json.Write(output, new
        {
            n = data.Count,
            dim = data.Dimension,
            queries = phases.Length,
            scanQueries = phases.Count(p => p == 1),
            shiftedQueries = phases.Count(p => p == 2),
            ef,
            k = K,
            rerankMultiplier = new CollectionStoreOptions().RerankMultiplier,
            reads = trace.Length,
            distinctVectors = distinct,
            record_s = recordSeconds,
            rows,
        });
        return 0;
    }

    /// <summary>Eviction policies behind one adapter each; capacity in vectors.</summary>
    private static IEnumerable<(string Name, Func<int, ITraceCache> Create)> Policies(int dimension)
    {
        // W-TinyLFU as FullVectorCache ran it before decision 0022 (maintenance on the thread pool), and with
        // maintenance inline after every write, so a lossy read buffer cannot be what decides the comparison.
        yield return ("W-TinyLFU (BitFaster ConcurrentLfu)", c => new Lfu(new ConcurrentLfu<long, float[]>(Environment.ProcessorCount, c, new ThreadPoolScheduler(), EqualityComparer<long>.Default)));
        yield return ("W-TinyLFU (ConcurrentLfu, maintenance inline)", c => new Lfu(new ConcurrentLfu<long, float[]>(Environment.ProcessorCount, c, new ForegroundScheduler(), EqualityComparer<long>.Default)));
        yield return ("FullVectorCache (the product's policy)", c => new Product(new FullVectorCache((long)c * dimension * sizeof(float), dimension)));
        yield return ("S3-FIFO", c => new Policy(new S3FifoCache<long, float[]>(c)));
        yield return ("S3-FIFO (move to main after 2 hits)", c => new Policy(new S3FifoCache<long, float[]>(c, moveToMainThreshold: 2)));
        yield return ("SIEVE", c => new Policy(new SieveCache<long, float[]>(c)));
        yield return ("LRU (BitFaster ClassicLru)", c => new Lru(new ClassicLru<long, float[]>(c)));
    }

    private static (long Hits, long ShiftedHits, long ShiftedReads) Replay(ITraceCache cache, long[] trace, byte[] phase)
    {
        // Every entry shares one vector: the replay measures the policy, not allocation or disk reads.
        var vector = new float[1];
        long hits = 0, shiftedHits = 0, shiftedReads = 0;
        for (int i = 0; i < trace.Length; i++)
        {
            bool hit = cache.TryGet(trace[i]);
            if (hit)
            {
                hits++;
            }
            else
            {
                cache.Add(trace[i], vector);
            }

            if (phase[i] == 2)
            {
                shiftedReads++;
                shiftedHits += hit ? 1 : 0;
            }
        }

        return (hits, shiftedHits, shiftedReads);
    }

    /// <summary>Reads per second with two threads sharing one cache, each replaying every other read of the trace.</summary>
    private static double ReplayOnTwoThreads(ITraceCache cache, long[] trace)
    {
        var vector = new float[1];
        var workers = new Thread[2];
        long start = Stopwatch.GetTimestamp();
        for (int t = 0; t < workers.Length; t++)
        {
            int first = t;
            workers[t] = new Thread(() =>
            {
                for (int i = first; i < trace.Length; i += 2)
                {
                    if (!cache.TryGet(trace[i]))
                    {
                        cache.Add(trace[i], vector);
                    }
                }
            });
            workers[t].Start();
        }

        foreach (var w in workers)
        {
            w.Join();
        }

        return trace.Length / Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    /// <summary>
    /// Belady's MIN: on a miss, keep the vectors read again soonest (the new one included, so it may bypass
    /// the cache). No online policy can beat its hit ratio on the trace.
    /// </summary>
    private static (double HitRatio, double AfterShift) Belady(long[] trace, byte[] phase, int capacity)
    {
        var nextUse = new int[trace.Length];
        var seen = new Dictionary<long, int>();
        for (int i = trace.Length - 1; i >= 0; i--)
        {
            nextUse[i] = seen.TryGetValue(trace[i], out int next) ? next : int.MaxValue;
            seen[trace[i]] = i;
        }

        // Cached keys with their next use; the heap holds (key, next use) with stale entries skipped lazily.
        var cached = new Dictionary<long, int>(capacity + 1);
        var furthest = new PriorityQueue<long, int>(Comparer<int>.Create((a, b) => b.CompareTo(a)));
        long hits = 0, shiftedHits = 0, shiftedReads = 0;
        for (int i = 0; i < trace.Length; i++)
        {
            long key = trace[i];
            bool hit = cached.ContainsKey(key);
            if (hit)
            {
                hits++;
            }

            if (phase[i] == 2)
            {
                shiftedReads++;
                shiftedHits += hit ? 1 : 0;
            }

            cached[key] = nextUse[i];
            furthest.Enqueue(key, nextUse[i]);
            while (cached.Count > capacity)
            {
                furthest.TryDequeue(out long victim, out int use);
                if (cached.TryGetValue(victim, out int current) && current == use)
                {
                    cached.Remove(victim);
                }
            }
        }

        return ((double)hits / trace.Length, (double)shiftedHits / Math.Max(1, shiftedReads));
    }

    private static long[] RecordTrace(BenchData data, float[] queries, int[] phases, int ef, string directory, out int[] queryStarts, out double seconds)
    {
        if (Directory.Exists(directory))
        {
            Directory.Delete(directory, recursive: true);
        }

        string blobs = Path.Combine(directory, "blobs");
        var catalog = new TableBench.BenchCatalog();
        var options = new CollectionStoreOptions
        {
            VectorSegmentDirectories = [Path.Combine(directory, "segments")],
            MinSnapshotLogBytes = long.MaxValue,
        };
        var config = new CollectionConfig
        {
            Dimension = data.Dimension,
            Metric = DistanceMetric.Cosine,
            Storage = VectorStorage.Int8,
            Shards = 4,
            Locations = ["local"],
            M = 16,
            EfConstruction = 100,
        };

        long start = Stopwatch.GetTimestamp();
        using (var opened = TableBench.Open(blobs, catalog, options))
        {
            var collection = opened.Store.CreateAsync(Workspace, "trace", config, "any", "bench", CancellationToken.None).GetAwaiter().GetResult();
            for (int from = 0; from < data.Count; from += UpsertBatch)
            {
                var batch = new CollectionPoint[Math.Min(UpsertBatch, data.Count - from)];
                for (int i = 0; i < batch.Length; i++)
                {
                    batch[i] = new CollectionPoint(from + i, data.Base.AsSpan((from + i) * data.Dimension, data.Dimension).ToArray(), Payload.Empty);
                }

                collection.UpsertAsync(batch, "bench", CancellationToken.None).GetAwaiter().GetResult();
            }

            collection.CompactAsync(CancellationToken.None).GetAwaiter().GetResult();
        }

        Console.Error.WriteLine($"cache trace: built and compacted {data.Count} x {data.Dimension} cosine int8 collection in {Stopwatch.GetElapsedTime(start).TotalSeconds:F1} s");

        var trace = new List<long>(phases.Length * K * 4);
        var starts = new int[phases.Length];
        start = Stopwatch.GetTimestamp();
        try
        {
            using var reopened = TableBench.Open(blobs, catalog, options);
            var c = reopened.Store.GetAsync(Workspace, "trace", CancellationToken.None).GetAwaiter().GetResult();
            // Re-rank reads run on the searching thread; the lock only guards against a walk that reads in parallel.
            c.VectorCache!.ReadObserver = key =>
            {
                lock (trace)
                {
                    trace.Add(key);
                }
            };
            for (int q = 0; q < phases.Length; q++)
            {
                starts[q] = trace.Count;
                c.Search(queries.AsSpan(q * data.Dimension, data.Dimension).ToArray(), K, null, ef, withVector: false);
            }

            seconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }

        queryStarts = starts;
        return [.. trace];
    }

    private static (float[] Queries, int[] Phases) LoadQueries(string path, int dimension)
    {
        using var stream = File.OpenRead(path);
        using var reader = new BinaryReader(stream);
        int nq = reader.ReadInt32();
        int dim = reader.ReadInt32();
        if (dim != dimension)
        {
            throw new InvalidDataException($"'{path}' holds {dim}-dimensional queries; the data file is {dimension}-dimensional.");
        }

        var queries = new float[nq * dim];
        var phases = new int[nq];
        stream.ReadExactly(MemoryMarshal.AsBytes(queries.AsSpan()));
        stream.ReadExactly(MemoryMarshal.AsBytes(phases.AsSpan()));
        return (queries, phases);
    }

    private interface ITraceCache
    {
        bool TryGet(long key);

        void Add(long key, float[] vector);
    }

    private sealed class Product(FullVectorCache cache) : ITraceCache
    {
        public bool TryGet(long key) => cache.TryGet(key, out _);

        public void Add(long key, float[] vector) => cache.Add(key, vector);
    }

    private sealed class Policy(IVectorCachePolicy<long, float[]> cache) : ITraceCache
    {
        public bool TryGet(long key) => cache.TryGet(key, out _);

        public void Add(long key, float[] vector) => cache.Add(key, vector);
    }

    private sealed class Lfu(ConcurrentLfu<long, float[]> cache) : ITraceCache
    {
        public bool TryGet(long key) => cache.TryGet(key, out _);

        public void Add(long key, float[] vector) => cache.AddOrUpdate(key, vector);
    }

    private sealed class Lru(ClassicLru<long, float[]> cache) : ITraceCache
    {
        public bool TryGet(long key) => cache.TryGet(key, out _);

        public void Add(long key, float[] vector) => cache.AddOrUpdate(key, vector);
    }
}
