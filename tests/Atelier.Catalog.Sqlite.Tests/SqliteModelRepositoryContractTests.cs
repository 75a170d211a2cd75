using System.Runtime.CompilerServices;
using Atelier.Catalog;
using Atelier.Testing;
using Atelier.Testing.Catalog;

namespace Atelier.Catalog.Sqlite.Tests;

/// <summary>The model repository contract, run against a fresh SQLite catalog.</summary>
public sealed class SqliteModelRepositoryContractTests : ModelRepositoryContract
{
    // The catalog under each repository, for the rows the core catalog's own repositories would write.
    private readonly ConditionalWeakTable<IModelRepository, CatalogDatabase> _catalogs = [];

    protected override Task<IModelRepository> NewRepositoryAsync()
    {
        var catalog = new CatalogDatabase(Path.Combine(TestCleanup.CreateDirectory("atelier-catalog"), "catalog.db"));
        var repository = new SqliteModelRepository(catalog);
        _catalogs.Add(repository, catalog);
        return Task.FromResult<IModelRepository>(repository);
    }

    protected override Task AddWorkspaceAsync(IModelRepository repository, string id, string name)
    {
        Catalog(repository).Execute("INSERT INTO workspaces(id, name, created_at) VALUES ($id, $n, 0)", ("$id", id), ("$n", name));
        return Task.CompletedTask;
    }

    protected override Task AddJobAsync(IModelRepository repository, string workspaceId, string jobId, string model)
    {
        Catalog(repository).Execute(
            """
            INSERT INTO fine_tuning_jobs(id, workspace_id, model, status, auto_start, request_json, policy, location_id, created_at, modified_at, created_by)
            VALUES ($id, $ws, $model, 'queued', 0, '{}', 'default', 'local', 0, 0, 'test')
            """,
            ("$id", jobId), ("$ws", workspaceId), ("$model", model));
        return Task.CompletedTask;
    }

    private CatalogDatabase Catalog(IModelRepository repository) => _catalogs.TryGetValue(repository, out var catalog) ? catalog : throw new InvalidOperationException("Not a repository of this test.");
}
