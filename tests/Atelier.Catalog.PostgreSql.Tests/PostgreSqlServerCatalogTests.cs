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

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task AConnectionStringFileOfItsOwnerOnly_OpensThePostgreSqlCatalog_WithNoPasswordInAtelierJson()
    {
        var database = await _catalogs.CreateDatabaseAsync("secretfile");

        // Outside the data directory, as a mounted secret is: the start tightens files inside it.
        var secrets = TestCleanup.CreateDirectory("atelier-secrets");
        var file = Path.Combine(secrets, "connection-string");
        File.WriteAllText(file, database + "\n");
        File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        try
        {
            await using var server = await TestServer.StartAsync(c => c with { Catalog = new CatalogConfig { Provider = CatalogConfig.PostgreSql, ConnectionStringFile = file } });
            Assert.IsType<PostgreSqlFileRepository>(server.Service<IFileRepository>());
            Assert.DoesNotContain("Password", File.ReadAllText(Path.Combine(server.DataDirectory, AtelierConfig.FileName)), StringComparison.OrdinalIgnoreCase);
        }
        finally
        {
            TestCleanup.Delete(secrets);
        }
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task AConnectionStringFileOthersCanRead_StopsTheStart_NamingTheFix()
    {
        var secrets = TestCleanup.CreateDirectory("atelier-secrets");
        var file = Path.Combine(secrets, "connection-string");
        File.WriteAllText(file, "Host=127.0.0.1;Database=never;Username=atelier;Password=s3cret\n");
        File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        try
        {
            var error = await Assert.ThrowsAsync<UnauthorizedAccessException>(() => TestServer.StartAsync(c => c with { Catalog = new CatalogConfig { Provider = CatalogConfig.PostgreSql, ConnectionStringFile = file } }));
            Assert.Contains(file, error.Message, StringComparison.Ordinal);
            Assert.Contains("644", error.Message, StringComparison.Ordinal);
            Assert.Contains("chmod 600", error.Message, StringComparison.Ordinal);
            Assert.DoesNotContain("s3cret", error.Message, StringComparison.Ordinal);
        }
        finally
        {
            TestCleanup.Delete(secrets);
        }
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _catalogs.DisposeAsync().AsTask();
}
