using System.Data;
using System.IO.Hashing;
using System.Text;
using Atelier.Core.Errors;
using Npgsql;

namespace Atelier.Catalog.PostgreSql;

/// <summary>
/// The shared catalog: one PostgreSQL database reached through a pooled <see cref="NpgsqlDataSource"/>.
/// The schema is created and upgraded by the numbered migrations (the same numbers as the SQLite
/// catalog's), applied in one transaction under an advisory lock, so nodes that start at once
/// migrate once. Every call is a network round trip and other nodes write the same rows: writes that
/// read first take a row lock or an advisory lock in their own transaction (decision 0016).
/// </summary>
public sealed class PostgreSqlDatabase : IAsyncDisposable
{
    // PostgreSQL's SQLSTATE classes and codes the catalog acts on.
    private const string IntegrityViolationClass = "23";
    private const string DiskFull = "53100";
    private const string SerializationFailure = "40001";
    private const string DeadlockDetected = "40P01";

    // A transaction that lost a serialization or deadlock race is run again from its start; more
    // than a few losses in a row means a hot spot that a retry will not cure.
    private const int MaxAttempts = 5;

    private readonly NpgsqlDataSource _dataSource;

    private PostgreSqlDatabase(NpgsqlDataSource dataSource) => _dataSource = dataSource;

    /// <summary>
    /// Connects to the database of <paramref name="connectionString"/> (pooled, as Npgsql does by
    /// default) and applies the migrations it lacks.
    /// </summary>
    public static async Task<PostgreSqlDatabase> OpenAsync(string connectionString, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(connectionString);
        var builder = new NpgsqlDataSourceBuilder(connectionString);
        builder.ConnectionStringBuilder.Pooling = true;
        var database = new PostgreSqlDatabase(builder.Build());
        try
        {
            await database.MigrateAsync(cancellationToken).ConfigureAwait(false);
            return database;
        }
        catch
        {
            await database.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The highest migration this build knows.</summary>
    public static int LatestSchemaVersion => Migrations.Latest;

    /// <summary>Every migration this build knows, ascending (the same numbers as the SQLite catalog's).</summary>
    public static IReadOnlyList<int> KnownSchemaVersions => Migrations.Versions;

    /// <summary>
    /// True when <paramref name="e"/> says the catalog's storage is full: the repositories' own
    /// <see cref="CatalogStorageFullException"/>, or PostgreSQL's <c>53100</c>.
    /// </summary>
    public static bool IsStorageFull(Exception e) => e is CatalogStorageFullException or PostgresException { SqlState: DiskFull };

    /// <summary>
    /// Applies the migrations the database lacks (again: a no-op when it has them all). Safe to call
    /// from several processes at once: they queue on the migration lock and the later ones find
    /// nothing to do.
    /// </summary>
    public Task MigrateAsync(CancellationToken cancellationToken = default) =>
        InTransactionAsync((connection, transaction) => Migrations.ApplyAsync(connection, transaction, cancellationToken), cancellationToken);

    /// <summary>The migrations applied, ascending.</summary>
    public async Task<IReadOnlyList<int>> AppliedSchemaVersionsAsync(CancellationToken cancellationToken = default) =>
        await QueryAsync("SELECT version FROM schema_migrations ORDER BY version", static r => r.GetInt32(0), cancellationToken).ConfigureAwait(false);

    /// <summary>Closes the pool's connections.</summary>
    public ValueTask DisposeAsync() => _dataSource.DisposeAsync();

    /// <summary>
    /// Runs <paramref name="work"/> on a pooled connection and turns PostgreSQL's errors into the
    /// catalog's: a full disk into <see cref="CatalogStorageFullException"/>, a broken constraint into
    /// <see cref="ConflictException"/>, so no caller outside this assembly sees an Npgsql type.
    /// </summary>
    internal async Task<T> RunAsync<T>(Func<NpgsqlConnection, Task<T>> work, CancellationToken cancellationToken)
    {
        try
        {
            await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            return await work(connection).ConfigureAwait(false);
        }
        catch (PostgresException e) when (e.SqlState == DiskFull)
        {
            throw new CatalogStorageFullException("The catalog database's disk is full; free space (deletions still work) and retry.", e);
        }
        catch (PostgresException e) when (e.SqlState.StartsWith(IntegrityViolationClass, StringComparison.Ordinal))
        {
            throw new ConflictException($"The catalog refused the change: {e.MessageText}");
        }
    }

    /// <summary>
    /// Runs <paramref name="work"/> inside one transaction (READ COMMITTED unless asked otherwise),
    /// committed when it returns and rolled back when it throws. A transaction that loses a
    /// serialization or deadlock race is run again from its start, so <paramref name="work"/> must
    /// do nothing outside the database.
    /// </summary>
    internal Task<T> InTransactionAsync<T>(Func<NpgsqlConnection, NpgsqlTransaction, Task<T>> work, CancellationToken cancellationToken, IsolationLevel isolation = IsolationLevel.ReadCommitted) =>
        InTransactionAsync<T>(async (connection, transaction) => (await work(connection, transaction).ConfigureAwait(false), true), cancellationToken, isolation);

    /// <summary>
    /// As <see cref="InTransactionAsync{T}(Func{NpgsqlConnection, NpgsqlTransaction, Task{T}}, CancellationToken, IsolationLevel)"/>,
    /// but <paramref name="work"/> says whether to commit: an outcome that is not an error (a
    /// deletion refused because something uses the row) rolls back and still returns.
    /// </summary>
    internal Task<T> InTransactionAsync<T>(Func<NpgsqlConnection, NpgsqlTransaction, Task<(T Result, bool Commit)>> work, CancellationToken cancellationToken, IsolationLevel isolation = IsolationLevel.ReadCommitted) =>
        RunAsync(
            async connection =>
            {
                for (var attempt = 1; ; attempt++)
                {
                    await using var transaction = await connection.BeginTransactionAsync(isolation, cancellationToken).ConfigureAwait(false);
                    try
                    {
                        var (result, commit) = await work(connection, transaction).ConfigureAwait(false);
                        if (commit)
                        {
                            await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
                        }
                        else
                        {
                            await transaction.RollbackAsync(cancellationToken).ConfigureAwait(false);
                        }

                        return result;
                    }
                    catch (PostgresException e) when (attempt < MaxAttempts && e.SqlState is SerializationFailure or DeadlockDetected)
                    {
                        await transaction.RollbackAsync(cancellationToken).ConfigureAwait(false);
                    }
                }
            },
            cancellationToken);

    /// <summary>Runs one statement with named parameters (null as SQL NULL); returns the rows it changed.</summary>
    internal Task<int> ExecuteAsync(string sql, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters) =>
        RunAsync(
            async connection =>
            {
                await using var command = Command(connection, null, sql, parameters);
                return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            },
            cancellationToken);

    /// <summary>Runs a query with named parameters (null as SQL NULL) and maps each row.</summary>
    internal Task<List<T>> QueryAsync<T>(string sql, Func<NpgsqlDataReader, T> map, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters) =>
        RunAsync(
            async connection =>
            {
                await using var command = Command(connection, null, sql, parameters);
                return await ReadAllAsync(command, map, cancellationToken).ConfigureAwait(false);
            },
            cancellationToken);

    /// <summary>Runs a command built by the caller and maps each row.</summary>
    internal static async Task<List<T>> ReadAllAsync<T>(NpgsqlCommand command, Func<NpgsqlDataReader, T> map, CancellationToken cancellationToken)
    {
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var rows = new List<T>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            rows.Add(map(reader));
        }

        return rows;
    }

    /// <summary>
    /// A command of <paramref name="connection"/> (in <paramref name="transaction"/>, when given) with
    /// named parameters written <c>@name</c> in <paramref name="sql"/>; null is SQL NULL.
    /// </summary>
    internal static NpgsqlCommand Command(NpgsqlConnection connection, NpgsqlTransaction? transaction, string sql, params (string Name, object? Value)[] parameters)
    {
        var command = new NpgsqlCommand(sql, connection, transaction);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        }

        return command;
    }

