using System.Diagnostics;

namespace Atelier.Vectors.Bench;

/// <summary>Measures one search configuration: recall, single-thread QPS and latency, two-thread QPS.</summary>
internal static class SearchRun
{
    public delegate int SearchFunc(ReadOnlySpan<float> query, Span<SearchHit> hits);

    public sealed record Row(int Ef, double Recall, double Qps1, double Qps2, double P50Us, double P99Us);

    public static Row Measure(BenchData data, int ef, int k, SearchFunc search)
    {
        int nq = data.QueryCount;
        int dim = data.Dimension;
        var found = new long[nq][];
        var hits = new SearchHit[k];

        // Warm-up (JIT tiers, page cache).
        for (int q = 0; q < Math.Min(nq, 200); q++)
        {
            search(data.Queries.AsSpan(q * dim, dim), hits);
        }

        // Throughput is the best of three passes (as ann-benchmarks reports), on both engines.
        double qps1 = 0;
        for (int pass = 0; pass < 3; pass++)
        {
            long begin = Stopwatch.GetTimestamp();
            for (int q = 0; q < nq; q++)
            {
                search(data.Queries.AsSpan(q * dim, dim), hits);
            }

            qps1 = Math.Max(qps1, nq / Stopwatch.GetElapsedTime(begin).TotalSeconds);
        }

        double qps2 = 0;
        for (int pass = 0; pass < 3; pass++)
        {
            qps2 = Math.Max(qps2, MeasureParallel(data, k, search, threads: 2));
        }

        var latencies = new double[nq];
        for (int q = 0; q < nq; q++)
        {
            long t = Stopwatch.GetTimestamp();
            int n = search(data.Queries.AsSpan(q * dim, dim), hits);
            latencies[q] = Stopwatch.GetElapsedTime(t).TotalMicroseconds;
            var ids = new long[n];
            for (int i = 0; i < n; i++)
            {
                ids[i] = hits[i].Id;
            }

            found[q] = ids;
        }

        Array.Sort(latencies);
        return new Row(ef, data.Recall(found, k), qps1, qps2, Percentile(latencies, 0.50), Percentile(latencies, 0.99));
    }

    private static double MeasureParallel(BenchData data, int k, SearchFunc search, int threads)
    {
        int nq = data.QueryCount;
        int dim = data.Dimension;
        int next = -1;
        var workers = new Thread[threads];
        long start = Stopwatch.GetTimestamp();
        for (int t = 0; t < threads; t++)
        {
            workers[t] = new Thread(() =>
            {
                var hits = new SearchHit[k];
                int q;
                while ((q = Interlocked.Increment(ref next)) < nq)
                {
                    search(data.Queries.AsSpan(q * dim, dim), hits);
                }
            });
            workers[t].Start();
        }

        foreach (var w in workers)
        {
            w.Join();
        }

        return nq / Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    public static double Percentile(double[] sorted, double p) => sorted[Math.Min(sorted.Length - 1, (int)(p * sorted.Length))];
}
