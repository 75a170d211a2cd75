using Atelier.Core;
using Atelier.Testing;

namespace Atelier.Catalog.PostgreSql.Tests;

/// <summary>The server on the PostgreSQL catalog, chosen in <c>atelier.json</c>.</summary>
public sealed class PostgreSqlServerCatalogTests : IAsyncLifetime
{
    private readonly FreshCatalogs _catalogs = new();

    [Fact]
    public async Task AServerConfiguredForPostgreSql_KeepsItsCatalogThere_AndNoSqliteFile()
    {
        var database = await _catalogs.CreateDatabaseAsync("server");
        string fileId;
        await using (var server = await TestServer.StartAsync(c => c with { Catalog = new CatalogConfig { Provider = CatalogConfig.PostgreSql, ConnectionString = database } }))
        {
            using var client = server.Client();
            fileId = await ApiRequests.UploadAsync(client, "train.jsonl", [ApiRequests.Chat("q", "a")]);
            Assert.Contains(fileId, await client.GetStringAsync("/v1/files"), StringComparison.Ordinal);
            Assert.IsType<PostgreSqlFileRepository>(server.Service<IFileRepository>());
            Assert.False(File.Exists(Path.Combine(server.DataDirectory, "catalog.db")));
        }

        // Another process opening the same database finds the bootstrap workspace and the upload.
        var catalog = await _catalogs.OpenExistingAsync(database);
        var workspace = await catalog.Keys.FindWorkspaceAsync("default");
        Assert.NotNull(workspace);
        Assert.Equal("train.jsonl", (await catalog.Files.GetAsync(workspace.Id, fileId))?.Filename);
    }

    [Fact]
    public async Task ThePostgreSqlProvider_WithoutAConnectionString_StopsTheStartWithAMessage()
    {
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => TestServer.StartAsync(c => c with { Catalog = new CatalogConfig { Provider = CatalogConfig.PostgreSql } }));
        Assert.Contains("connection_string", error.Message, StringComparison.Ordinal);
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _catalogs.DisposeAsync().AsTask();
}