    /// <summary>Runs one statement in the caller's transaction; returns the rows it changed.</summary>
    internal static async Task<int> ExecuteAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, string sql, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters)
    {
        await using var command = Command(connection, transaction, sql, parameters);
        return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Runs a query in the caller's transaction and maps each row.</summary>
    internal static async Task<List<T>> QueryAsync<T>(NpgsqlConnection connection, NpgsqlTransaction? transaction, string sql, Func<NpgsqlDataReader, T> map, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters)
    {
        await using var command = Command(connection, transaction, sql, parameters);
        return await ReadAllAsync(command, map, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Takes the transaction-scoped advisory lock <paramref name="kind"/>/<paramref name="key"/>
    /// (shared or exclusive), held until the transaction ends. The key is hashed to 32 bits: two keys
    /// that collide only queue behind each other, which costs time, never correctness.
    /// </summary>
    internal static async Task LockAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, CatalogLock kind, string key, bool shared, CancellationToken cancellationToken)
    {
        var sql = shared ? "SELECT pg_advisory_xact_lock_shared(@kind, @key)" : "SELECT pg_advisory_xact_lock(@kind, @key)";
        await ExecuteAsync(connection, transaction, sql, cancellationToken, ("kind", (int)kind), ("key", LockKey(key))).ConfigureAwait(false);
    }

    /// <summary>A stable 32-bit key for <paramref name="key"/>: the same on every node and every run.</summary>
    internal static int LockKey(string key) => unchecked((int)XxHash32.HashToUInt32(Encoding.UTF8.GetBytes(key)));
}

/// <summary>
/// The kinds of advisory lock the catalog takes (the first half of PostgreSQL's two-part key), so
/// keys of different purposes never meet.
/// </summary>
internal enum CatalogLock
{
    /// <summary>
    /// Per workspace (and one global key for base models): recording a use of an artifact takes it
    /// shared, deleting an artifact unless something uses it takes it exclusive, so a use committed
    /// while the deletion checks is never missed.
    /// </summary>
    Lineage = 0x4C494E,

    /// <summary>Per registered model name: numbering its versions and moving its aliases.</summary>
    ModelName = 0x4E414D,

    /// <summary>Creating the online store's tables.</summary>
    OnlineStore = 0x4F4E4C,
}
