using Atelier.Vectors.Hnsw;
using Atelier.Vectors.Kernels;

namespace Atelier.Vectors.Tests;

public sealed class ProductQuantizerTests : IDisposable
{
    private const int Dimension = 32;
    private readonly string _directory = global::Atelier.Testing.TestCleanup.CreateDirectory("atelier-pq");

    public void Dispose()
    {
        if (Directory.Exists(_directory))
        {
            Directory.Delete(_directory, recursive: true);
        }
    }

    [Fact]
    public void Decode_OfAnEncodedVector_IsCloserThanTheDataSpread()
    {
        var data = ClusteredData.Generate(4_000, Dimension, clusters: 20, seed: 31);
        var pq = ProductQuantizer.Train(DistanceMetric.L2, data, Dimension, subspaces: 8, seed: 5);
        var code = new byte[8];
        var decoded = new float[Dimension];
        double error = 0, spread = 0;
        for (int v = 0; v < 500; v++)
        {
            var x = data.AsSpan(v * Dimension, Dimension);
            pq.Encode(x, code);
            pq.Decode(code, decoded);
            error += VectorDistance.L2Squared(x, decoded);
            spread += VectorDistance.L2Squared(x, data.AsSpan((v + 1) * Dimension, Dimension));
        }

        // Each sub-vector is replaced by the nearest of 256 centroids: far closer than another data point.
        Assert.True(error < spread / 10, $"quantisation error {error / 500:F3} against a spread of {spread / 500:F3}");
    }

    [Theory]
    [InlineData(DistanceMetric.L2)]
    [InlineData(DistanceMetric.Dot)]
    public void Distance_FromTheTable_IsTheExactDistanceToTheDecodedVector(DistanceMetric metric)
    {
        var data = ClusteredData.Generate(2_000, Dimension, clusters: 10, seed: 32, normalize: metric != DistanceMetric.L2);
        var pq = ProductQuantizer.Train(metric, data, Dimension, subspaces: 16, seed: 6);
        var query = data.AsSpan(7 * Dimension, Dimension);
        var table = new float[pq.TableLength];
        pq.BuildTable(query, table);
        var code = new byte[16];
        var decoded = new float[Dimension];
        for (int v = 100; v < 200; v++)
        {
            pq.Encode(data.AsSpan(v * Dimension, Dimension), code);
            pq.Decode(code, decoded);
            float expected = metric == DistanceMetric.L2 ? VectorDistance.L2Squared(query, decoded) : 1f - VectorDistance.Dot(query, decoded);
            Assert.Equal(expected, pq.Distance(table, code), 3);
        }
    }

    [Fact]
    public void Train_WithTheSameSeed_LearnsTheSameCentroids()
    {
        var data = ClusteredData.Generate(1_000, Dimension, clusters: 10, seed: 33);
        var a = ProductQuantizer.Train(DistanceMetric.L2, data, Dimension, subspaces: 4, seed: 9);
        var b = ProductQuantizer.Train(DistanceMetric.L2, data, Dimension, subspaces: 4, seed: 9);
        Assert.True(a.CentroidData.SequenceEqual(b.CentroidData));
    }

    [Fact]
    public void Train_WithFewerVectorsThanCentroids_StillEncodesEveryVectorExactly()
    {
        var data = ClusteredData.Generate(50, Dimension, clusters: 5, seed: 34);
        var pq = ProductQuantizer.Train(DistanceMetric.L2, data, Dimension, subspaces: 8);
        var code = new byte[8];
        var decoded = new float[Dimension];
        pq.Encode(data.AsSpan(0, Dimension), code);
        pq.Decode(code, decoded);
        Assert.Equal(0f, VectorDistance.L2Squared(data.AsSpan(0, Dimension), decoded), 4);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(64)]
    public void Options_WithSubspacesThatDoNotDivideTheDimension_AreRefused(int subspaces)
    {
        var options = new HnswOptions { Dimension = Dimension, QuantizeInt8 = true, ProductQuantizationSubspaces = subspaces };
        if (subspaces == 0)
        {
            using var index = new HnswIndex(options);
            Assert.Null(index.ProductQuantizer);
            return;
        }

        Assert.Throws<Atelier.Core.Errors.BadRequestException>(() => new HnswIndex(options));
    }

    [Fact]
    public void Options_WithProductQuantizationButNoInt8Codes_AreRefused() =>
        Assert.Throws<Atelier.Core.Errors.BadRequestException>(() => new HnswIndex(new HnswOptions { Dimension = Dimension, ProductQuantizationSubspaces = 8 }));

    [Fact]
    public void ResidentBytes_OfAnIndexWalkingOnProductCodes_CountsThemInsteadOfTheInt8Codes()
    {
        var data = ClusteredData.Generate(500, Dimension, clusters: 5, seed: 36);
        using var int8 = new HnswIndex(new HnswOptions { Dimension = Dimension, M = 8, QuantizeInt8 = true });
        using var pq = new HnswIndex(new HnswOptions { Dimension = Dimension, M = 8, QuantizeInt8 = true, ProductQuantizationSubspaces = 4 });
        int8.AddRange(ClusteredData.Ids(500), data);
        pq.AddRange(ClusteredData.Ids(500), data);
        Assert.Equal(500L * (Dimension - 4), int8.ResidentBytes - pq.ResidentBytes);
    }

    [Fact]
    public void Index_WalkingOnProductCodes_FindsTheTrueNeighbours_AndKeepsThemAcrossSaveAndOpen()
    {
        const int Count = 3_000;
        var data = ClusteredData.Generate(Count, Dimension, clusters: 20, seed: 35);
        var queries = ClusteredData.Generate(50, Dimension, clusters: 20, seed: 35)[..(50 * Dimension)];
        SearchHit[][] before;
        using (var index = new HnswIndex(new HnswOptions { Dimension = Dimension, M = 12, EfConstruction = 80, QuantizeInt8 = true, ProductQuantizationSubspaces = 8 }))
        {
            index.AddRange(ClusteredData.Ids(Count), data);
            Assert.NotNull(index.ProductQuantizer);
            before = [.. Enumerable.Range(0, 50).Select(q => index.Search(queries.AsSpan(q * Dimension, Dimension), 10, ef: 100))];
            int hits = 0;
            for (int q = 0; q < 50; q++)
            {
                var exact = index.ExactSearch(queries.AsSpan(q * Dimension, Dimension), 10).Select(h => h.Id).ToHashSet();
                hits += before[q].Count(h => exact.Contains(h.Id));
            }

            Assert.True(hits >= 0.9 * 500, $"recall@10 {hits / 500.0:F3}");
            index.Save(_directory);
        }

        using var reopened = HnswIndex.Open(_directory, verifyChecksums: true);
        Assert.Equal(8, reopened.ProductQuantizer!.Subspaces);
        for (int q = 0; q < 50; q++)
        {
            Assert.Equal(before[q].Select(h => h.Id), reopened.Search(queries.AsSpan(q * Dimension, Dimension), 10, ef: 100).Select(h => h.Id));
        }
    }
}
