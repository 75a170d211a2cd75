using Atelier.Vectors.Hnsw;

namespace Atelier.Vectors.Tests;

public class HnswBehaviourTests
{
    private const int Dimension = 24;

    private static HnswIndex Build(int count, bool quantize = false, int seed = 11)
    {
        var index = new HnswIndex(new HnswOptions { Dimension = Dimension, M = 12, EfConstruction = 80, QuantizeInt8 = quantize });
        index.AddRange(ClusteredData.Ids(count), ClusteredData.Generate(count, Dimension, clusters: 20, seed: seed), degreeOfParallelism: 2);
        return index;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Search_WithFilter_NeverReturnsANonMatchingId(bool quantize)
    {
        using var index = Build(3_000, quantize);
        var queries = ClusteredData.Generate(50, Dimension, clusters: 20, seed: 99);
        // Half, a tenth and a hundredth of the ids match: the walk, the walk with a wide search, the exact scan.
        foreach (int modulus in new[] { 2, 10, 100 })
        {
            var filter = new PredicateFilter(id => id % modulus == 3 % modulus);
            for (int q = 0; q < 50; q++)
            {
                var hits = index.Search(queries.AsSpan(q * Dimension, Dimension), 10, ef: 40, filter);
                Assert.All(hits, h => Assert.True(h.Id % modulus == 3 % modulus, $"id {h.Id} fails the filter"));
                Assert.Equal(10, hits.Length);
            }
        }
    }

    [Fact]
    public void Search_WithVerySelectiveIdSetFilter_StillFindsExactlyTheKNearestMatches()
    {
        using var index = Build(3_000);
        var allowed = new IdSetFilter([5, 17, 400, 401, 999, 1500, 2000, 2100, 2999, 7, 8, 9]);
        var query = ClusteredData.Generate(1, Dimension, clusters: 20, seed: 5);

        var hits = index.Search(query, 10, ef: 16, allowed);
        var truth = index.ExactSearch(query, 10, allowed);

        Assert.Equal(truth.Select(t => t.Id), hits.Select(h => h.Id));
    }

    [Fact]
    public void Search_WithModeratelySelectiveFilter_KeepsRecallAgainstFilteredBruteForce()
    {
        using var index = Build(4_000);
        var queries = ClusteredData.Generate(40, Dimension, clusters: 20, seed: 6);
        var filter = new PredicateFilter(id => id % 5 == 0);

        double recall = Recall.Measure(index, queries, Dimension, 10, ef: 64, filter);

        Assert.True(recall >= 0.9, $"filtered recall was {recall:F3}");
    }

    [Fact]
    public void Search_AfterDeletes_NeverReturnsADeletedId()
    {
        using var index = Build(3_000);
        var deleted = new HashSet<long>();
        var random = new Random(3);
        while (deleted.Count < 1_000)
        {
            long id = random.Next(3_000);
            if (deleted.Add(id))
            {
                Assert.True(index.Delete(id));
            }
        }

        var queries = ClusteredData.Generate(60, Dimension, clusters: 20, seed: 12);
        for (int q = 0; q < 60; q++)
        {
            var hits = index.Search(queries.AsSpan(q * Dimension, Dimension), 10, ef: 32);
            Assert.Equal(10, hits.Length);
            Assert.All(hits, h => Assert.DoesNotContain(h.Id, deleted));
        }

        Assert.Equal(2_000, index.Count);
        Assert.False(index.Delete(deleted.First()));
    }

    [Fact]
    public void Search_WhenAlmostEverythingIsDeleted_ReturnsTheSurvivors()
    {
        using var index = Build(500);
        for (long id = 0; id < 497; id++)
        {
            index.Delete(id);
        }

        var hits = index.Search(new float[Dimension], 10);

        Assert.Equal([497L, 498L, 499L], hits.Select(h => h.Id).Order());
    }

    [Fact]
    public void Add_WithExistingId_ReplacesTheVector()
    {
        using var index = Build(200);
        var far = Enumerable.Repeat(100f, Dimension).ToArray();

        index.Add(7, far);
        var hits = index.Search(far, 1);

        Assert.Equal(7, hits[0].Id);
        Assert.Equal(0f, hits[0].Distance, 3);
        Assert.Equal(200, index.Count);
    }

    [Fact]
    public void Add_WithWrongDimension_IsRejected()
    {
        using var index = Build(10);

        Assert.Throws<Atelier.Core.Errors.BadRequestException>(() => index.Add(1, new float[Dimension + 1]));
    }

    [Fact]
    public void Build_WithSameSeed_IsReproducibleSequentially()
    {
        var data = ClusteredData.Generate(500, Dimension, clusters: 5, seed: 1);
        using var a = new HnswIndex(new HnswOptions { Dimension = Dimension, Seed = 9 });
        using var b = new HnswIndex(new HnswOptions { Dimension = Dimension, Seed = 9 });
        a.AddRange(ClusteredData.Ids(500), data);
        b.AddRange(ClusteredData.Ids(500), data);
        var query = ClusteredData.Generate(1, Dimension, clusters: 5, seed: 2);

        Assert.Equal(a.Search(query, 10, ef: 10), b.Search(query, 10, ef: 10));
    }
}
