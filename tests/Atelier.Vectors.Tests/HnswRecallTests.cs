using Atelier.Vectors.Hnsw;

namespace Atelier.Vectors.Tests;

public class HnswRecallTests
{
    private const int Dimension = 32;
    private const int Count = 5_000;
    private const int Queries = 100;
    private const int K = 10;

    [Theory]
    [InlineData(DistanceMetric.L2, false, 64)]
    [InlineData(DistanceMetric.L2, true, 64)]
    [InlineData(DistanceMetric.Cosine, false, 128)]
    [InlineData(DistanceMetric.Cosine, true, 128)]
    [InlineData(DistanceMetric.Dot, true, 128)]
    public void Search_OnClusteredData_ReachesRecallAbove95PercentOfBruteForce(DistanceMetric metric, bool quantize, int ef)
    {
        // Inner product search is run on unit vectors, as embeddings for it are in practice.
        var data = ClusteredData.Generate(Count, Dimension, clusters: 50, seed: 7, normalize: metric == DistanceMetric.Dot);
        var queries = ClusteredData.Generate(Queries, Dimension, clusters: 50, seed: 7 + 1, normalize: metric == DistanceMetric.Dot);
        using var index = new HnswIndex(new HnswOptions { Dimension = Dimension, Metric = metric, M = 16, EfConstruction = 100, QuantizeInt8 = quantize });
        index.AddRange(ClusteredData.Ids(Count), data, degreeOfParallelism: 2);

        double recall = Recall.Measure(index, queries, Dimension, K, ef);

        Assert.True(recall >= 0.95, $"recall@{K} was {recall:F3}");
    }
}

internal static class Recall
{
    public static double Measure(HnswIndex index, float[] queries, int dimension, int k, int ef, IVectorFilter? filter = null)
    {
        int hits = 0;
        int total = 0;
        for (int q = 0; q < queries.Length / dimension; q++)
        {
            var query = queries.AsSpan(q * dimension, dimension);
            var truth = index.ExactSearch(query, k, filter);
            var found = index.Search(query, k, ef, filter);
            var truthIds = new HashSet<long>();
            foreach (var t in truth)
            {
                truthIds.Add(t.Id);
            }

            foreach (var f in found)
            {
                if (truthIds.Contains(f.Id))
                {
                    hits++;
                }
            }

            total += truth.Length;
        }

        return total == 0 ? 1 : (double)hits / total;
    }
}
