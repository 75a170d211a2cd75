using Microsoft.Data.Sqlite;

namespace Atelier.Catalog.Tests;

public sealed class CatalogTests
{
    private static CatalogDatabase NewDatabase(out string path)
    {
        path = Path.Combine(Atelier.Testing.TestCleanup.CreateDirectory("atelier-catalog"), "catalog.db");
        return new CatalogDatabase(path);
    }

    private static FileRecord File(string workspace, string id, long createdAt, string purpose = "fine-tune", string name = "train.jsonl", string sample = "instruct", long? expiresAt = null) => new()
    {
        Id = id,
        WorkspaceId = workspace,
        Filename = name,
        Purpose = purpose,
        Bytes = 10,
        CreatedAt = createdAt,
        SampleType = sample,
        Signature = "00",
        Policy = "default",
        LocationId = "local",
        BlobKey = "file/" + id,
        CreatedBy = "key:test",
        ExpiresAt = expiresAt,
    };

    [Fact]
    public void Reopening_AppliesEachMigrationOnce()
    {
        var db = NewDatabase(out var path);
        Assert.Equal(CatalogDatabase.LatestSchemaVersion, db.SchemaVersion);
        Assert.True(CatalogDatabase.LatestSchemaVersion >= 2);
        var again = new CatalogDatabase(path);
        Assert.Equal(CatalogDatabase.LatestSchemaVersion, again.SchemaVersion);
        using var connection = again.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT COUNT(*) FROM schema_migrations";
        Assert.Equal((long)CatalogDatabase.LatestSchemaVersion, (long)command.ExecuteScalar()!);
    }

    [Fact]
    public void UpgradeFromTheFirstSchema_AppliesOnlyTheNewMigrationsAndKeepsRows()
    {
        // A catalog as version 1 left it: only migration 1 applied, with a workspace in it.
        var path = Path.Combine(Atelier.Testing.TestCleanup.CreateDirectory("atelier-catalog"), "catalog.db");
        var db = new CatalogDatabase(path);
        var keys = new ApiKeyStore(db, TimeProvider.System);
        var (_, token) = keys.Create(keys.EnsureWorkspace("default"), "admin", "admin");
        using (var connection = db.Open())
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "DROP TABLE datasets; DELETE FROM schema_migrations WHERE version > 1;";
            command.ExecuteNonQuery();
        }

