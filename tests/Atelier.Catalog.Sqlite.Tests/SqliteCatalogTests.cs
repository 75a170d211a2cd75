using Atelier.Core.Errors;
using Atelier.Testing;

namespace Atelier.Catalog.Sqlite.Tests;

/// <summary>What only the SQLite catalog has: its file, its numbered migrations, its own SQL for the registry.</summary>
public sealed class SqliteCatalogTests
{
    // Undoes migration 10 (dataset build leases), for tests that set a catalog back to an older version.
    private const string WithoutBuildLeases = "ALTER TABLE datasets DROP COLUMN build_owner; ALTER TABLE datasets DROP COLUMN build_lease_until;";

    private static string NewPath() => Path.Combine(TestCleanup.CreateDirectory("atelier-catalog"), "catalog.db");

    private static ApiKeyStore Keys(SqliteCatalog catalog) => new(catalog.Keys, TimeProvider.System);

    private static void Run(CatalogDatabase database, string sql)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }

    [Fact]
    public void Reopening_AppliesEachMigrationOnce()
    {
        var path = NewPath();
        var db = SqliteCatalog.Open(path).Database;
        Assert.Equal(CatalogDatabase.LatestSchemaVersion, db.SchemaVersion);
        Assert.True(CatalogDatabase.LatestSchemaVersion >= 6);
        var again = SqliteCatalog.Open(path).Database;
        Assert.Equal(CatalogDatabase.LatestSchemaVersion, again.SchemaVersion);
        Assert.Equal(CatalogDatabase.KnownSchemaVersions, again.Query("SELECT version FROM schema_migrations ORDER BY version", r => r.GetInt32(0)));
    }

    [Fact]
    public async Task UpgradeFromTheFirstSchema_AppliesOnlyTheNewMigrationsAndKeepsRows()
    {
        // A catalog as version 1 left it: only migration 1 applied, with a workspace and a key in it.
        var path = NewPath();
        var catalog = SqliteCatalog.Open(path);
        var keys = Keys(catalog);
        var (_, token) = await keys.CreateAsync(await keys.EnsureWorkspaceAsync("default"), "admin", "admin");
        Run(catalog.Database, "DROP TABLE datasets; DELETE FROM schema_migrations WHERE version > 1;");
        Assert.Equal(1, catalog.Database.SchemaVersion);

        var upgraded = SqliteCatalog.Open(path);
        Assert.Equal(CatalogDatabase.LatestSchemaVersion, upgraded.Database.SchemaVersion);
        Assert.NotNull(await Keys(upgraded).AuthenticateAsync(token));
        Assert.Empty(await upgraded.Datasets.UnfinishedAsync());
    }

    [Fact]
    public async Task UpgradeToTheOperatorRole_MakesOnlyTheBootstrapKeyTheOperator()
    {
        var path = NewPath();
        var catalog = SqliteCatalog.Open(path);
        var keys = Keys(catalog);
        var (first, firstToken) = await keys.CreateAsync(await keys.EnsureWorkspaceAsync("default"), "admin", "admin");
        var (second, _) = await keys.CreateAsync(await keys.EnsureWorkspaceAsync("team"), "team-admin", "admin");
        var (member, _) = await keys.CreateAsync(await keys.EnsureWorkspaceAsync("team"), "ci", "member");

        // As a catalog written before migration 6 left it: both admins plain admins, and none of the
        // later migrations' columns (ALTER TABLE ... ADD COLUMN runs once).
        Run(catalog.Database, $"{WithoutBuildLeases} DELETE FROM schema_migrations WHERE version >= 6");

        var upgraded = Keys(SqliteCatalog.Open(path));
        Assert.Equal(ApiKeyRoles.Operator, (await upgraded.GetAsync(first.Id))!.Role);
        Assert.Equal(ApiKeyRoles.Admin, (await upgraded.GetAsync(second.Id))!.Role);
        Assert.Equal(ApiKeyRoles.Member, (await upgraded.GetAsync(member.Id))!.Role);
        Assert.True((await upgraded.AuthenticateAsync(firstToken))!.IsOperator);
    }

    [Fact]
    public async Task Reopening_KeepsData()
    {
        var path = NewPath();
        var keys = Keys(SqliteCatalog.Open(path));
        var (_, token) = await keys.CreateAsync(await keys.EnsureWorkspaceAsync("default"), "admin", "admin");
        Assert.NotNull(await Keys(SqliteCatalog.Open(path)).AuthenticateAsync(token));
    }

    [Fact]
    public async Task StoredKeyRow_HoldsAHashNotTheSecret()
    {
        var catalog = SqliteCatalog.Open(NewPath());
        var keys = Keys(catalog);
        var (key, token) = await keys.CreateAsync(await keys.EnsureWorkspaceAsync("team"), "ci", "member");
        var stored = Assert.Single(catalog.Database.Query("SELECT secret_hash FROM api_keys WHERE id = $id", r => (byte[])r.GetValue(0), ("$id", key.Id)));
        Assert.Equal(32, stored.Length);
        Assert.DoesNotContain(token[("atl_".Length + key.Id.Length + 1)..], System.Text.Encoding.ASCII.GetString(stored), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ModelLineage_ForTheRegistrysOwnTransaction_FindsDatasetsAndJobsByIdOrAlias()
    {
        var catalog = SqliteCatalog.Open(NewPath());
        var keys = Keys(catalog);
        var a = (await keys.EnsureWorkspaceAsync("a")).Id;
        var b = (await keys.EnsureWorkspaceAsync("b")).Id;
        await catalog.Datasets.InsertAsync(Dataset(a, "ds-train", """{"training_files":["f-1"],"model":"base-alias"}"""));
        await catalog.Datasets.InsertAsync(Dataset(a, "ds-dedup", """{"source_dataset":"ds-train","model":"base"}"""));
        await catalog.Jobs.InsertAsync(Job(a, "job-files", "base"));
        await catalog.Jobs.InsertAsync(Job(a, "job-dataset", "base"));

        using var connection = catalog.Database.Open();
        Assert.Equal(
            [new("dataset", "ds-dedup"), new("dataset", "ds-train"), new("fine_tuning_job", "job-dataset"), new("fine_tuning_job", "job-files")],
            LineageCatalog.DerivedFromModel(connection, null, null, ["base", "base-alias"]));
        Assert.Equal([new("dataset", "ds-dedup"), new("fine_tuning_job", "job-dataset"), new("fine_tuning_job", "job-files")], LineageCatalog.DerivedFromModel(connection, null, a, ["base"]));
        Assert.Empty(LineageCatalog.DerivedFromModel(connection, null, b, ["base", "base-alias"]));
    }

    [Fact]
    public async Task UpgradeToRegisteredNames_BackFillsAVersionForEveryModel_InRegistrationOrder()
    {
        var path = NewPath();
        var catalog = SqliteCatalog.Open(path);
        var keys = Keys(catalog);
        var a = (await keys.EnsureWorkspaceAsync("team-a")).Id;
        var models = new SqliteModelRepository(catalog.Database);
        await catalog.Jobs.InsertAsync(Job(a, "job-2", "base") with { Suffix = "bot" });
        await catalog.Jobs.InsertAsync(Job(a, "job-1", "base") with { Suffix = "bot" });
        await catalog.Jobs.InsertAsync(Job(a, "job-3", "base"));
        Assert.True(await models.TryInsertAsync(Model("base", null, null, null, 1)));
        Assert.True(await models.TryInsertAsync(Model("ft:base:a:bot:2", a, "base", "job-2", 30)));
        Assert.True(await models.TryInsertAsync(Model("ft:base:a:bot:1", a, "base", "job-1", 20)));
        Assert.True(await models.TryInsertAsync(Model("ft:base:a:x:3", a, "base", "job-3", 40)));

        // As a catalog written before migration 7 left it.
        Run(catalog.Database, $"DROP TABLE model_versions; DROP TABLE model_aliases; DROP TABLE model_alias_history; DROP TABLE model_evaluations; {WithoutBuildLeases} DELETE FROM schema_migrations WHERE version >= 7;");
        var upgraded = SqliteCatalog.Open(path);
        Assert.Equal(CatalogDatabase.LatestSchemaVersion, upgraded.Database.SchemaVersion);
        var versions = new SqliteModelVersionRepository(upgraded.Database);
        Assert.Equal([("base", 1, "ready")], (await versions.ListVersionsAsync(IModelVersionRepository.SharedScope, "base")).Select(v => (v.ModelId, v.Version, v.Status)));
        Assert.Equal(
            [("ft:base:a:bot:1", 1, "job-1"), ("ft:base:a:bot:2", 2, "job-2")],
            (await versions.ListVersionsAsync(a, "base:bot")).Select(v => (v.ModelId, v.Version, v.JobId)));
        Assert.Equal("ft:base:a:x:3", Assert.Single(await versions.ListVersionsAsync(a, "base:fine-tuned")).ModelId);

        // Applying the back-fill again adds nothing.
        Run(upgraded.Database, "DELETE FROM schema_migrations WHERE version = 7;");
        var again = new SqliteModelVersionRepository(SqliteCatalog.Open(path).Database);
        Assert.Equal(2, (await again.ListVersionsAsync(a, "base:bot")).Count);
    }

    [Fact]
    public void StorageFull_IsRecognisedWithoutSqliteTypes()
    {
        Assert.True(CatalogDatabase.IsStorageFull(new CatalogStorageFullException("full")));
        Assert.True(CatalogDatabase.IsStorageFull(new Microsoft.Data.Sqlite.SqliteException("full", 13)));
        Assert.False(CatalogDatabase.IsStorageFull(new Microsoft.Data.Sqlite.SqliteException("busy", 5)));
        Assert.Equal(507, new CatalogStorageFullException("full").StatusCode);
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

    private static ModelRecord Model(string id, string? workspace, string? root, string? job, long createdAt) => new()
    {
        Id = id,
        WorkspaceId = workspace,
        Type = workspace is null ? ModelRecord.BaseType : ModelRecord.FineTunedType,
        Root = root,
        JobId = job,
        CreatedAt = createdAt,
        MaxContextLength = 64,
        CapabilitiesJson = "{}",
        Policy = "default",
        ArtifactsJson = "[]",
        OwnedBy = workspace ?? "atelier",
        CreatedBy = "key:test",
    };

    private static JobRecord Job(string workspace, string id, string model) => new()
    {
        Id = id,
        WorkspaceId = workspace,
        Model = model,
        Status = "SUCCESS",
        AutoStart = true,
        RequestJson = "{}",
        Policy = "default",
        LocationId = "local",
        CreatedAt = 2,
        ModifiedAt = 2,
        CreatedBy = "key:test",
    };
}
