using Microsoft.Data.Sqlite;

namespace Atelier.Catalog;

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
    /// True when <paramref name="e"/> is SQLite reporting a full disk (<c>SQLITE_FULL</c>), from the
    /// catalog or any other SQLite database the server keeps, so the API edge can answer 507 without
    /// knowing SQLite.
    /// </summary>
    public static bool IsStorageFull(Exception e) => e is SqliteException { SqliteErrorCode: 13 };

    /// <summary>The database file.</summary>
    public string Path { get; }

    /// <summary>Opens a connection with the catalog's per-connection settings.</summary>
    public SqliteConnection Open()
    {
        var connection = new SqliteConnection(_connectionString);
        connection.Open();
        using var pragma = connection.CreateCommand();

        // FULL synchronous: a committed catalog row must survive a power cut, since the blob it
        // points to was already fsynced before the row was written.
        pragma.CommandText = "PRAGMA foreign_keys=ON; PRAGMA synchronous=FULL; PRAGMA busy_timeout=30000;";
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

    /// <summary>The highest migration this build knows.</summary>
    public static int LatestSchemaVersion => Migrations.Latest;

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
