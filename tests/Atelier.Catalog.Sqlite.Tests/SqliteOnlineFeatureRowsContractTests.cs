using Atelier.Catalog;
using Atelier.Testing;
using Atelier.Testing.Catalog;

namespace Atelier.Catalog.Sqlite.Tests;

/// <summary>The online rows contract, run against a fresh SQLite online store file.</summary>
public sealed class SqliteOnlineFeatureRowsContractTests : OnlineFeatureRowsContract
{
    protected override Task<IOnlineFeatureRows> NewRowsAsync() =>
        Task.FromResult<IOnlineFeatureRows>(new SqliteOnlineFeatureRows(Path.Combine(TestCleanup.CreateDirectory("atelier-online"), "features-online.db")));

    protected override Task<IOnlineFeatureRows> ReopenAsync(IOnlineFeatureRows rows) =>
        Task.FromResult<IOnlineFeatureRows>(new SqliteOnlineFeatureRows(((SqliteOnlineFeatureRows)rows).Path));
}
