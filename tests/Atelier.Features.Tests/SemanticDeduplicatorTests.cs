using Atelier.Features.Semantic;

namespace Atelier.Features.Tests;

public sealed class SemanticDeduplicatorTests
{
    private static float[] Unit(int dimension, int axis, float noise = 0, int noiseAxis = 0)
    {
        var v = new float[dimension];
        v[axis] = 1;
        v[noiseAxis] += noise;
        return v;
    }

    [Fact]
    public void Run_LinksPairsAboveTheThreshold_KeepsTheFirstOfEachClusterAndChainsTransitively()
    {
        // 0 ~ 2 directly, 2 ~ 4 directly, 0 and 4 only through 2; 1 and 3 stand alone.
        float[][] training =
        [
            [1f, 0f, 0f, 0f],
            [0f, 1f, 0f, 0f],
            [1f, 0.2f, 0f, 0f],
            [0f, 0f, 1f, 0f],
            [1f, 0.45f, 0f, 0f],
        ];
        var result = SemanticDeduplicator.Run(training, [], new SemanticDedupOptions { Threshold = 0.97 });

        Assert.Equal([true, true, false, true, false], result.Keep);
        var cluster = Assert.Single(result.Clusters);
        Assert.Equal(0, cluster.Kept);
        Assert.Equal([2, 4], cluster.Dropped.Select(d => d.Index));
        Assert.True(cluster.Dropped[1].Similarity < 0.97f, "the chained member is reported with its own similarity to the kept one");
        Assert.Empty(result.Contaminated);
        Assert.True(result.Exact);
    }

    [Fact]
    public void Run_DropsExamplesNearAnEvalItemBeforeClustering_NamingTheNearestItem()
    {
        float[][] training = [Unit(3, 0), Unit(3, 0, 0.05f, 1), Unit(3, 2)];
        float[][] eval = [Unit(3, 2, 0.5f, 1), Unit(3, 0)];
        var result = SemanticDeduplicator.Run(training, eval, new SemanticDedupOptions { Threshold = 0.99, ContaminationThreshold = 0.99 });

        // 0 and 1 are both within 0.99 of eval item 1; 2 is only 0.89 from eval item 0.
        Assert.Equal([0, 1], result.Contaminated.Select(c => c.Index));
        Assert.All(result.Contaminated, c => Assert.Equal(1, c.EvalIndex));
        Assert.Equal([false, false, true], result.Keep);
        Assert.Empty(result.Clusters);
    }

    [Fact]
    public void Run_ThroughTheGraph_AgreesWithBruteForceOnSeededClusters()
    {
        var random = new Random(7);
        var training = new List<float[]>();
        var centres = Enumerable.Range(0, 40).Select(_ => Enumerable.Range(0, 32).Select(_ => (float)random.NextDouble() - 0.5f).ToArray()).ToArray();
        for (var i = 0; i < 400; i++)
        {
            var centre = centres[random.Next(centres.Length)];
            training.Add(random.Next(4) == 0 ? centre.Select(x => x + (float)(random.NextDouble() - 0.5) * 0.01f).ToArray() : Enumerable.Range(0, 32).Select(_ => (float)random.NextDouble() - 0.5f).ToArray());
        }

        var exact = SemanticDeduplicator.Run(training, [], new SemanticDedupOptions { Threshold = 0.99 });
        var graph = SemanticDeduplicator.Run(training, [], new SemanticDedupOptions { Threshold = 0.99, ExactSearchLimit = 10 });

        Assert.True(exact.Exact);
        Assert.False(graph.Exact);
        Assert.NotEmpty(exact.Clusters);
        Assert.Equal(exact.Keep, graph.Keep);
        Assert.Equal(exact.Clusters.Select(c => (c.Kept, string.Join(',', c.Dropped))), graph.Clusters.Select(c => (c.Kept, string.Join(',', c.Dropped))));
    }

    [Fact]
    public void Run_WithThresholdOutsideUnitInterval_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => SemanticDeduplicator.Run([[1f]], [], new SemanticDedupOptions { Threshold = 1.5 }));
        Assert.Throws<ArgumentOutOfRangeException>(() => SemanticDeduplicator.Run([[1f]], [], new SemanticDedupOptions { ContaminationThreshold = 0 }));
    }
}
