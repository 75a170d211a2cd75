using Atelier.Core.Errors;
using Atelier.Storage.Placement;
using Atelier.Vectors.Collections;

namespace Atelier.Vectors.Tests.Collections;

/// <summary>The collection store on its own: catalog rows, blobs through the placement guard, snapshots, recovery.</summary>
public sealed class CollectionStoreTests : IDisposable
{
    private const int Dimension = 8;
    private readonly CollectionStoreFixture _fixture = new();

    public void Dispose() => _fixture.Dispose();

    private static CollectionConfig Config(int shards = 2) =>
        new() { Dimension = Dimension, Metric = DistanceMetric.L2, Shards = shards, Locations = [CollectionStoreFixture.Location] };

    private static CollectionPoint[] Points(int count, int seed)
    {
        var vectors = ClusteredData.Generate(count, Dimension, clusters: 8, seed: seed);
        var categories = new[] { "news", "code", "math", "law", "chat" };
        return
        [
            .. Enumerable.Range(0, count).Select(i => new CollectionPoint(
                i,
                vectors.AsSpan(i * Dimension, Dimension).ToArray(),
                new Payload([new("category", PayloadValue.Of(categories[i % categories.Length])), new("rank", PayloadValue.Of(i))]))),
        ];
    }

    private static CollectionPoint Copy(CollectionPoint point) => point with { Vector = [.. point.Vector] };

    private async Task<List<string>> KeysAsync(string prefix) =>
        await _fixture.Locations.ListKeysAsync(CollectionStoreFixture.Location, prefix, CancellationToken.None).ToListAsync();

    [Fact]
    public async Task Snapshots_ReplaceTheLog_AndAReopenReplaysSnapshotPlusLog()
    {
        var data = Points(800, seed: 4);
        var options = new CollectionStoreOptions { MinSnapshotLogBytes = 4_096 };
        long[] deleted;
        using (var store = _fixture.OpenStore(options))
        {
            var collection = await store.CreateAsync(CollectionStoreFixture.Workspace, "docs", Config(), "default", "test", CancellationToken.None);
            var chunks = data.Chunk(40).ToArray();
            await collection.UpsertAsync([.. chunks[0].Select(Copy)], "test", CancellationToken.None);
            var firstLog = VectorCollection.KeyPrefix(collection.Record.Id) + "shard-000/log-000000000001";
            var stream = await _fixture.Guard.OpenReadAsync(CollectionStoreFixture.Location, firstLog, CancellationToken.None);
            Assert.NotNull(stream);
            var firstLogBytes = new MemoryStream();
            await using (stream)
            {
                await stream.CopyToAsync(firstLogBytes);
            }

            deleted = [.. chunks[0].Select(p => p.Id).Where(id => collection.ShardOf(id) == 0).Take(3)];
            await collection.DeleteAsync(deleted, "test", CancellationToken.None);
            foreach (var chunk in chunks.Skip(1))
            {
                await collection.UpsertAsync([.. chunk.Select(Copy)], "test", CancellationToken.None);
            }

            Assert.All(collection.DescribeShards(), s => Assert.True(s.SnapshotBytes > 0, $"shard {s.Shard} never snapshotted"));
            var keys = await KeysAsync(VectorCollection.KeyPrefix(collection.Record.Id));
            Assert.True(keys.Count(k => k.Contains("/log-", StringComparison.Ordinal)) < 21, string.Join(", ", keys));
            Assert.Equal(2, keys.Count(k => k.Contains("/snap-", StringComparison.Ordinal)));
            Assert.DoesNotContain(firstLog, keys);

            // A crash between a snapshot's commit and the removal of the log it covers leaves that log behind:
            // the reopen must ignore it (replaying it would bring the deleted points back) and remove it.
            await using var write = await _fixture.Guard.BeginWriteAsync(
                new ArtifactRef("collection", collection.Record.Id, CollectionStoreFixture.Workspace), CollectionStoreFixture.ResolvePolicy("default"), CollectionStoreFixture.Location, "test", key: firstLog);
            await write.WriteAsync(firstLogBytes.ToArray(), CancellationToken.None);
            await write.CommitAsync(CancellationToken.None);
        }

        _fixture.Reopen();
        using (var store = _fixture.OpenStore(options))
        {
            var collection = await store.GetAsync(CollectionStoreFixture.Workspace, "docs", CancellationToken.None);
            Assert.Equal(797, collection.Count);
            foreach (var point in data.Where(p => !deleted.Contains(p.Id)))
            {
                Assert.True(collection.TryGet(point.Id, out var vector, out var payload), $"point {point.Id} lost");
                Assert.Equal(point.Vector, vector);
                Assert.True(payload.TryGet("category", out var category) && point.Payload.TryGet("category", out var expected) && category == expected);
            }

            Assert.All(deleted, id => Assert.False(collection.TryGet(id, out _, out _), $"deleted point {id} came back"));
            Assert.DoesNotContain(await KeysAsync(VectorCollection.KeyPrefix(collection.Record.Id)), k => k.EndsWith("shard-000/log-000000000001", StringComparison.Ordinal));
        }
    }

