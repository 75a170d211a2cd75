using BitFaster.Caching;
using BitFaster.Caching.Lfu;
using BitFaster.Caching.Lru;
using BitFaster.Caching.Scheduler;

namespace Atelier.Features.Bench;

/// <summary>
/// Hit ratio of ConcurrentLfu (W-TinyLFU, as the online store builds it) against BitFaster's
/// ConcurrentLru (a segmented pseudo-LRU) and ClassicLru (a strict LRU) on seeded Zipf traces,
/// plain and with one-pass scans of cold keys mixed in (a backfill or an offline job touching every key).
/// </summary>
internal static class CacheHitRatio
{
    public static void Run(TextWriter report, int keys, int requests)
    {
        report.WriteLine($"Trace: {requests:N0} requests over {keys:N0} keys, seeded Zipf; 'with scans' adds a sequential pass over 10% of the key space every 10% of the trace. One thread.");
        report.WriteLine();
        report.WriteLine("| Zipf s | scans | capacity | ConcurrentLfu (W-TinyLFU) | ConcurrentLru | ClassicLru (strict LRU) | LFU - ConcurrentLru |");
        report.WriteLine("| ---: | --- | ---: | ---: | ---: | ---: | ---: |");
        foreach (var skew in new[] { 0.8, 1.0 })
        {
            var zipf = new Zipf(keys, skew, seed: 42);
            var trace = new int[requests];
            for (var i = 0; i < trace.Length; i++)
            {
                trace[i] = zipf.Next();
            }

            foreach (var scans in new[] { false, true })
            {
                var requestsWithScans = scans ? WithScans(trace, keys) : trace;
                foreach (var fraction in new[] { 0.01, 0.05, 0.10 })
                {
                    var capacity = (int)(keys * fraction);
                    var lfu = HitRatio(new ConcurrentLfu<int, int>(Environment.ProcessorCount, capacity, new ThreadPoolScheduler(), EqualityComparer<int>.Default), requestsWithScans);
                    var lru = HitRatio(new ConcurrentLru<int, int>(capacity), requestsWithScans);
                    var classic = HitRatio(new ClassicLru<int, int>(capacity), requestsWithScans);
                    report.WriteLine($"| {skew:F1} | {(scans ? "yes" : "no")} | {fraction:P0} | {lfu:P1} | {lru:P1} | {classic:P1} | {(lfu - lru) * 100:+0.0;-0.0} pt |");
                    Console.Error.WriteLine($"cache s={skew} scans={scans} cap={fraction:P0}: lfu {lfu:P2} lru {lru:P2} classic {classic:P2}");
                }
            }
        }
    }

    private static int[] WithScans(int[] trace, int keys)
    {
        var result = new List<int>(trace.Length * 2);
        var scanLength = keys / 10;
        var every = trace.Length / 10;
        var next = keys / 2;
        for (var i = 0; i < trace.Length; i++)
        {
            result.Add(trace[i]);
            if ((i + 1) % every == 0)
            {
                for (var j = 0; j < scanLength; j++)
                {
                    result.Add(next);
                    next = next + 1 < keys ? next + 1 : keys / 2;
                }
            }
        }

        return [.. result];
    }

    private static double HitRatio(ICache<int, int> cache, int[] requests)
    {
        long hits = 0;
        foreach (var key in requests)
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
}
