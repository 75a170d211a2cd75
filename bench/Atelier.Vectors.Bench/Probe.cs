using System.Diagnostics;
using Atelier.Vectors.Hnsw;

namespace Atelier.Vectors.Bench;

/// <summary>Diagnostics: build time of one index with full vectors in memory against codes only.</summary>
internal static class Probe
{
    private sealed class NullSource : IFullVectorSource
    {
        public void Read(int node, Span<float> destination) => destination.Clear();

        public void Write(int node, ReadOnlySpan<float> vector)
        {
        }

        public void Prefetch(int node)
        {
        }
    }

    public static int Run(string dataPath)
    {
        var data = BenchData.Load(dataPath);
        var ids = new long[data.Count];
        for (int i = 0; i < ids.Length; i++)
        {
            ids[i] = i;
        }

        foreach (var (external, capacity, dop) in new[] { (false, 1024, 2), (false, data.Count, 2), (false, data.Count, 1), (true, data.Count, 1) })
        {
            var options = new HnswOptions { Dimension = data.Dimension, M = 16, EfConstruction = 100, QuantizeInt8 = true, InitialCapacity = capacity };
            using var index = external ? new HnswIndex(options, new NullSource()) : new HnswIndex(options);
            long start = Stopwatch.GetTimestamp();
            index.AddRange(ids, data.Base, degreeOfParallelism: dop);
            Console.Error.WriteLine($"external={external} capacity={capacity} dop={dop}: {Stopwatch.GetElapsedTime(start).TotalSeconds:F1} s");
        }

        return 0;
    }
}
