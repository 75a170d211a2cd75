using System.Diagnostics;
using Atelier.Vectors.Table;

namespace Atelier.Vectors.Bench;

/// <summary>
/// An embedding table whose full vectors do not fit its memory budget: build, flush, reopen with the
/// budget capped to a fraction of the vector bytes, then sweep ef for recall, QPS and latency.
/// </summary>
internal static class TableBench
{
    public static int Run(string dataPath, double budgetFraction, int[] efs, string output, string[] directories)
    {
        var data = BenchData.Load(dataPath);
        long tableBytes = (long)data.Count * data.Dimension * sizeof(float);
        long budget = (long)(tableBytes * budgetFraction);
        foreach (string d in directories)
        {
            if (Directory.Exists(d))
            {
                Directory.Delete(d, recursive: true);
            }
        }

        var options = new EmbeddingTableOptions
        {
            Dimension = data.Dimension,
            Directories = directories,
            ShardCount = 4,
            MemoryBudgetBytes = budget,
            M = 16,
            EfConstruction = 100,
        };
        var ids = new long[data.Count];
        for (int i = 0; i < ids.Length; i++)
        {
            ids[i] = i;
        }

        long start = Stopwatch.GetTimestamp();
        using (var build = EmbeddingTable.Open(options))
        {
            build.Upsert(ids, data.Base);
            build.Flush();
        }

        double buildSeconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        Console.Error.WriteLine($"table: built and flushed {data.Count} x {data.Dimension} over {directories.Length} directories in {buildSeconds:F1} s");
        bool droppedPageCache = TryDropPageCache();

        start = Stopwatch.GetTimestamp();
        var table = EmbeddingTable.Open(options);
        double openSeconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        long indexBytes = table.IndexBytes;
        table.Dispose();
        var rows = new List<object>();
        foreach (int multiplier in new[] { 1, 2, 4 })
        {
            // Reopen per re-rank setting so each starts from a cold cache (and re-measures the open).
            var tuned = options with { RerankMultiplier = multiplier };
            using var t = EmbeddingTable.Open(tuned);
            foreach (int ef in efs)
            {
                long readsBefore = t.DiskReads;
                int efLocal = ef;
                var row = SearchRun.Measure(data, ef, 10, (q, hits) => t.Search(q, hits, efLocal));

                // Measure runs 200 warm-up queries, 3 + 3 throughput passes and one latency pass.
                double readsPerQuery = (double)(t.DiskReads - readsBefore) / ((data.QueryCount * 7) + Math.Min(200, data.QueryCount));
                Console.Error.WriteLine($"table rerank={multiplier}k ef={ef} recall={row.Recall:F4} qps1={row.Qps1:F0} qps2={row.Qps2:F0} p50={row.P50Us:F0}us p99={row.P99Us:F0}us hit={t.CacheHitRatio:F3} diskReads/query={readsPerQuery:F1}");
                rows.Add(new { rerankMultiplier = multiplier, row.Ef, row.Recall, row.Qps1, row.Qps2, row.P50Us, row.P99Us, cacheHitRatio = t.CacheHitRatio, diskReadsPerQuery = readsPerQuery });
            }
        }

        Json.Write(output, new
        {
            n = data.Count,
            dim = data.Dimension,
            shards = options.ShardCount,
            directories = directories.Length,
            tableBytes,
            budgetBytes = budget,
            indexBytesInMemory = indexBytes,
            build_s = buildSeconds,
            open_s = openSeconds,
            droppedPageCache,
            rows,
        });
        return 0;
    }

    private static bool TryDropPageCache()
    {
        try
        {
            File.WriteAllText("/proc/sys/vm/drop_caches", "1");
            return true;
        }
        catch (IOException)
        {
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }
}
