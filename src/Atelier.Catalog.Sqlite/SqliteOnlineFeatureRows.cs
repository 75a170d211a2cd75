using System.Globalization;
using System.Text;
using Atelier.Catalog;
using Microsoft.Data.Sqlite;

namespace Atelier.Catalog.Sqlite;

/// <summary>
/// The online feature store in its own SQLite file (as Feast's default online store), apart from the
/// catalog: it is a derived index, rebuilt from the views' logs when lost, and its write rate would
/// otherwise contend with the catalog's writers.
/// </summary>
public sealed class SqliteOnlineFeatureRows : IOnlineFeatureRows
{
    // SQLite's default limit on host parameters is 32766; stay well below it per statement.
    private const int KeysPerStatement = 500;

    private const string UpsertSql = """
        INSERT INTO online_values(view_id, entity_key, event_time, ordinal, vals) VALUES ($v, $k, $t, $o, $x)
        ON CONFLICT(view_id, entity_key) DO UPDATE SET event_time = excluded.event_time, ordinal = excluded.ordinal, vals = excluded.vals
        WHERE excluded.event_time > online_values.event_time
           OR (excluded.event_time = online_values.event_time AND excluded.ordinal > online_values.ordinal)
        """;

    private readonly string _connectionString;

    /// <summary>Opens (creating if needed) the online store at <paramref name="path"/>.</summary>
    public SqliteOnlineFeatureRows(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = System.IO.Path.GetFullPath(path),
            Mode = SqliteOpenMode.ReadWriteCreate,
            Pooling = true,
            DefaultTimeout = 30,
        }.ToString();
        Path = System.IO.Path.GetFullPath(path);

        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            PRAGMA journal_mode=WAL;
            CREATE TABLE IF NOT EXISTS online_values (
                view_id    TEXT NOT NULL,
                entity_key TEXT NOT NULL,
                event_time INTEGER NOT NULL,
                ordinal    INTEGER NOT NULL,
                vals       BLOB NOT NULL,
                PRIMARY KEY (view_id, entity_key)
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS online_watermarks (
                view_id TEXT PRIMARY KEY,
                seq     INTEGER NOT NULL
            );
            """;
        command.ExecuteNonQuery();
    }

    /// <summary>The SQLite file.</summary>
    public string Path { get; }

    /// <inheritdoc />
    public ValueTask<long> WatermarkAsync(string viewId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(viewId);
        cancellationToken.ThrowIfCancellationRequested();
        using var connection = Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT seq FROM online_watermarks WHERE view_id = $v";
        command.Parameters.AddWithValue("$v", viewId);
        return ValueTask.FromResult(command.ExecuteScalar() is long seq ? seq : 0);
    }

    /// <inheritdoc />
    public ValueTask ApplyAsync(string viewId, long segmentSeq, IReadOnlyList<OnlineFeatureRow> rows, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(viewId);
        ArgumentNullException.ThrowIfNull(rows);
        cancellationToken.ThrowIfCancellationRequested();

        // One transaction and one prepared statement for the whole segment: per-row transactions
        // would each pay a WAL commit.
        using var connection = Open();
        using var transaction = connection.BeginTransaction();
        using (var upsert = connection.CreateCommand())
        {
            upsert.Transaction = transaction;
            upsert.CommandText = UpsertSql;
            upsert.Parameters.AddWithValue("$v", viewId);
            var k = upsert.Parameters.Add("$k", SqliteType.Text);
            var t = upsert.Parameters.Add("$t", SqliteType.Integer);
            var o = upsert.Parameters.Add("$o", SqliteType.Integer);
            var x = upsert.Parameters.Add("$x", SqliteType.Blob);
            upsert.Prepare();
            for (var i = 0; i < rows.Count; i++)
            {
                var row = rows[i];
                k.Value = row.EntityKey;
                t.Value = row.EventTime.UtcTicks;
                o.Value = row.Ordinal;
                x.Value = row.Values;
                upsert.ExecuteNonQuery();
            }
        }

        using (var mark = connection.CreateCommand())
        {
            mark.Transaction = transaction;
            mark.CommandText = "INSERT INTO online_watermarks(view_id, seq) VALUES ($v, $s) ON CONFLICT(view_id) DO UPDATE SET seq = MAX(seq, excluded.seq)";
            mark.Parameters.AddWithValue("$v", viewId);
            mark.Parameters.AddWithValue("$s", segmentSeq);
            mark.ExecuteNonQuery();
        }

        transaction.Commit();
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc />
    public ValueTask<IReadOnlyList<OnlineFeatureRow>> GetAsync(string viewId, IReadOnlyList<string> entityKeys, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(viewId);
        ArgumentNullException.ThrowIfNull(entityKeys);
        cancellationToken.ThrowIfCancellationRequested();
        var found = new List<OnlineFeatureRow>(entityKeys.Count);
        if (entityKeys.Count == 0)
        {
            return ValueTask.FromResult<IReadOnlyList<OnlineFeatureRow>>(found);
        }

        using var connection = Open();
        for (var start = 0; start < entityKeys.Count; start += KeysPerStatement)
        {
            var count = Math.Min(KeysPerStatement, entityKeys.Count - start);
            using var command = connection.CreateCommand();
            var sql = new StringBuilder("SELECT entity_key, event_time, ordinal, vals FROM online_values WHERE view_id = $v AND entity_key IN (");
            command.Parameters.AddWithValue("$v", viewId);
            for (var j = 0; j < count; j++)
            {
                var name = "$k" + j.ToString(CultureInfo.InvariantCulture);
                sql.Append(j == 0 ? name : "," + name);
                command.Parameters.AddWithValue(name, entityKeys[start + j]);
            }

            command.CommandText = sql.Append(')').ToString();
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                found.Add(new OnlineFeatureRow(reader.GetString(0), new DateTimeOffset(reader.GetInt64(1), TimeSpan.Zero), reader.GetInt64(2), (byte[])reader.GetValue(3)));
            }
        }

        return ValueTask.FromResult<IReadOnlyList<OnlineFeatureRow>>(found);
    }

    private SqliteConnection Open()
    {
        var connection = new SqliteConnection(_connectionString);
        connection.Open();
        return connection;
    }
}
