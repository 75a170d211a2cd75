using Atelier.Catalog;
using Atelier.Testing;
using Atelier.Testing.Catalog;

namespace Atelier.Catalog.Sqlite.Tests;

/// <summary>The feature repository contract, run against a fresh SQLite catalog.</summary>
public sealed class SqliteFeatureRepositoryContractTests : FeatureRepositoryContract
{
    protected override Task<IFeatureRepository> NewRepositoryAsync() =>
        Task.FromResult<IFeatureRepository>(new SqliteFeatureRepository(new CatalogDatabase(Path.Combine(TestCleanup.CreateDirectory("atelier-catalog"), "catalog.db"))));
}
