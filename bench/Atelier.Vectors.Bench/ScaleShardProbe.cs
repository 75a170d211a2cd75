using System.Runtime.InteropServices;
using Atelier.Vectors.Collections.Segments;
using Atelier.Vectors.Hnsw;

namespace Atelier.Vectors.Bench;

/// <summary>scale-shard &lt;data dir&gt; &lt;shard dir&gt;: recall of one saved shard walked on PQ codes and on int8 codes, against the shard's own exact neighbours.</summary>
internal static class ScaleShardProbe
{
    public static int Run(string dataDir, string shardDir, int queriesToRun)
    {
        const int Dim = 384;
        var queries = MemoryMarshal.Cast<byte, float>(File.ReadAllBytes(Path.Combine(dataDir, "queries.f32"))).ToArray();
        var truth = MemoryMarshal.Cast<byte, int>(File.ReadAllBytes(Path.Combine(dataDir, "gt.i32"))).ToArray();
        var cache = new FullVectorCache(256L << 20, Dim);
        using var segment = new VectorSegmentFile(shardDir, Dim, cache, truncate: false);
        using var index = HnswIndex.Open(shardDir, verifyChecksums: false, segment);
        Console.WriteLine($"shard: {index.Count} points, pq {index.ProductQuantizer?.Subspaces}");
        foreach (bool pq in new[] { true, false })
        {
            index.WalkOnCodes = pq;
            foreach (int ef in new[] { 64, 256, 1024 })
            {
                int hits = 0, total = 0;
                for (int q = 0; q < queriesToRun; q++)
                {
                    var mine = truth.AsSpan(q * 100, 100).ToArray().Where(id => index.Contains(id)).Take(10).ToHashSet();
                    var found = index.Search(queries.AsSpan(q * Dim, Dim), 10, ef);
                    hits += found.Count(h => mine.Contains((int)h.Id));
                    total += mine.Count;
                }

                Console.WriteLine($"{(pq ? "pq" : "int8")} walk ef={ef}: shard recall@10 {(double)hits / total:F4}");
            }
        }

        return 0;
    }
}
