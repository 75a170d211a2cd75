using Atelier.Vectors.Hnsw;

namespace Atelier.Vectors.Tests;

public sealed class HnswPersistenceTests : IDisposable
{
    private const int Dimension = 16;
    private readonly string _directory = global::Atelier.Testing.TestCleanup.CreateDirectory("atelier-hnsw");

    public void Dispose()
    {
        if (Directory.Exists(_directory))
        {
            Directory.Delete(_directory, recursive: true);
        }
    }

    private static HnswIndex Build(int count, bool quantize)
    {
        var index = new HnswIndex(new HnswOptions { Dimension = Dimension, M = 8, EfConstruction = 60, QuantizeInt8 = quantize });
        index.AddRange(ClusteredData.Ids(count), ClusteredData.Generate(count, Dimension, clusters: 10, seed: 21));
        return index;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Open_AfterSave_ReturnsTheSameResultsAndKeepsDeletes(bool quantize)
    {
        var queries = ClusteredData.Generate(20, Dimension, clusters: 10, seed: 22);
        SearchHit[][] before;
        using (var index = Build(1_000, quantize))
        {
            index.Delete(3);
            index.Delete(500);
            index.Save(_directory);
            before = Enumerable.Range(0, 20).Select(q => index.Search(queries.AsSpan(q * Dimension, Dimension), 10)).ToArray();
        }

        using var reopened = HnswIndex.Open(_directory, verifyChecksums: true);

        Assert.Equal(998, reopened.Count);
        Assert.False(reopened.Contains(3));
        for (int q = 0; q < 20; q++)
        {
            Assert.Equal(before[q], reopened.Search(queries.AsSpan(q * Dimension, Dimension), 10));
        }
    }

    [Fact]
    public void Open_AfterReopen_AcceptsNewVectorsWithoutTouchingTheCommittedFiles()
    {
        using (var index = Build(300, quantize: false))
        {
            index.Save(_directory);
        }

        var hashes = Directory.GetFiles(_directory).ToDictionary(f => f, File.ReadAllBytes);
        using (var reopened = HnswIndex.Open(_directory))
        {
            var far = Enumerable.Repeat(50f, Dimension).ToArray();
            reopened.Add(10_000, far);
            Assert.Equal(10_000, reopened.Search(far, 1)[0].Id);
            Assert.Equal(301, reopened.Count);
        }

        foreach (var (file, bytes) in hashes)
        {
            Assert.Equal(bytes, File.ReadAllBytes(file));
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Open_ThenInsertAndDelete_KeepsTheSegmentsMapped_AndAnswersAsTheIndexThatWasNeverClosed(bool quantize)
    {
        var extra = ClusteredData.Generate(1_200, Dimension, clusters: 10, seed: 23);
        var queries = ClusteredData.Generate(20, Dimension, clusters: 10, seed: 22);
        using var live = Build(1_000, quantize);
        live.Save(_directory);
        using var reopened = HnswIndex.Open(_directory);
        long mapped = reopened.FileBackedBytes;
        Assert.True(mapped > 0);

        // Enough inserts to grow every segment twice past the saved capacity (1,000 to 2,000 to 4,000 nodes), one
        // at a time so both graphs grow alike.
        foreach (var index in new[] { live, reopened })
        {
            for (int i = 0; i < 1_200; i++)
            {
                index.Add(10_000 + i, extra.AsSpan(i * Dimension, Dimension));
            }

            index.Delete(7);
            index.Delete(10_005);
        }

        // The saved part was moved into the grown buffers, not copied into memory: it is still file-backed.
        Assert.Equal(mapped, reopened.FileBackedBytes);
        Assert.Equal(2_198, reopened.Count);
        Assert.False(reopened.Contains(10_005));
        for (int q = 0; q < 20; q++)
        {
            Assert.Equal(live.Search(queries.AsSpan(q * Dimension, Dimension), 10), reopened.Search(queries.AsSpan(q * Dimension, Dimension), 10));
        }

        Assert.Equal(10_123, reopened.Search(extra.AsSpan(123 * Dimension, Dimension), 1)[0].Id);
    }

    [Fact]
    public void Open_AfterCrashDuringSecondSave_SeesTheFirstGenerationIntact()
    {
        using (var index = Build(400, quantize: true))
        {
            index.Save(_directory);
        }

        // A crash mid-save: the next generation's segments half written and a torn temporary manifest,
        // but the rename of the manifest never happened.
        File.WriteAllBytes(Path.Combine(_directory, "vectors.g2.seg"), new byte[1234]);
        File.WriteAllBytes(Path.Combine(_directory, "links0.g2.seg"), new byte[77]);
        File.WriteAllText(Path.Combine(_directory, "MANIFEST.tmp"), "{\"Format\":1,\"Gener");
        File.WriteAllBytes(Path.Combine(_directory, ".nodes.g2.seg.0123abcd.tmp"), new byte[55]);
        File.WriteAllText(Path.Combine(_directory, ".MANIFEST.0123abcd.tmp"), "{\"Format\":1,\"Gener");

        using var reopened = HnswIndex.Open(_directory, verifyChecksums: true);

        Assert.Equal(400, reopened.Count);
        Assert.Equal(10, reopened.Search(new float[Dimension], 10).Length);

        // The next save sweeps what the crash left, under old and current temporary names alike.
        reopened.Save(_directory);
        Assert.Empty(Directory.GetFiles(_directory, "*.tmp"));
        using var saved = HnswIndex.Open(_directory, verifyChecksums: true);
        Assert.Equal(400, saved.Count);
    }

    [Fact]
    public void Save_ThatFailsPartWay_LeavesTheCommittedGenerationAndNoTemporaryFile()
    {
        using var index = Build(300, quantize: false);
        index.Save(_directory);
        var committed = Directory.GetFiles(_directory).ToDictionary(f => f, File.ReadAllBytes);

        // The next generation's third segment cannot be renamed into place: its vectors were written
        // (and renamed), then the save fails before the manifest.
        index.Add(10_000, Enumerable.Repeat(50f, Dimension).ToArray());
        Directory.CreateDirectory(Path.Combine(_directory, "links0.g2.seg"));
        Assert.ThrowsAny<IOException>(() => index.Save(_directory));

        Assert.Empty(Directory.GetFiles(_directory, "*.tmp"));
        foreach (var (file, bytes) in committed)
        {
            Assert.Equal(bytes, File.ReadAllBytes(file));
        }

        using (var reopened = HnswIndex.Open(_directory, verifyChecksums: true))
        {
            Assert.Equal(300, reopened.Count);
            Assert.False(reopened.Contains(10_000));
        }

        // Once the obstacle is gone the next save commits and sweeps the failed generation's files.
        Directory.Delete(Path.Combine(_directory, "links0.g2.seg"));
        index.Save(_directory);
        using var saved = HnswIndex.Open(_directory, verifyChecksums: true);
        Assert.Equal(301, saved.Count);
        Assert.DoesNotContain(Directory.GetFiles(_directory), f => Path.GetFileName(f).Contains(".g1.", StringComparison.Ordinal));
    }

    [Fact]
    public void Open_WithTruncatedCommittedSegment_FailsClearlyInsteadOfReturningGarbage()
    {
        using (var index = Build(400, quantize: false))
        {
            index.Save(_directory);
        }

        string links = Directory.GetFiles(_directory, "links0.*").Single();
        using (var stream = new FileStream(links, FileMode.Open))
        {
            stream.SetLength(stream.Length / 2);
        }

        var error = Assert.Throws<VectorStoreCorruptedException>(() => HnswIndex.Open(_directory));
        Assert.Contains("links0", error.Message);
    }

    [Fact]
    public void Open_WithTornManifest_FailsItsChecksum()
    {
        using (var index = Build(100, quantize: false))
        {
            index.Save(_directory);
        }

        string manifest = Path.Combine(_directory, "MANIFEST");
        var bytes = File.ReadAllBytes(manifest);
        File.WriteAllBytes(manifest, bytes[..(bytes.Length / 2)]);

        Assert.Throws<VectorStoreCorruptedException>(() => HnswIndex.Open(_directory));
    }

    [Fact]
    public void Open_WithFlippedByteInVectors_IsCaughtWhenChecksumsAreVerified()
    {
        using (var index = Build(100, quantize: false))
        {
            index.Save(_directory);
        }

        string vectors = Directory.GetFiles(_directory, "vectors.*").Single();
        var bytes = File.ReadAllBytes(vectors);
        bytes[100] ^= 0xFF;
        File.WriteAllBytes(vectors, bytes);

        Assert.Throws<VectorStoreCorruptedException>(() => HnswIndex.Open(_directory, verifyChecksums: true));
    }

    [Fact]
    public void Save_Twice_LeavesOnlyTheLatestGeneration()
    {
        using var index = Build(100, quantize: false);
        index.Save(_directory);
        index.Add(1_000, new float[Dimension]);
        index.Save(_directory);

        var names = Directory.GetFiles(_directory).Select(f => Path.GetFileName(f)!).Order().ToArray();

        Assert.Equal(new[] { "MANIFEST", "links0.g2.seg", "nodes.g2.seg", "vectors.g2.seg" }, names);
    }
}
