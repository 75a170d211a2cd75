using System.Runtime.CompilerServices;
using Atelier.Testing.Catalog;

namespace Atelier.Catalog.PostgreSql.Tests;

// Each contract suite against a real PostgreSQL: every test opens a catalog in a database of its own.

public sealed class PostgreSqlFileRepositoryTests : FileRepositoryContract, IAsyncLifetime
{
    private readonly FreshCatalogs _catalogs = new();

    protected override async Task<CatalogRepositories> OpenCatalogAsync(TimeProvider clock) => FreshCatalogs.Repositories(await _catalogs.OpenAsync("files", clock));

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _catalogs.DisposeAsync().AsTask();
}

public sealed class PostgreSqlDatasetRepositoryTests : DatasetRepositoryContract, IAsyncLifetime
{
    private readonly FreshCatalogs _catalogs = new();

    protected override async Task<CatalogRepositories> OpenCatalogAsync(TimeProvider clock) => FreshCatalogs.Repositories(await _catalogs.OpenAsync("datasets", clock));

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _catalogs.DisposeAsync().AsTask();
}

public sealed class PostgreSqlJobRepositoryTests : JobRepositoryContract, IAsyncLifetime
{
    private readonly FreshCatalogs _catalogs = new();

    protected override async Task<CatalogRepositories> OpenCatalogAsync(TimeProvider clock) => FreshCatalogs.Repositories(await _catalogs.OpenAsync("jobs", clock));

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _catalogs.DisposeAsync().AsTask();
}

public sealed class PostgreSqlApiKeyRepositoryTests : ApiKeyRepositoryContract, IAsyncLifetime
{
    private readonly FreshCatalogs _catalogs = new();

    protected override async Task<CatalogRepositories> OpenCatalogAsync(TimeProvider clock) => FreshCatalogs.Repositories(await _catalogs.OpenAsync("keys", clock));

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _catalogs.DisposeAsync().AsTask();
}

public sealed class PostgreSqlVectorCollectionRepositoryTests : VectorCollectionRepositoryContract, IAsyncLifetime
{
    private readonly FreshCatalogs _catalogs = new();

    protected override async Task<CatalogRepositories> OpenCatalogAsync(TimeProvider clock) => FreshCatalogs.Repositories(await _catalogs.OpenAsync("collections", clock));

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _catalogs.DisposeAsync().AsTask();
}

public sealed class PostgreSqlLineageRepositoryTests : LineageRepositoryContract, IAsyncLifetime
{
    private readonly FreshCatalogs _catalogs = new();

    protected override async Task<CatalogRepositories> OpenCatalogAsync(TimeProvider clock) => FreshCatalogs.Repositories(await _catalogs.OpenAsync("lineage", clock));

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _catalogs.DisposeAsync().AsTask();
}

public sealed class PostgreSqlPolicyRepositoryTests : PolicyRepositoryContract, IAsyncLifetime
{
    private readonly FreshCatalogs _catalogs = new();

    protected override async Task<CatalogRepositories> OpenCatalogAsync(TimeProvider clock) => FreshCatalogs.Repositories(await _catalogs.OpenAsync("policies", clock));

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _catalogs.DisposeAsync().AsTask();
}

public sealed class PostgreSqlFeatureRepositoryContractTests : FeatureRepositoryContract, IAsyncLifetime
{
    private readonly FreshCatalogs _catalogs = new();

    protected override async Task<IFeatureRepository> NewRepositoryAsync() => (await _catalogs.OpenAsync("features")).Features;

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _catalogs.DisposeAsync().AsTask();
}

public sealed class PostgreSqlModelVersionRepositoryContractTests : ModelVersionRepositoryContract, IAsyncLifetime
{
    private readonly FreshCatalogs _catalogs = new();

    protected override async Task<IModelVersionRepository> NewRepositoryAsync() => (await _catalogs.OpenAsync("versions")).ModelVersions;

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _catalogs.DisposeAsync().AsTask();
}

public sealed class PostgreSqlOnlineFeatureRowsContractTests : OnlineFeatureRowsContract, IAsyncLifetime
{
    private readonly FreshCatalogs _catalogs = new();
    private readonly ConditionalWeakTable<IOnlineFeatureRows, string> _databases = [];

    protected override async Task<IOnlineFeatureRows> NewRowsAsync()
    {
        var connectionString = await _catalogs.CreateDatabaseAsync("online");
        var rows = (await _catalogs.OpenExistingAsync(connectionString)).OnlineFeatures;
        _databases.Add(rows, connectionString);
        return rows;
    }

    // A new pool and a new store object on the same database, as a restarted node opens it.
    protected override async Task<IOnlineFeatureRows> ReopenAsync(IOnlineFeatureRows rows) =>
        (await _catalogs.OpenExistingAsync(_databases.TryGetValue(rows, out var database) ? database : throw new InvalidOperationException("Not a store of this test."))).OnlineFeatures;

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _catalogs.DisposeAsync().AsTask();
}

public sealed class PostgreSqlModelRepositoryContractTests : ModelRepositoryContract, IAsyncLifetime
{
    private readonly FreshCatalogs _catalogs = new();

    // The catalog under each repository, for the rows the core catalog's own repositories write.
    private readonly ConditionalWeakTable<IModelRepository, PostgreSqlCatalog> _owners = [];

    protected override async Task<IModelRepository> NewRepositoryAsync()
    {
        var catalog = await _catalogs.OpenAsync("models");
        _owners.Add(catalog.Models, catalog);
        return catalog.Models;
    }

    protected override async Task AddWorkspaceAsync(IModelRepository repository, string id, string name) =>
        await Catalog(repository).Keys.EnsureWorkspaceAsync(id, name, 0);

    protected override Task AddJobAsync(IModelRepository repository, string workspaceId, string jobId, string model) =>
        Catalog(repository).Jobs.InsertAsync(new JobRecord
        {
            Id = jobId,
            WorkspaceId = workspaceId,
            Model = model,
            Status = "QUEUED",
            AutoStart = false,
            RequestJson = "{}",
            Policy = "default",
            LocationId = "local",
            CreatedAt = 0,
            ModifiedAt = 0,
            CreatedBy = "test",
        });

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _catalogs.DisposeAsync().AsTask();

    private PostgreSqlCatalog Catalog(IModelRepository repository) => _owners.TryGetValue(repository, out var catalog) ? catalog : throw new InvalidOperationException("Not a repository of this test.");
}
