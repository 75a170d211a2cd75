using Atelier.Catalog.Sqlite;
using Atelier.Testing;

namespace Atelier.Catalog.PostgreSql.Tests;

/// <summary>
/// The questions no contract suite asks yet (the lineage graph's nodes and edges, pending restores,
/// the registry's deletion check): the same rows written to a SQLite catalog and to a PostgreSQL one
/// must get the same answers, whatever shape the stored requests take.
/// </summary>
public sealed class ProviderAgreementTests : IAsyncLifetime
{
    private readonly FreshCatalogs _catalogs = new();

    private sealed record Both(SqliteCatalog Sqlite, IModelRepository SqliteModels, IFeatureRepository SqliteFeatures, PostgreSqlCatalog Postgres);

    [Fact]
    public async Task LineageNodesEdgesAndPendingRestores_AreTheSameOnBothProviders()
    {
        var both = await SeedAsync();
        foreach (var ws in new[] { "ws_a", "ws_b", "ws_none" })
        {
            Assert.Equal(Sorted(await both.Sqlite.Lineage.NodesAsync(ws)), Sorted(await both.Postgres.Lineage.NodesAsync(ws)));
            Assert.Equal(Sorted(await both.Sqlite.Lineage.EdgesAsync(ws)), Sorted(await both.Postgres.Lineage.EdgesAsync(ws)));
        }

        Assert.NotEmpty(await both.Postgres.Lineage.EdgesAsync("ws_a"));
        foreach (var (job, step) in new[] { ("job-1", 10L), ("job-1", 20L), ("job-2", 10L) })
        {
            Assert.Equal(await both.Sqlite.Lineage.PendingFromCheckpointAsync("ws_a", job, step), await both.Postgres.Lineage.PendingFromCheckpointAsync("ws_a", job, step));
        }

        Assert.Equal([new("fine_tuning_job", "job-restore")], await both.Postgres.Lineage.PendingFromCheckpointAsync("ws_a", "job-1", 10));
        foreach (var file in new[] { "f-1", "f-2", "f-3", "f-4", "f-9" })
        {
            Assert.Equal(await both.Sqlite.Lineage.DerivedFromFileAsync("ws_a", file), await both.Postgres.Lineage.DerivedFromFileAsync("ws_a", file));
        }
    }

