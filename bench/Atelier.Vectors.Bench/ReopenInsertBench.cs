using System.Diagnostics;
using Atelier.Vectors.Hnsw;
using Atelier.Vectors.Storage;

namespace Atelier.Vectors.Bench;

/// <summary>
/// Memory of the first insert after a reopen: an int8 index walked on PQ codes (full vectors elsewhere, as in a
/// collection with segment directories) is saved, reopened and given one vector, which grows every mapped
/// segment. Growing by moving the mapped pages is measured against copying them (the way before), side by side
/// on the same saved index, by the process's anonymous resident memory (<c>RssAnon</c>) before and after.
/// </summary>
internal static class ReopenInsertBench
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

    public static int Run(int count, int dimension, string directory)
    {
        var random = new Random(5);
        var data = new float[(long)count * dimension];
        for (long i = 0; i < data.Length; i++)
        {
            data[i] = (float)random.NextDouble();
        }

        var ids = Enumerable.Range(0, count).Select(i => (long)i).ToArray();
        var options = new HnswOptions { Dimension = dimension, M = 16, EfConstruction = 64, QuantizeInt8 = true, ProductQuantizationSubspaces = dimension / 4, InitialCapacity = count };
        long start = Stopwatch.GetTimestamp();
        using (var index = new HnswIndex(options, new NullSource()))
        {
            index.AddRange(ids, data);
            index.Save(directory);
        }

        Console.WriteLine($"built and saved {count} x {dimension} (int8 + PQ {dimension / 4}) in {Stopwatch.GetElapsedTime(start).TotalSeconds:F1} s");
        var extra = new float[dimension];
        for (int d = 0; d < dimension; d++)
        {
            extra[d] = (float)random.NextDouble();
        }

        var results = new Dictionary<string, long>();
        foreach (var move in new[] { false, true })
        {
            NativeBuffer.GrowByMoving = move;
            using var reopened = HnswIndex.Open(directory, verifyChecksums: false, new NullSource());
            long mapped = reopened.FileBackedBytes;
            GC.Collect();
            long before = RssAnon();
            reopened.Add(count, extra);
            long after = RssAnon();
            string name = move ? "move (mremap)" : "copy (peer: before this change)";
            Console.WriteLine($"{name,-32} mapped segments {mapped / 1048576.0,8:F1} MiB  first insert: +{(after - before) / 1048576.0,8:F1} MiB anonymous, still file-backed {reopened.FileBackedBytes / 1048576.0,8:F1} MiB");
            results[name] = after - before;
        }

        NativeBuffer.GrowByMoving = true;
        double ratio = (double)results["move (mremap)"] / Math.Max(1, results["copy (peer: before this change)"]);
        Console.WriteLine($"anonymous memory of the first insert, move / copy: {ratio:F3} (goal: well under 1, i.e. not the mapped graph's size again) {(ratio < 0.1 ? "met" : "NOT met")}");
        return 0;
    }

    private static long RssAnon()
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("RssAnon:", StringComparison.Ordinal))
            {
                return long.Parse(line.AsSpan(8).Trim().TrimEnd("kB").Trim(), System.Globalization.CultureInfo.InvariantCulture) * 1024;
            }
        }

        return 0;
    }
}
