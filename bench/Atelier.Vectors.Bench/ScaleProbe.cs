using System.Diagnostics;
using System.Runtime.InteropServices;
using Atelier.Vectors.Hnsw;

namespace Atelier.Vectors.Bench;

/// <summary>scale-probe &lt;data dir&gt; &lt;n&gt; &lt;pq&gt; &lt;efC&gt;: recall of one in-memory graph walked on PQ codes, int8 codes and fp32 (what limits the scale run).</summary>
internal static class ScaleProbe
{
    public static int Run(string dataDir, int n, int subspaces, int efConstruction)
    {
        int dim = 384;
        var all = MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(Path.Combine(dataDir, "base.f32"))).ToArray();
        var queries = MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(Path.Combine(dataDir, "queries.f32"))).ToArray();
        var truth = MemoryMarshal.Cast<byte, int>(File.ReadAllBytes(Path.Combine(dataDir, "gt.i32"))).ToArray();
        n = Math.Min(n, all.Length / dim);
        using var index = new HnswIndex(new HnswOptions { Dimension = dim, M = 16, EfConstruction = efConstruction, QuantizeInt8 = true, ProductQuantizationSubspaces = subspaces, InitialCapacity = n });
        var ids = Enumerable.Range(0, n).Select(i => (long)i).ToArray();
        long start = Stopwatch.GetTimestamp();
        index.AddRange(ids, all.AsMemory(0, n * dim), 2);
        Console.WriteLine($"built {n} in {Stopwatch.GetElapsedTime(start).TotalSeconds:F1} s");
        int nq = queries.Length / dim;
        foreach (var (name, codes) in new[] { ("pq", true), ("fp32", false) })
        {
            index.WalkOnCodes = codes;
            foreach (int ef in new[] { 40, 80, 160, 320 })
            {
                int hits = 0;
                long t = Stopwatch.GetTimestamp();
                for (int q = 0; q < nq; q++)
                {
                    var found = index.Search(queries.AsSpan(q * dim, dim), 10, ef);
                    var gt = truth.AsSpan(q * 100, 10);
                    foreach (var h in found)
                    {
                        if (gt.Contains((int)h.Id))
                        {
                            hits++;
                        }
                    }
                }

                Console.WriteLine($"{name} ef={ef} recall@10={(double)hits / (nq * 10):F4} mean={Stopwatch.GetElapsedTime(t).TotalMilliseconds / nq:F2} ms");
            }
        }

        return 0;
    }
}