    [Fact]
    public async Task TheRegistrysDeletionCheck_FindsTheSameUsesOnBothProviders()
    {
        var both = await SeedAsync();
        foreach (var (id, names, ws) in new (string, string[], string?)[] { ("base", ["base", "b-alias"], null), ("base", ["base"], "ws_b"), ("ft:1", ["ft:1"], "ws_a") })
        {
            var sqlite = await both.SqliteModels.DeleteUnlessDerivedAsync(id, names, ws);
            var postgres = await both.Postgres.Models.DeleteUnlessDerivedAsync(id, names, ws);
            Assert.Equal(sqlite.Status, postgres.Status);
            Assert.Equal(sqlite.Derived, postgres.Derived);
        }
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _catalogs.DisposeAsync().AsTask();

    private async Task<Both> SeedAsync()
    {
        var sqlite = SqliteCatalog.Open(Path.Combine(TestCleanup.CreateDirectory("atelier-agreement"), "catalog.db"));
        var both = new Both(sqlite, new SqliteModelRepository(sqlite.Database), new SqliteFeatureRepository(sqlite.Database), await _catalogs.OpenAsync("agreement"));
        await ForBothAsync(both, async (keys, files, datasets, jobs, collections, models, features) =>
        {
            await keys.EnsureWorkspaceAsync("ws_a", "a", 1);
            await keys.EnsureWorkspaceAsync("ws_b", "b", 1);
            foreach (var (ws, id, loc) in new[] { ("ws_a", "f-1", "local"), ("ws_a", "f-2", "archive"), ("ws_a", "f-3", "local"), ("ws_b", "f-1b", "local") })
            {
                await files.InsertAsync(new FileRecord
                {
                    Id = id,
                    WorkspaceId = ws,
                    Filename = id + ".jsonl",
                    Purpose = "fine-tune",
                    Bytes = 1,
                    CreatedAt = 5,
                    SampleType = "instruct",
                    Signature = "00",
                    Policy = "default",
                    LocationId = loc,
                    BlobKey = "file/" + id,
                    CreatedBy = "key:test",
                });
            }

            await datasets.InsertAsync(Dataset("ws_a", "ds-train", """{"training_files":["f-1","f-2"],"validation_files":["f-3"],"model":"b-alias"}""", 10));
            await datasets.InsertAsync(Dataset("ws_a", "ds-dedup", """{"source_dataset":"ds-train","eval_files":["f-3"],"eval_dataset":"ds-train","model":"base"}""", 11));
            await datasets.InsertAsync(Dataset("ws_a", "ds-odd", """{"validation_files":[],"source_dataset":null,"model":null}""", 12));
            await datasets.InsertAsync(Dataset("ws_b", "ds-b", """{"training_files":["f-1b"]}""", 13));
            await jobs.InsertAsync(Job("ws_a", "job-1", "base", """{"training_files":[{"file_id":"f-1","weight":1},"f-2"],"validation_files":["f-3"]}""", "SUCCESS", 20));
            await jobs.InsertAsync(Job("ws_a", "job-2", "b-alias", """{"dataset_id":"ds-dedup","training_files":null,"validation_files":[null,7,"f-2"]}""", "RUNNING", 21));
            await jobs.InsertAsync(Job("ws_a", "job-restore", "base", """{"start_from":{"job_id":"job-1","step":10}}""", "QUEUED", 22));
            await jobs.InsertAsync(Job("ws_a", "job-restored", "base", """{"start_from":{"job_id":"job-1","step":20}}""", "SUCCESS", 23));
            await jobs.InsertAsync(Job("ws_b", "job-b", "base", """{"training_files":[{"file_id":"f-1b"}]}""", "QUEUED", 24));
            await jobs.AddCheckpointAsync("job-1", new JobCheckpointRecord(10, "ck-10", 1.0, null, null, 30, true), 100);
            await jobs.AddCheckpointAsync("job-1", new JobCheckpointRecord(20, "ck-20", 0.5, 0.6, 0.7, 31, true), 200);
            await jobs.MarkCheckpointsDeletedAsync("job-1", [10]);
            await collections.InsertAsync(new VectorCollectionRow { Id = "col-1", WorkspaceId = "ws_a", Name = "docs", ConfigJson = """{"dimension":4,"locations":["local","archive"]}""", Policy = "default", CreatedAt = 40, CreatedBy = "key:test" });
            await collections.InsertAsync(new VectorCollectionRow { Id = "col-2", WorkspaceId = "ws_a", Name = "bare", ConfigJson = """{"dimension":4}""", Policy = "default", CreatedAt = 41, CreatedBy = "key:test" });
            await models.TryInsertAsync(Model("base", null, null, null, ["b-alias"], "{}"));
            await models.TryInsertAsync(Model("ft:1", "ws_a", "base", "job-1", [], """{"checkpoint_id":"ck-20"}"""));
            var t0 = new DateTimeOffset(2026, 3, 1, 0, 0, 0, TimeSpan.Zero);
            await features.TryInsertViewAsync(new FeatureViewRecord("fv-1", "ws_a", "quality", 1, """{"policy":"strict"}""", t0));
            await features.TryInsertViewAsync(new FeatureViewRecord("fv-2", "ws_a", "other", 1, "{}", t0));
            await features.TryInsertSegmentAsync(new FeatureSegment("fv-1", 1, "local", "k1", 1, 1, "aa", t0, t0, "push", t0));
            await features.TryInsertSegmentAsync(new FeatureSegment("fv-1", 2, "archive", "k2", 1, 1, "bb", t0, t0, "push", t0));
            await features.TryInsertSegmentAsync(new FeatureSegment("fv-1", 3, "local", "k3", 1, 1, "cc", t0, t0, "push", t0));
            await features.TryInsertTrainingSetAsync(new TrainingSetRecord("ts-1", "ws_a", "clean", 1, """{"policy":{"name":"strict"},"location":"local","sources":[{"view_id":"fv-1"},{"view_id":null},{}]}""", t0));
            await features.TryInsertTrainingSetAsync(new TrainingSetRecord("ts-2", "ws_a", "plain", 1, """{"policy":"loose"}""", t0));
        });
        return both;
    }

    private static async Task ForBothAsync(Both both, Func<IApiKeyRepository, IFileRepository, IDatasetRepository, IJobRepository, IVectorCollectionRepository, IModelRepository, IFeatureRepository, Task> seed)
    {
        await seed(both.Sqlite.Keys, both.Sqlite.Files, both.Sqlite.Datasets, both.Sqlite.Jobs, both.Sqlite.VectorCollections, both.SqliteModels, both.SqliteFeatures);
        await seed(both.Postgres.Keys, both.Postgres.Files, both.Postgres.Datasets, both.Postgres.Jobs, both.Postgres.VectorCollections, both.Postgres.Models, both.Postgres.Features);
    }

    private static List<string> Sorted(IEnumerable<LineageNodeRecord> nodes) =>
        [.. nodes.Select(n => $"{n.Kind}|{n.Id}|{n.Name}|{n.Status}|{n.CreatedAt}|{n.Policy}|{string.Join(",", n.Locations.Order(StringComparer.Ordinal))}|{n.Parent}").Order(StringComparer.Ordinal)];

    private static List<LineageEdgeRecord> Sorted(IEnumerable<LineageEdgeRecord> edges) =>
        [.. edges.OrderBy(e => $"{e.FromKind}|{e.FromId}|{e.ToKind}|{e.ToId}|{e.Relation}", StringComparer.Ordinal)];

    private static DatasetRecord Dataset(string ws, string id, string request, long createdAt) => new()
    {
        Id = id,
        WorkspaceId = ws,
        Name = id,
        Status = "succeeded",
        RequestJson = request,
        Policy = "default",
        LocationId = "local",
        CreatedAt = createdAt,
        CreatedBy = "key:test",
    };

    private static JobRecord Job(string ws, string id, string model, string request, string status, long createdAt) => new()
    {
        Id = id,
        WorkspaceId = ws,
        Model = model,
        Status = status,
        AutoStart = true,
        RequestJson = request,
        Policy = "default",
        LocationId = "local",
        CreatedAt = createdAt,
        ModifiedAt = createdAt,
        CreatedBy = "key:test",
    };

    private static ModelRecord Model(string id, string? ws, string? root, string? job, string[] aliases, string lineage) => new()
    {
        Id = id,
        WorkspaceId = ws,
        Type = ws is null ? ModelRecord.BaseType : ModelRecord.FineTunedType,
        Root = root,
        JobId = job,
        CreatedAt = 50,
        MaxContextLength = 64,
        CapabilitiesJson = "{}",
        Policy = "default",
        ArtifactsJson = "[]",
        Aliases = aliases,
        LineageJson = lineage,
        OwnedBy = ws ?? "atelier",
        CreatedBy = "key:test",
    };
}
