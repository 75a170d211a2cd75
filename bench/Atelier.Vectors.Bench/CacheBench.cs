using Atelier.Vectors.Collections.Segments;
using BitFaster.Caching;
using BitFaster.Caching.Lfu;
using BitFaster.Caching.Lru;

namespace Atelier.Vectors.Bench;

/// <summary>Hit ratio of ConcurrentLfu (W-TinyLFU) against a plain LRU, S3-FIFO and SIEVE on seeded Zipf traces, with and without scans.</summary>
internal static class CacheBench
{
    private const int Keys = 1_000_000;
    private const int Requests = 4_000_000;

    public static int Run(string output)
    {
        var rows = new List<object>();
        foreach (double skew in new[] { 0.8, 1.0 })
        {
            var trace = ZipfTrace(skew, seed: 7);
            foreach (bool scans in new[] { false, true })
            {
                var requests = scans ? WithScans(trace) : trace;
                foreach (double fraction in new[] { 0.01, 0.05 })
                {
                    int capacity = (int)(Keys * fraction);
                    double lfu = HitRatio(new ConcurrentLfu<int, int>(capacity), requests);
                    double lru = HitRatio(new ClassicLru<int, int>(capacity), requests);
                    double s3fifo = HitRatio(new S3FifoCache<int, int>(capacity), requests);
                    double sieve = HitRatio(new SieveCache<int, int>(capacity), requests);
                    Console.Error.WriteLine($"zipf s={skew} scans={scans} capacity={fraction:P0}: ConcurrentLfu {lfu:F4}  LRU {lru:F4}  S3-FIFO {s3fifo:F4}  SIEVE {sieve:F4}");
                    rows.Add(new { skew, scans, capacityFraction = fraction, concurrentLfu = lfu, lru, s3fifo, sieve });
                }
            }
        }

        Json.Write(output, new { keys = Keys, requests = Requests, rows });
        return 0;
    }

    private static double HitRatio(ICache<int, int> cache, int[] requests)
    {
        long hits = 0;
        foreach (int key in requests)
        {
            if (cache.TryGet(key, out _))
            {
                hits++;
            }
            else
            {
                cache.AddOrUpdate(key, key);
            }
        }

        return (double)hits / requests.Length;
    }

    private static double HitRatio(IVectorCachePolicy<int, int> cache, int[] requests)
    {
        long hits = 0;
        foreach (int key in requests)
        {
            if (cache.TryGet(key, out _))
            {
                hits++;
            }
            else
            {
                cache.Add(key, key);
            }
        }

        return (double)hits / requests.Length;
    }

    private static int[] ZipfTrace(double skew, int seed)
    {
        var cdf = new double[Keys];
        double sum = 0;
        for (int i = 0; i < Keys; i++)
        {
            sum += 1.0 / Math.Pow(i + 1, skew);
            cdf[i] = sum;
        }

        var random = new Random(seed);

        // Ranks are scattered over the key space so that key order says nothing about popularity.
        var permutation = Enumerable.Range(0, Keys).ToArray();
        random.Shuffle(permutation);
        var trace = new int[Requests];
        for (int r = 0; r < Requests; r++)
        {
            int rank = Array.BinarySearch(cdf, random.NextDouble() * sum);
            trace[r] = permutation[rank < 0 ? ~rank : rank];
        }

        return trace;
    }

    /// <summary>Every 100k requests, a scan of 20k cold keys (a batch job reading a slice of the table once).</summary>
    private static int[] WithScans(int[] trace)
    {
        var result = new List<int>(trace.Length + (trace.Length / 5));
        int scanKey = Keys;
        for (int i = 0; i < trace.Length; i++)
        {
            result.Add(trace[i]);
            if (i % 100_000 == 99_999)
            {
                for (int s = 0; s < 20_000; s++)
                {
                    result.Add(scanKey++);
                }
            }
        }

        return [.. result];
    }
}
