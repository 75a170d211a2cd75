using Microsoft.Data.Sqlite;

namespace Atelier.Catalog;

/// <summary>
/// The catalog's schema history. Append new migrations at the end; never edit one that shipped.
/// </summary>
internal static class Migrations
{
    private static readonly (int Version, string Name, string Sql)[] All =
    [
        (1, "workspaces, api keys, files", """
            CREATE TABLE workspaces (
                id          TEXT PRIMARY KEY,
                name        TEXT NOT NULL UNIQUE,
                created_at  INTEGER NOT NULL
            );
            CREATE TABLE api_keys (
                id           TEXT PRIMARY KEY,
                workspace_id TEXT NOT NULL REFERENCES workspaces(id),
                name         TEXT NOT NULL,
                role         TEXT NOT NULL CHECK (role IN ('admin', 'member')),
                secret_hash  BLOB NOT NULL,
                created_at   INTEGER NOT NULL,
                revoked_at   INTEGER
            );
            CREATE INDEX api_keys_workspace ON api_keys(workspace_id);
            CREATE TABLE files (
                id           TEXT PRIMARY KEY,
                workspace_id TEXT NOT NULL REFERENCES workspaces(id),
                filename     TEXT NOT NULL,
                purpose      TEXT NOT NULL,
                bytes        INTEGER NOT NULL,
                created_at   INTEGER NOT NULL,
                sample_type  TEXT NOT NULL,
                num_lines    INTEGER,
                mimetype     TEXT,
                source       TEXT NOT NULL,
                signature    TEXT NOT NULL,
                visibility   TEXT NOT NULL,
                expires_at   INTEGER,
                policy       TEXT NOT NULL,
                location_id  TEXT NOT NULL,
                blob_key     TEXT NOT NULL,
                created_by   TEXT NOT NULL
            );
            CREATE INDEX files_workspace_created ON files(workspace_id, created_at DESC, id DESC);
            """),
        (2, "datasets", """
            CREATE TABLE datasets (
                id            TEXT PRIMARY KEY,
                workspace_id  TEXT NOT NULL REFERENCES workspaces(id),
                name          TEXT NOT NULL,
                status        TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
                request_json  TEXT NOT NULL,
                progress_json TEXT,
                summary_json  TEXT,
                error         TEXT,
                policy        TEXT NOT NULL,
                location_id   TEXT NOT NULL,
                created_at    INTEGER NOT NULL,
                started_at    INTEGER,
                finished_at   INTEGER,
                created_by    TEXT NOT NULL
            );
            CREATE INDEX datasets_workspace_created ON datasets(workspace_id, created_at DESC, id DESC);
            CREATE INDEX datasets_status ON datasets(status);
            """),
    ];

    public static void Apply(SqliteConnection connection)
    {
        using (var create = connection.CreateCommand())
        {
            create.CommandText = """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version    INTEGER PRIMARY KEY,
                    name       TEXT NOT NULL,
                    applied_at TEXT NOT NULL
                );
                """;
            create.ExecuteNonQuery();
        }

        foreach (var (version, name, sql) in All)
        {
            // BEGIN IMMEDIATE takes the write lock first, so two processes starting at once cannot
            // both decide a migration is missing and apply it twice.
            using var transaction = connection.BeginTransaction(deferred: false);
            using (var check = connection.CreateCommand())
            {
                check.Transaction = transaction;
                check.CommandText = "SELECT 1 FROM schema_migrations WHERE version = $v";
                check.Parameters.AddWithValue("$v", version);
                if (check.ExecuteScalar() is not null)
                {
                    continue;
                }
            }

            using (var migrate = connection.CreateCommand())
            {
                migrate.Transaction = transaction;
                migrate.CommandText = sql;
                migrate.ExecuteNonQuery();
            }

            using (var record = connection.CreateCommand())
            {
                record.Transaction = transaction;
                record.CommandText = "INSERT INTO schema_migrations(version, name, applied_at) VALUES ($v, $n, datetime('now'))";
                record.Parameters.AddWithValue("$v", version);
                record.Parameters.AddWithValue("$n", name);
                record.ExecuteNonQuery();
            }

            transaction.Commit();
        }
    }

    public static int Latest => All[^1].Version;
}
