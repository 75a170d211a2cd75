using Microsoft.Data.Sqlite;

namespace Atelier.Catalog.Sqlite;

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
        (4, "models", """
            -- Base models have no workspace (visible to every workspace); fine-tuned models have one.
            CREATE TABLE IF NOT EXISTS models (
                id                 TEXT PRIMARY KEY,
                workspace_id       TEXT REFERENCES workspaces(id),
                type               TEXT NOT NULL CHECK (type IN ('base', 'fine-tuned')),
                name               TEXT,
                description        TEXT,
                root               TEXT,
                job_id             TEXT,
                created_at         INTEGER NOT NULL,
                archived           INTEGER NOT NULL DEFAULT 0,
                max_context_length INTEGER NOT NULL,
                capabilities_json  TEXT NOT NULL,
                policy             TEXT NOT NULL,
                artifacts_json     TEXT NOT NULL,
                aliases_json       TEXT NOT NULL DEFAULT '[]',
                lineage_json       TEXT NOT NULL DEFAULT '{}',
                owned_by           TEXT NOT NULL,
                created_by         TEXT NOT NULL,
                CHECK ((type = 'base') = (workspace_id IS NULL))
            );
            CREATE INDEX IF NOT EXISTS models_workspace_created ON models(workspace_id, created_at DESC, id DESC);
            CREATE INDEX IF NOT EXISTS models_root ON models(root);
            CREATE UNIQUE INDEX IF NOT EXISTS models_job ON models(job_id) WHERE job_id IS NOT NULL;
            """),
        (3, "feature store, vector collections", """
            -- IF NOT EXISTS: before this migration the feature store created its tables itself, so a
            -- catalog from then already has them (with the same columns) and keeps its rows.
            CREATE TABLE IF NOT EXISTS feature_views (
                id           TEXT PRIMARY KEY,
                workspace_id TEXT NOT NULL,
                name         TEXT NOT NULL,
                version      INTEGER NOT NULL,
                definition   TEXT NOT NULL,
                created_at   INTEGER NOT NULL,
                UNIQUE (workspace_id, name, version)
            );
            CREATE TABLE IF NOT EXISTS feature_segments (
                view_id      TEXT NOT NULL,
                seq          INTEGER NOT NULL,
                location_id  TEXT NOT NULL,
                blob_key     TEXT NOT NULL,
                rows         INTEGER NOT NULL,
                bytes        INTEGER NOT NULL,
                sha256       TEXT NOT NULL,
                min_event    INTEGER NOT NULL,
                max_event    INTEGER NOT NULL,
                source       TEXT NOT NULL,
                created_at   INTEGER NOT NULL,
                PRIMARY KEY (view_id, seq)
            );
            CREATE TABLE IF NOT EXISTS feature_training_sets (
                id           TEXT PRIMARY KEY,
                workspace_id TEXT NOT NULL,
                name         TEXT NOT NULL,
                version      INTEGER NOT NULL,
                manifest     TEXT NOT NULL,
                created_at   INTEGER NOT NULL,
                UNIQUE (workspace_id, name, version)
            );
            CREATE TABLE IF NOT EXISTS vector_collections (
                id           TEXT PRIMARY KEY,
                workspace_id TEXT NOT NULL REFERENCES workspaces(id),
                name         TEXT NOT NULL,
                config_json  TEXT NOT NULL,
                policy       TEXT NOT NULL,
                created_at   INTEGER NOT NULL,
                created_by   TEXT NOT NULL,
                UNIQUE (workspace_id, name)
            );
            """),
        (5, "fine_tuning_jobs", """
            CREATE TABLE IF NOT EXISTS fine_tuning_jobs (
                id                   TEXT PRIMARY KEY,
                workspace_id         TEXT NOT NULL REFERENCES workspaces(id),
                model                TEXT NOT NULL,
                status               TEXT NOT NULL,
                started              INTEGER NOT NULL DEFAULT 0,
                auto_start           INTEGER NOT NULL,
                request_json         TEXT NOT NULL,
                suffix               TEXT,
                fine_tuned_model     TEXT,
                trained_tokens       INTEGER,
                metadata_json        TEXT,
                policy               TEXT NOT NULL,
                location_id          TEXT NOT NULL,
                node                 TEXT,
                attempt              INTEGER NOT NULL DEFAULT 0,
                error                TEXT,
                created_at           INTEGER NOT NULL,
                modified_at          INTEGER NOT NULL,
                created_by           TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS fine_tuning_jobs_workspace_created ON fine_tuning_jobs(workspace_id, created_at DESC, id DESC);
            CREATE INDEX IF NOT EXISTS fine_tuning_jobs_status ON fine_tuning_jobs(status);
            CREATE TABLE IF NOT EXISTS fine_tuning_job_events (
                job_id      TEXT NOT NULL REFERENCES fine_tuning_jobs(id) ON DELETE CASCADE,
                seq         INTEGER NOT NULL,
                name        TEXT NOT NULL,
                data_json   TEXT,
                created_at  INTEGER NOT NULL,
                PRIMARY KEY (job_id, seq)
            );
            CREATE TABLE IF NOT EXISTS fine_tuning_job_checkpoints (
                job_id            TEXT NOT NULL REFERENCES fine_tuning_jobs(id) ON DELETE CASCADE,
                step_number       INTEGER NOT NULL,
                checkpoint_id     TEXT NOT NULL,
                train_loss        REAL,
                valid_loss        REAL,
                valid_accuracy    REAL,
                created_at        INTEGER NOT NULL,
                retained          INTEGER NOT NULL DEFAULT 1,
                PRIMARY KEY (job_id, step_number)
            );
            """),
        (6, "operator role, governed residency policies", """
            DROP TABLE IF EXISTS api_keys_v6;
            CREATE TABLE api_keys_v6 (
                id           TEXT PRIMARY KEY,
                workspace_id TEXT NOT NULL REFERENCES workspaces(id),
                name         TEXT NOT NULL,
                role         TEXT NOT NULL CHECK (role IN ('operator', 'admin', 'member')),
                secret_hash  BLOB NOT NULL,
                created_at   INTEGER NOT NULL,
                revoked_at   INTEGER
            );
            -- The first key, written at bootstrap, was the installation's admin: it becomes the
            -- platform operator. Every other admin stays an admin of its own workspace.
            INSERT INTO api_keys_v6(id, workspace_id, name, role, secret_hash, created_at, revoked_at)
                SELECT id, workspace_id, name,
                       CASE WHEN role = 'admin' AND id = (SELECT id FROM api_keys ORDER BY created_at, rowid LIMIT 1) THEN 'operator' ELSE role END,
                       secret_hash, created_at, revoked_at
                FROM api_keys;
            DROP TABLE api_keys;
            ALTER TABLE api_keys_v6 RENAME TO api_keys;
            CREATE INDEX api_keys_workspace ON api_keys(workspace_id);
            CREATE TABLE IF NOT EXISTS workspace_policies (
                workspace_id          TEXT PRIMARY KEY REFERENCES workspaces(id),
                default_policy        TEXT NOT NULL,
                allowed_policies_json TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS residency_policies (
                name             TEXT PRIMARY KEY,
                definition_json  TEXT NOT NULL,
                created_at       INTEGER NOT NULL,
                created_by       TEXT NOT NULL
            );
            """),
        (7, "registry: model versions, aliases and their history, evaluations", """
            -- A registered name groups the versions of one model: a base model's id (scope '', every
            -- workspace sees it) or a fine-tune's name (scope = its workspace id). Versions are never
            -- reused: a version outlives its model's row (its status then reads 'deleted').
            CREATE TABLE IF NOT EXISTS model_versions (
                scope       TEXT NOT NULL,
                name        TEXT NOT NULL,
                version     INTEGER NOT NULL,
                model_id    TEXT NOT NULL UNIQUE,
                job_id      TEXT,
                created_at  INTEGER NOT NULL,
                created_by  TEXT NOT NULL,
                PRIMARY KEY (scope, name, version)
            );
            CREATE TABLE IF NOT EXISTS model_aliases (
                scope       TEXT NOT NULL,
                name        TEXT NOT NULL,
                alias       TEXT NOT NULL,
                version     INTEGER NOT NULL,
                updated_at  INTEGER NOT NULL,
                updated_by  TEXT NOT NULL,
                PRIMARY KEY (scope, name, alias)
            );
            -- Append-only: rows are inserted, never updated or deleted.
            CREATE TABLE IF NOT EXISTS model_alias_history (
                scope         TEXT NOT NULL,
                name          TEXT NOT NULL,
                alias         TEXT NOT NULL,
                seq           INTEGER NOT NULL,
                from_version  INTEGER,
                to_version    INTEGER,
                actor         TEXT NOT NULL,
                workspace_id  TEXT NOT NULL,
                reason        TEXT,
                at            INTEGER NOT NULL,
                PRIMARY KEY (scope, name, alias, seq)
            );
            CREATE TABLE IF NOT EXISTS model_evaluations (
                id           TEXT PRIMARY KEY,
                scope        TEXT NOT NULL,
                name         TEXT NOT NULL,
                version      INTEGER NOT NULL,
                model_id     TEXT NOT NULL,
                file_id      TEXT NOT NULL,
                result_json  TEXT NOT NULL,
                created_at   INTEGER NOT NULL,
                created_by   TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS model_evaluations_version ON model_evaluations(scope, name, version, created_at);
            -- Back-fill: every model without a version becomes one, in the order it was registered
            -- (after any version its name already has): a base model version 1 of its own id, a
            -- fine-tune the next version of '<base>:<suffix>' (':fine-tuned' without a suffix) in its
            -- workspace.
            INSERT INTO model_versions(scope, name, version, model_id, job_id, created_at, created_by)
            SELECT u.scope, u.name,
                   COALESCE((SELECT MAX(x.version) FROM model_versions x WHERE x.scope = u.scope AND x.name = u.name), 0)
                     + ROW_NUMBER() OVER (PARTITION BY u.scope, u.name ORDER BY u.created_at, u.id),
                   u.id, u.job_id, u.created_at, u.created_by
            FROM (
                SELECT COALESCE(m.workspace_id, '') AS scope,
                       CASE WHEN m.type = 'base' THEN m.id ELSE m.root || ':' || COALESCE(j.suffix, 'fine-tuned') END AS name,
                       m.id, m.job_id, m.created_at, m.created_by
                FROM models m LEFT JOIN fine_tuning_jobs j ON j.id = m.job_id
                WHERE NOT EXISTS (SELECT 1 FROM model_versions x WHERE x.model_id = m.id)
            ) u;
            """),
        (8, "erasures, model taints, serving overrides", """
            CREATE TABLE IF NOT EXISTS erasures (
                id             TEXT PRIMARY KEY,
                workspace_id   TEXT NOT NULL REFERENCES workspaces(id),
                artifact_kind  TEXT NOT NULL,
                artifact_id    TEXT NOT NULL,
                content_sha256 TEXT NOT NULL,
                status         TEXT NOT NULL CHECK (status IN ('running', 'succeeded')),
                plan_json      TEXT NOT NULL,
                report_json    TEXT,
                created_at     INTEGER NOT NULL,
                finished_at    INTEGER,
                created_by     TEXT NOT NULL
            );
            -- At most one unfinished erasure per artifact: a re-run continues it instead of starting another.
            CREATE UNIQUE INDEX IF NOT EXISTS erasures_running ON erasures(workspace_id, artifact_kind, artifact_id) WHERE status = 'running';
            CREATE TABLE IF NOT EXISTS model_taints (
                model_id    TEXT PRIMARY KEY,
                erasure_id  TEXT NOT NULL REFERENCES erasures(id),
                tainted_at  INTEGER NOT NULL
            );
            CREATE TABLE IF NOT EXISTS serving_overrides (
                model_id    TEXT PRIMARY KEY,
                reason      TEXT NOT NULL,
                actor       TEXT NOT NULL,
                created_at  INTEGER NOT NULL
            );
            """),

        // Cluster membership lives in the PostgreSQL catalog only: the embedded catalog serves one
        // silo, which uses localhost clustering and no table. The number is taken here too, so both
        // providers count the same versions.
        (9, "cluster membership (PostgreSQL only)", "SELECT 1;"),

        // Build ownership: the node that builds a dataset holds a lease on it (decision 0021). The
        // embedded catalog has one node, but the columns exist on both providers so they agree.
        (10, "dataset build leases", """
            ALTER TABLE datasets ADD COLUMN build_owner TEXT;
            ALTER TABLE datasets ADD COLUMN build_lease_until INTEGER;
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

        // Engineers add entries in parallel, so the array is not trusted to be in order.
        foreach (var (version, name, sql) in All.OrderBy(m => m.Version))
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

    public static int Latest => All.Max(m => m.Version);

    // Branches take numbers in parallel, so the known versions may have a gap until they merge.
    public static IReadOnlyList<int> Versions => [.. All.Select(m => m.Version).Order()];
}
