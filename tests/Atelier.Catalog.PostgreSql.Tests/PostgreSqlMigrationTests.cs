using Npgsql;

namespace Atelier.Catalog.PostgreSql.Tests;

/// <summary>What only the PostgreSQL catalog has: its migrations, applied once under an advisory lock.</summary>
public sealed class PostgreSqlMigrationTests : IAsyncLifetime
{
    private readonly FreshCatalogs _catalogs = new();

    [Fact]
    public async Task Opening_AppliesEveryMigrationOnce_TheSameNumbersAsTheSqliteCatalog()
    {
        var catalog = await _catalogs.OpenAsync("migrate");
        Assert.Equal(PostgreSqlDatabase.KnownSchemaVersions, await catalog.Database.AppliedSchemaVersionsAsync());
        Assert.Equal(Atelier.Catalog.Sqlite.CatalogDatabase.KnownSchemaVersions, PostgreSqlDatabase.KnownSchemaVersions);
        Assert.Equal(10, PostgreSqlDatabase.LatestSchemaVersion);
    }

    [Fact]
    public async Task ApplyingAgain_ChangesNothing_AndKeepsTheRows()
    {
        var connectionString = await _catalogs.CreateDatabaseAsync("again");
        var first = await _catalogs.OpenExistingAsync(connectionString);
        await first.Keys.EnsureWorkspaceAsync("ws_1", "team", 1);
        var recorded = await AppliedAtAsync(connectionString);

        await first.Database.MigrateAsync();
        var second = await _catalogs.OpenExistingAsync(connectionString);

        Assert.Equal(recorded, await AppliedAtAsync(connectionString));
        Assert.Equal("team", (await second.Keys.GetWorkspaceAsync("ws_1"))?.Name);
    }

    [Fact]
    public async Task NodesStartingAtOnce_MigrateOnce()
    {
        // Eight nodes open one empty database at the same moment: without the lock, two of them
        // would both find a migration missing and the second CREATE TABLE would fail.
        var connectionString = await _catalogs.CreateDatabaseAsync("racing");
        using var start = new ManualResetEventSlim();
        var nodes = Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
        {
            start.Wait();
            return await _catalogs.OpenExistingAsync(connectionString);
        })).ToArray();
        start.Set();
        await Task.WhenAll(nodes);

        var applied = await AppliedAtAsync(connectionString);
        Assert.Equal(PostgreSqlDatabase.KnownSchemaVersions, applied.Select(a => a.Version));
        foreach (var node in nodes)
        {
            Assert.Empty(await (await node).Files.ExpiredAsync(1));
        }
    }

    [Fact]
    public async Task AFailedMigration_LeavesTheSchemaAsItWas()
    {
        // A table a migration creates already exists: the migration fails, and none of the
        // migrations of that start is recorded or half-applied (PostgreSQL's DDL is transactional).
        var connectionString = await _catalogs.CreateDatabaseAsync("broken");
        await ExecuteAsync(connectionString, "CREATE TABLE erasures (id TEXT)");

        await Assert.ThrowsAnyAsync<Exception>(() => PostgreSqlDatabase.OpenAsync(connectionString));

        Assert.False(await ExistsAsync(connectionString, "workspaces"));
        Assert.False(await ExistsAsync(connectionString, "schema_migrations"));
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => _catalogs.DisposeAsync().AsTask();

    private static async Task<List<(int Version, DateTime At)>> AppliedAtAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT version, applied_at FROM schema_migrations ORDER BY version", connection);
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<(int, DateTime)>();
        while (await reader.ReadAsync())
        {
            rows.Add((reader.GetInt32(0), reader.GetDateTime(1)));
        }

        return rows;
    }

    private static async Task<bool> ExistsAsync(string connectionString, string table)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT to_regclass(@t) IS NOT NULL", connection);
        command.Parameters.AddWithValue("t", table);
        return (bool)(await command.ExecuteScalarAsync())!;
    }

    private static async Task ExecuteAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }
}
