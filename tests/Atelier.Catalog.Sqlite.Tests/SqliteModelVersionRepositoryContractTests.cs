using Atelier.Catalog;
using Atelier.Testing;
using Atelier.Testing.Catalog;

namespace Atelier.Catalog.Sqlite.Tests;

/// <summary>The registered names contract, run against a fresh SQLite catalog.</summary>
public sealed class SqliteModelVersionRepositoryContractTests : ModelVersionRepositoryContract
{
    protected override Task<IModelVersionRepository> NewRepositoryAsync() =>
        Task.FromResult<IModelVersionRepository>(new SqliteModelVersionRepository(new CatalogDatabase(Path.Combine(TestCleanup.CreateDirectory("atelier-catalog"), "catalog.db"))));
}
