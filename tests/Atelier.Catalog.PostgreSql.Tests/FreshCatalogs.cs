using Atelier.Testing;
using Atelier.Testing.Catalog;

namespace Atelier.Catalog.PostgreSql.Tests;

/// <summary>
/// The PostgreSQL catalogs one test class opens: each in a database of its own on the shared
/// server, so test classes run in parallel without seeing each other's rows. Disposing closes their
/// pools and drops their databases.
/// </summary>
internal sealed class FreshCatalogs : IAsyncDisposable
{
    private readonly List<PostgreSqlCatalog> _catalogs = [];
    private readonly List<string> _databases = [];

    /// <summary>A catalog over a new, empty database (migrated as it opens).</summary>
    public async Task<PostgreSqlCatalog> OpenAsync(string purpose, TimeProvider? clock = null)
    {
        var server = await PostgreSqlServer.SharedAsync();
        var connectionString = await server.CreateDatabaseAsync(purpose);
        lock (_databases)
        {
            _databases.Add(connectionString);
        }

        return await OpenExistingAsync(connectionString, clock);
    }

    /// <summary>Another catalog over the database of <paramref name="connectionString"/>: what a second node or a restarted process opens.</summary>
    public async Task<PostgreSqlCatalog> OpenExistingAsync(string connectionString, TimeProvider? clock = null)
    {
        var catalog = await PostgreSqlCatalog.OpenAsync(connectionString, clock);
        lock (_catalogs)
        {
            _catalogs.Add(catalog);
        }

        return catalog;
    }

    /// <summary>A new, empty database, not migrated.</summary>
    public async Task<string> CreateDatabaseAsync(string purpose)
    {
        var connectionString = await (await PostgreSqlServer.SharedAsync()).CreateDatabaseAsync(purpose);
        lock (_databases)
        {
            _databases.Add(connectionString);
        }

        return connectionString;
    }

    /// <summary>The contract suites' view of a catalog.</summary>
    public static CatalogRepositories Repositories(PostgreSqlCatalog catalog) =>
        new(catalog.Files, catalog.Datasets, catalog.Jobs, catalog.Keys, catalog.VectorCollections, catalog.Lineage, catalog.Policies);

    public async ValueTask DisposeAsync()
    {
        foreach (var catalog in _catalogs)
        {
            await catalog.DisposeAsync();
        }

        var server = await PostgreSqlServer.SharedAsync();
        foreach (var database in _databases)
        {
            await server.DropDatabaseAsync(database);
        }
    }
}
