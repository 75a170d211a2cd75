using Atelier.Testing;
using Atelier.Testing.Catalog;

namespace Atelier.Catalog.Sqlite.Tests;

/// <summary>How the contract suites open a fresh SQLite catalog: a new file in a temporary directory.</summary>
internal static class FreshSqliteCatalog
{
    public static Task<CatalogRepositories> OpenAsync(TimeProvider clock)
    {
        var catalog = SqliteCatalog.Open(Path.Combine(TestCleanup.CreateDirectory("atelier-catalog"), "catalog.db"), clock);
        return Task.FromResult(new CatalogRepositories(catalog.Files, catalog.Datasets, catalog.Jobs, catalog.Keys, catalog.VectorCollections, catalog.Lineage, catalog.Policies));
    }
}

public sealed class SqliteFileRepositoryTests : FileRepositoryContract
{
    protected override Task<CatalogRepositories> OpenCatalogAsync(TimeProvider clock) => FreshSqliteCatalog.OpenAsync(clock);
}

public sealed class SqliteDatasetRepositoryTests : DatasetRepositoryContract
{
    protected override Task<CatalogRepositories> OpenCatalogAsync(TimeProvider clock) => FreshSqliteCatalog.OpenAsync(clock);
}

public sealed class SqliteJobRepositoryTests : JobRepositoryContract
{
    protected override Task<CatalogRepositories> OpenCatalogAsync(TimeProvider clock) => FreshSqliteCatalog.OpenAsync(clock);
}

public sealed class SqliteApiKeyRepositoryTests : ApiKeyRepositoryContract
{
    protected override Task<CatalogRepositories> OpenCatalogAsync(TimeProvider clock) => FreshSqliteCatalog.OpenAsync(clock);
}

public sealed class SqliteVectorCollectionRepositoryTests : VectorCollectionRepositoryContract
{
    protected override Task<CatalogRepositories> OpenCatalogAsync(TimeProvider clock) => FreshSqliteCatalog.OpenAsync(clock);
}

public sealed class SqliteLineageRepositoryTests : LineageRepositoryContract
{
    protected override Task<CatalogRepositories> OpenCatalogAsync(TimeProvider clock) => FreshSqliteCatalog.OpenAsync(clock);
}

public sealed class SqlitePolicyRepositoryTests : PolicyRepositoryContract
{
    protected override Task<CatalogRepositories> OpenCatalogAsync(TimeProvider clock) => FreshSqliteCatalog.OpenAsync(clock);
}