        Assert.Equal(1, db.SchemaVersion);
        var upgraded = new CatalogDatabase(path);
        Assert.Equal(CatalogDatabase.LatestSchemaVersion, upgraded.SchemaVersion);
        Assert.NotNull(new ApiKeyStore(upgraded, TimeProvider.System).Authenticate(token));
        Assert.Empty(new DatasetCatalog(upgraded, TimeProvider.System).Unfinished());
    }

    [Fact]
    public void UpgradeToTheOperatorRole_MakesOnlyTheBootstrapKeyTheOperator()
    {
        var db = NewDatabase(out var path);
        var keys = new ApiKeyStore(db, TimeProvider.System);
        var (first, firstToken) = keys.Create(keys.EnsureWorkspace("default"), "admin", "admin");
        var (second, _) = keys.Create(keys.EnsureWorkspace("team"), "team-admin", "admin");
        var (member, _) = keys.Create(keys.EnsureWorkspace("team"), "ci", "member");
        using (var connection = db.Open())
        using (var command = connection.CreateCommand())
        {
            // As a catalog written before migration 6 left it: both admins plain admins.
            command.CommandText = "DELETE FROM schema_migrations WHERE version >= 6";
            command.ExecuteNonQuery();
        }

        var upgraded = new ApiKeyStore(new CatalogDatabase(path), TimeProvider.System);
        Assert.Equal(ApiKeyRoles.Operator, upgraded.Get(first.Id)!.Role);
        Assert.Equal(ApiKeyRoles.Admin, upgraded.Get(second.Id)!.Role);
        Assert.Equal(ApiKeyRoles.Member, upgraded.Get(member.Id)!.Role);
        Assert.True(upgraded.Authenticate(firstToken)!.IsOperator);
    }

    [Theory]
    [InlineData("system")]
    [InlineData("Unknown")]
    [InlineData("ws_abc")]
    [InlineData("WS_abc")]
    [InlineData("a b")]
    [InlineData("")]
    public void WorkspaceNames_ThatCouldBeMistakenForIdsOrActors_AreRefused(string name)
    {
        Assert.NotNull(WorkspaceNames.Problem(name));
        var keys = new ApiKeyStore(NewDatabase(out _), TimeProvider.System);
        Assert.Throws<ArgumentException>(() => keys.EnsureWorkspace(name));
    }

    [Fact]
    public void Reopening_KeepsData()
    {
        var db = NewDatabase(out var path);
        var keys = new ApiKeyStore(db, TimeProvider.System);
        var (_, token) = keys.Create(keys.EnsureWorkspace("default"), "admin", "admin");
        var reopened = new ApiKeyStore(new CatalogDatabase(path), TimeProvider.System);
        Assert.NotNull(reopened.Authenticate(token));
    }

    [Fact]
    public void Authenticate_AcceptsOnlyTheExactLiveToken()
    {
        var keys = new ApiKeyStore(NewDatabase(out _), TimeProvider.System);
        var (key, token) = keys.Create(keys.EnsureWorkspace("team"), "ci", "member");
        Assert.Equal(key.Id, keys.Authenticate(token)?.Id);
        Assert.Null(keys.Authenticate(token[..^1] + (token[^1] == 'A' ? 'B' : 'A')));
        Assert.Null(keys.Authenticate("atl_" + key.Id));
        Assert.Null(keys.Authenticate(""));
        Assert.True(keys.Revoke(key.Id));
        Assert.Null(keys.Authenticate(token));
        Assert.False(keys.Revoke(key.Id));
    }

    [Fact]
    public void StoredKeyRow_HoldsAHashNotTheSecret()
    {
        var db = NewDatabase(out _);
        var keys = new ApiKeyStore(db, TimeProvider.System);
        var (key, token) = keys.Create(keys.EnsureWorkspace("team"), "ci", "member");
        using var connection = db.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT secret_hash FROM api_keys WHERE id = $id";
        command.Parameters.AddWithValue("$id", key.Id);
        var stored = (byte[])command.ExecuteScalar()!;
        Assert.Equal(32, stored.Length);
        Assert.DoesNotContain(token[(token.LastIndexOf('_') + 1)..], System.Text.Encoding.ASCII.GetString(stored), StringComparison.Ordinal);
    }

    [Fact]
    public void Files_AreScopedToTheirWorkspace()
    {
        var db = NewDatabase(out _);
        var files = new FileCatalog(db, TimeProvider.System);
        var ws = new ApiKeyStore(db, TimeProvider.System);
        var a = ws.EnsureWorkspace("a").Id;
        var b = ws.EnsureWorkspace("b").Id;
        files.Insert(File(a, "f-a", 1));
        Assert.NotNull(files.Get(a, "f-a"));
        Assert.Null(files.Get(b, "f-a"));
        Assert.Null(files.Delete(b, "f-a"));
        Assert.Empty(files.List(b, new FileQuery()).Page);
        Assert.NotNull(files.Delete(a, "f-a"));
    }

    [Fact]
    public void List_FiltersPagesAndCountsNewestFirst()
    {
        var db = NewDatabase(out _);
        var ws = new ApiKeyStore(db, TimeProvider.System).EnsureWorkspace("a").Id;
        var files = new FileCatalog(db, TimeProvider.System);
        files.Insert(File(ws, "1", 100, name: "train_en.jsonl"));
        files.Insert(File(ws, "2", 200, name: "train_fr.jsonl", sample: "pretrain"));
        files.Insert(File(ws, "3", 300, purpose: "batch", name: "requests.jsonl", sample: "batch_request"));
        files.Insert(File(ws, "4", 400, name: "100%_real.jsonl"));

        Assert.Equal(["4", "3", "2", "1"], files.List(ws, new FileQuery()).Page.Select(f => f.Id));
        Assert.Equal(["3"], files.List(ws, new FileQuery { Purpose = "batch" }).Page.Select(f => f.Id));
        Assert.Equal(["2", "1"], files.List(ws, new FileQuery { Search = "TRAIN" }).Page.Select(f => f.Id));
        Assert.Equal(["4"], files.List(ws, new FileQuery { Search = "%_" }).Page.Select(f => f.Id));
        Assert.Equal(["3", "2"], files.List(ws, new FileQuery { SampleTypes = ["pretrain", "batch_request"] }).Page.Select(f => f.Id));
        var page = files.List(ws, new FileQuery { Page = 1, PageSize = 3 });
        Assert.Equal(["1"], page.Page.Select(f => f.Id));
        Assert.Equal(4, page.Total);
        Assert.Null(files.List(ws, new FileQuery { IncludeTotal = false }).Total);
    }

    [Fact]
    public void ExpiredFiles_AreHiddenAndListedForTheSweeper()
    {
        var clock = new ManualClock(DateTimeOffset.FromUnixTimeSeconds(1_000));
        var db = NewDatabase(out _);
        var ws = new ApiKeyStore(db, clock).EnsureWorkspace("a").Id;
        var files = new FileCatalog(db, clock);
        files.Insert(File(ws, "short", 1_000, expiresAt: 1_500));
        files.Insert(File(ws, "forever", 1_000));
        Assert.NotNull(files.Get(ws, "short"));
        Assert.Empty(files.Expired(10));

        clock.Now = DateTimeOffset.FromUnixTimeSeconds(1_501);
        Assert.Null(files.Get(ws, "short"));
        Assert.Equal(["forever"], files.List(ws, new FileQuery()).Page.Select(f => f.Id));
        Assert.Equal(["short"], files.Expired(10).Select(f => f.Id));
    }

    private static DatasetRecord Dataset(string workspace, string id, string requestJson) => new()
    {
        Id = id,
        WorkspaceId = workspace,
        Name = id,
        Status = "succeeded",
        RequestJson = requestJson,
        Policy = "default",
        LocationId = "local",
        CreatedAt = 1,
        CreatedBy = "key:test",
    };

    private static JobRecord Job(string workspace, string id, string model, string requestJson) => new()
    {
        Id = id,
        WorkspaceId = workspace,
        Model = model,
        Status = "SUCCESS",
        AutoStart = true,
        RequestJson = requestJson,
        Policy = "default",
        LocationId = "local",
        CreatedAt = 2,
        ModifiedAt = 2,
        CreatedBy = "key:test",
    };

    [Fact]
    public void Lineage_FindsEachWayADatasetOrAJobNamesAnInput_InTheWorkspaceOnly()
    {
        var db = NewDatabase(out _);
        var keys = new ApiKeyStore(db, TimeProvider.System);
        var a = keys.EnsureWorkspace("a").Id;
        var b = keys.EnsureWorkspace("b").Id;
        var datasets = new DatasetCatalog(db, TimeProvider.System);
        var jobs = new JobCatalog(db, TimeProvider.System);
        datasets.Insert(Dataset(a, "ds-train", """{"training_files":["f-1"],"validation_files":["f-2"],"model":"base-alias"}"""));
        datasets.Insert(Dataset(a, "ds-dedup", """{"source_dataset":"ds-train","eval_files":["f-3"],"model":"base"}"""));
        datasets.Insert(Dataset(b, "ds-other", """{"training_files":["f-1"]}"""));
        jobs.Insert(Job(a, "job-files", "base", """{"training_files":[{"file_id":"f-4","weight":1}],"validation_files":["f-5"]}"""));
        jobs.Insert(Job(a, "job-dataset", "base", """{"dataset_id":"ds-train","training_files":null}"""));
        var lineage = new LineageCatalog(db);

        // Oldest first (datasets at 1, jobs at 2), then by id.

        Assert.Equal([new("dataset", "ds-train"), new("fine_tuning_job", "job-dataset")], lineage.DerivedFromFile(a, "f-1"));
        Assert.Equal([new("dataset", "ds-train"), new("fine_tuning_job", "job-dataset")], lineage.DerivedFromFile(a, "f-2"));
        Assert.Equal([new("dataset", "ds-dedup")], lineage.DerivedFromFile(a, "f-3"));
        Assert.Equal([new("fine_tuning_job", "job-files")], lineage.DerivedFromFile(a, "f-4"));
        Assert.Equal([new("fine_tuning_job", "job-files")], lineage.DerivedFromFile(a, "f-5"));
        Assert.Empty(lineage.DerivedFromFile(a, "f-unused"));
        Assert.Equal([new("dataset", "ds-other")], lineage.DerivedFromFile(b, "f-1"));

        Assert.Equal([new("dataset", "ds-dedup"), new("fine_tuning_job", "job-dataset")], lineage.DerivedFromDataset(a, "ds-train"));
        Assert.Empty(lineage.DerivedFromDataset(a, "ds-dedup"));
        Assert.Empty(lineage.DerivedFromDataset(b, "ds-train"));

        using var connection = db.Open();
        Assert.Equal(
            [new("dataset", "ds-dedup"), new("dataset", "ds-train"), new("fine_tuning_job", "job-dataset"), new("fine_tuning_job", "job-files")],
            LineageCatalog.DerivedFromModel(connection, null, null, ["base", "base-alias"]));
        Assert.Equal([new("dataset", "ds-dedup"), new("fine_tuning_job", "job-dataset"), new("fine_tuning_job", "job-files")], LineageCatalog.DerivedFromModel(connection, null, a, ["base"]));
        Assert.Empty(LineageCatalog.DerivedFromModel(connection, null, b, ["base", "base-alias"]));
    }

    [Fact]
    public void Delete_OfAFileOrDatasetSomethingDerivesFrom_IsRefusedAndRemovesNothing()
    {
        var clock = new ManualClock(DateTimeOffset.FromUnixTimeSeconds(1_000));
        var db = NewDatabase(out _);
        var ws = new ApiKeyStore(db, clock).EnsureWorkspace("a").Id;
        var files = new FileCatalog(db, clock);
        var datasets = new DatasetCatalog(db, clock);
        files.Insert(File(ws, "f-1", 1_000, expiresAt: 1_500));
        datasets.Insert(Dataset(ws, "ds-1", """{"training_files":["f-1"]}"""));
        new JobCatalog(db, clock).Insert(Job(ws, "job-1", "base", """{"dataset_id":"ds-1"}"""));

        var file = Assert.Throws<Atelier.Core.Errors.ConflictException>(() => files.Delete(ws, "f-1"));
        Assert.Equal([new("dataset", "ds-1"), new("fine_tuning_job", "job-1")], file.Derived);
        Assert.Contains("erasure flow", file.Message, StringComparison.Ordinal);
        Assert.NotNull(files.Get(ws, "f-1"));
        var dataset = Assert.Throws<Atelier.Core.Errors.ConflictException>(() => datasets.Delete(ws, "ds-1"));
        Assert.Equal([new("fine_tuning_job", "job-1")], dataset.Derived);
        Assert.NotNull(datasets.Get(ws, "ds-1"));
        Assert.Null(files.Delete(ws, "f-missing"));

        // The expiry the uploader chose still removes the file, and only once it has passed.
        Assert.Null(files.DeleteExpired(ws, "f-1"));
        clock.Now = DateTimeOffset.FromUnixTimeSeconds(1_501);
        Assert.Equal("f-1", files.DeleteExpired(ws, "f-1")?.Id);
    }

    [Fact]
    public void ForeignKeys_AreEnforced()
    {
        var files = new FileCatalog(NewDatabase(out _), TimeProvider.System);
        Assert.Throws<SqliteException>(() => files.Insert(File("no-such-workspace", "x", 1)));
    }

    private sealed class ManualClock(DateTimeOffset now) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = now;

        public override DateTimeOffset GetUtcNow() => Now;
    }
}
