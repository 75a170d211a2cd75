using Atelier.Core.Errors;
using Microsoft.Data.Sqlite;

namespace Atelier.Catalog.Sqlite;

/// <summary>
/// The embedded catalog: one SQLite database in WAL mode. The schema is created and upgraded by
/// numbered migrations that run inside a transaction each and are recorded in
/// <c>schema_migrations</c>, so a start after an upgrade applies only what is new and an
/// interrupted migration leaves the previous schema intact.
/// </summary>
public sealed class CatalogDatabase
{
    private readonly string _connectionString;

    /// <summary>Opens (creating if needed) the catalog at <paramref name="path"/> and migrates it.</summary>
    public CatalogDatabase(string path)
    {
        Path = System.IO.Path.GetFullPath(path);
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = Path,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Cache = SqliteCacheMode.Private,
            Pooling = true,
            DefaultTimeout = 30,
        }.ToString();
        using var connection = Open();
        using (var pragma = connection.CreateCommand())
        {
            pragma.CommandText = "PRAGMA journal_mode=WAL;";
            pragma.ExecuteNonQuery();
        }

        Migrations.Apply(connection);
    }

    /// <summary>
    /// True when <paramref name="e"/> says the catalog's disk is full: the repositories' own
    /// <see cref="CatalogStorageFullException"/>, or SQLite's <c>SQLITE_FULL</c> from code that still
    /// runs its own statements (the feature store's and the registry's, until they move here).
    /// </summary>
    public static bool IsStorageFull(Exception e) => e is CatalogStorageFullException or SqliteException { SqliteErrorCode: SqliteFull };

    private const int SqliteFull = 13;
    private const int SqliteConstraint = 19;

    /// <summary>The database file.</summary>
    public string Path { get; }

    /// <summary>Opens a connection with the catalog's per-connection settings.</summary>
    public SqliteConnection Open()
    {
        var connection = new SqliteConnection(_connectionString);
        connection.Open();
        using var pragma = connection.CreateCommand();
        pragma.CommandText = ConnectionPragmas;
        pragma.ExecuteNonQuery();
        return connection;
    }

    /// <summary>Runs one statement with named parameters (null as SQL NULL); returns the rows it changed.</summary>
    public int Execute(string sql, params (string Name, object? Value)[] parameters)
    {
        using var connection = Open();
        using var command = Command(connection, sql, parameters);
        return command.ExecuteNonQuery();
    }

    /// <summary>Runs a query with named parameters (null as SQL NULL) and maps each row.</summary>
    public List<T> Query<T>(string sql, Func<SqliteDataReader, T> map, params (string Name, object? Value)[] parameters)
    {
        ArgumentNullException.ThrowIfNull(map);
        using var connection = Open();
        using var command = Command(connection, sql, parameters);
        return ReadAll(command, map);
    }

    /// <summary>Runs a command built by the caller (dynamic filters) and maps each row.</summary>
    public static List<T> ReadAll<T>(SqliteCommand command, Func<SqliteDataReader, T> map)
    {
        ArgumentNullException.ThrowIfNull(command);
        ArgumentNullException.ThrowIfNull(map);
        using var reader = command.ExecuteReader();
        var rows = new List<T>();
        while (reader.Read())
        {
            rows.Add(map(reader));
        }

        return rows;
    }

    private static SqliteCommand Command(SqliteConnection connection, string sql, (string Name, object? Value)[] parameters)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        }

        return command;
    }

    /// <summary>
    /// Runs <paramref name="work"/> on a fresh connection and turns SQLite's errors into the
    /// catalog's: a full disk into <see cref="CatalogStorageFullException"/>, a broken constraint into
    /// <see cref="ConflictException"/>, so no caller outside this assembly sees a SQLite type.
    /// </summary>
    internal async Task<T> RunAsync<T>(Func<SqliteConnection, Task<T>> work, CancellationToken cancellationToken)
    {
        try
        {
            await using var connection = await OpenAsync(cancellationToken).ConfigureAwait(false);
            return await work(connection).ConfigureAwait(false);
        }
        catch (SqliteException e) when (e.SqliteErrorCode == SqliteFull)
        {
            throw new CatalogStorageFullException("The catalog's disk is full; free space (deletions still work) and retry.", e);
        }
        catch (SqliteException e) when (e.SqliteErrorCode == SqliteConstraint)
        {
            throw new ConflictException($"The catalog refused the change: {e.Message}");
        }
    }

    /// <summary>Runs <paramref name="work"/> inside one write transaction, taken at the start (BEGIN IMMEDIATE) so a read-then-write cannot interleave with another writer.</summary>
    internal Task<T> InWriteTransactionAsync<T>(Func<SqliteConnection, SqliteTransaction, Task<T>> work, CancellationToken cancellationToken) =>
        RunAsync(
            async connection =>
            {
                // Not deferred: the write lock is taken at BEGIN. A throw from the work disposes the
                // transaction uncommitted, which rolls everything back.
                await using var transaction = connection.BeginTransaction(deferred: false);
                var result = await work(connection, transaction).ConfigureAwait(false);
                await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
                return result;
            },
            cancellationToken);

    /// <summary>Runs one statement with named parameters (null as SQL NULL); returns the rows it changed.</summary>
    internal Task<int> ExecuteAsync(string sql, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters) =>
        RunAsync(
            async connection =>
            {
                await using var command = Command(connection, sql, parameters);
                return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            },
            cancellationToken);

    /// <summary>Runs a query with named parameters (null as SQL NULL) and maps each row.</summary>
    internal Task<List<T>> QueryAsync<T>(string sql, Func<SqliteDataReader, T> map, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters) =>
        RunAsync(
            async connection =>
            {
                await using var command = Command(connection, sql, parameters);
                return await ReadAllAsync(command, map, cancellationToken).ConfigureAwait(false);
            },
            cancellationToken);

    /// <summary>Runs a command built by the caller and maps each row.</summary>
    internal static async Task<List<T>> ReadAllAsync<T>(SqliteCommand command, Func<SqliteDataReader, T> map, CancellationToken cancellationToken)
    {
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        var rows = new List<T>();
        while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            rows.Add(map(reader));
        }

        return rows;
    }

    /// <summary>A command of <paramref name="connection"/> (in <paramref name="transaction"/>, when given) with named parameters, null as SQL NULL.</summary>
    internal static SqliteCommand Command(SqliteConnection connection, SqliteTransaction? transaction, string sql, params (string Name, object? Value)[] parameters)
    {
        var command = Command(connection, sql, parameters);
        command.Transaction = transaction;
        return command;
    }

    private async Task<SqliteConnection> OpenAsync(CancellationToken cancellationToken)
    {
        var connection = new SqliteConnection(_connectionString);
        try
        {
            await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
            await using var pragma = connection.CreateCommand();
            pragma.CommandText = ConnectionPragmas;
            await pragma.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            return connection;
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    // FULL synchronous: a committed catalog row must survive a power cut, since the blob it points
    // to was already fsynced before the row was written.
    private const string ConnectionPragmas = "PRAGMA foreign_keys=ON; PRAGMA synchronous=FULL; PRAGMA busy_timeout=30000;";

    /// <summary>The highest migration this build knows.</summary>
    public static int LatestSchemaVersion => Migrations.Latest;

    /// <summary>
    /// Every migration this build knows, ascending. Not always 1 to <see cref="LatestSchemaVersion"/>:
    /// numbers are given out to work in parallel, and the runner applies whichever exist, in order.
    /// </summary>
    public static IReadOnlyList<int> KnownSchemaVersions => Migrations.Versions;

    /// <summary>The highest migration applied.</summary>
    public int SchemaVersion
    {
        get
        {
            using var connection = Open();
            using var command = connection.CreateCommand();
            command.CommandText = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations";
            return Convert.ToInt32(command.ExecuteScalar(), System.Globalization.CultureInfo.InvariantCulture);
        }
    }
}