    [Fact]
    public async Task Create_WithATakenName_IsAConflictAndWritesNothingMore()
    {
        using var store = _fixture.OpenStore();
        await store.CreateAsync(CollectionStoreFixture.Workspace, "docs", Config(), "default", "test", CancellationToken.None);
        int blobs = (await KeysAsync("collection/")).Count;

        await Assert.ThrowsAsync<ConflictException>(() => store.CreateAsync(CollectionStoreFixture.Workspace, "docs", Config(), "default", "test", CancellationToken.None));

        Assert.Single(await store.ListAsync(CollectionStoreFixture.Workspace, CancellationToken.None));
        Assert.Equal(blobs, (await KeysAsync("collection/")).Count);
    }

    [Fact]
    public async Task Create_AtALocationThePolicyForbids_IsRefusedAndLeavesNoRowAndNoBlob()
    {
        using var store = _fixture.OpenStore();

        await Assert.ThrowsAsync<PlacementRefusedException>(() => store.CreateAsync(CollectionStoreFixture.Workspace, "docs", Config(), "us-only", "test", CancellationToken.None));

        Assert.Empty(await store.ListAsync(CollectionStoreFixture.Workspace, CancellationToken.None));
        Assert.Empty(await KeysAsync("collection/"));
    }

    [Fact]
    public async Task StartupSweep_RemovesTheBlobsOfACollectionWithoutACatalogRow()
    {
        string id;
        using (var store = _fixture.OpenStore())
        {
            var collection = await store.CreateAsync(CollectionStoreFixture.Workspace, "docs", Config(), "default", "test", CancellationToken.None);
            await collection.UpsertAsync([.. Points(50, seed: 5)], "test", CancellationToken.None);
            id = collection.Record.Id;
        }

        // A crash after the row was deleted and before the blobs were: only the blobs are left.
        await _fixture.Catalog.DeleteAsync(id, CancellationToken.None);
        _fixture.Reopen();
        using var reopened = _fixture.OpenStore();

        Assert.True(await reopened.RemoveOrphansAsync(CancellationToken.None) > 0);
        Assert.Empty(await KeysAsync(VectorCollection.KeyPrefix(id)));
    }

    [Fact]
    public async Task Delete_RemovesTheRowAndEveryBlob_AndTheNameIsFreeAgain()
    {
        using var store = _fixture.OpenStore();
        var collection = await store.CreateAsync(CollectionStoreFixture.Workspace, "docs", Config(), "default", "test", CancellationToken.None);
        await collection.UpsertAsync([.. Points(50, seed: 6)], "test", CancellationToken.None);

        var record = await store.DeleteAsync(CollectionStoreFixture.Workspace, "docs", "test", CancellationToken.None);

        Assert.Empty(await KeysAsync(VectorCollection.KeyPrefix(record.Id)));
        await Assert.ThrowsAsync<NotFoundException>(() => store.GetAsync(CollectionStoreFixture.Workspace, "docs", CancellationToken.None));
        var again = await store.CreateAsync(CollectionStoreFixture.Workspace, "docs", Config(), "default", "test", CancellationToken.None);
        Assert.Equal(0, again.Count);
    }

    [Fact]
    public void ConfigJson_AsTheHostWroteIt_ReadsBackUnchanged()
    {
        // The catalog rows written while the store lived in the host: snake_case names and enum values.
        const string stored = """{"dimension":8,"metric":"l2","storage":"int8","shards":2,"locations":["local"],"m":12,"ef_construction":100,"ef_search":40}""";

        var config = CollectionJson.DeserializeConfig(stored);

        Assert.Equal(stored, CollectionJson.Serialize(config));
        Assert.Equal(VectorStorage.Int8, config.Storage);
        Assert.Equal(DistanceMetric.L2, config.Metric);
        Assert.Equal(100, config.EfConstruction);
    }
}
