using Npgsql;

namespace Atelier.Catalog.PostgreSql;

/// <summary>
/// The catalog's schema history for PostgreSQL: the same numbers, tables and columns as the SQLite
/// catalog's migrations, in PostgreSQL's dialect. Append new migrations at the end with the number
/// the SQLite catalog gives the same change; never edit one that shipped.
/// </summary>
/// <remarks>
/// Identifiers and names are <c>COLLATE "C"</c>: lists ordered by them come out in byte order, as
/// SQLite and .NET's ordinal comparison order them, whatever locale the database was created with.
/// JSON stays <c>TEXT</c> (the exact text the API stored, as SQLite keeps it); queries that look
/// inside cast it to <c>jsonb</c>.
/// </remarks>
internal static class Migrations
{
    // The first key of the migration lock: every node that starts queues on it, per database.
    private const long MigrationLock = 0x4154454C4945524D; // "ATELIERM"

    private static readonly (int Version, string Name, string Sql)[] All =
    [
        (1, "workspaces, api keys, files", """
            CREATE TABLE workspaces (
                id          TEXT COLLATE "C" PRIMARY KEY,
                name        TEXT COLLATE "C" NOT NULL UNIQUE,
                created_at  BIGINT NOT NULL
            );
            CREATE TABLE api_keys (
                id           TEXT COLLATE "C" PRIMARY KEY,
                workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces(id),
                name         TEXT COLLATE "C" NOT NULL,
                role         TEXT NOT NULL CONSTRAINT api_keys_role CHECK (role IN ('admin', 'member')),
                secret_hash  BYTEA NOT NULL,
                created_at   BIGINT NOT NULL,
                revoked_at   BIGINT
            );
            CREATE INDEX api_keys_workspace ON api_keys(workspace_id);
            CREATE TABLE files (
                id           TEXT COLLATE "C" PRIMARY KEY,
                workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces(id),
                filename     TEXT COLLATE "C" NOT NULL,
                purpose      TEXT COLLATE "C" NOT NULL,
                bytes        BIGINT NOT NULL,
                created_at   BIGINT NOT NULL,
                sample_type  TEXT COLLATE "C" NOT NULL,
                num_lines    BIGINT,
                mimetype     TEXT COLLATE "C",
                source       TEXT COLLATE "C" NOT NULL,
                signature    TEXT NOT NULL,
                visibility   TEXT NOT NULL,
                expires_at   BIGINT,
                policy       TEXT COLLATE "C" NOT NULL,
                location_id  TEXT COLLATE "C" NOT NULL,
                blob_key     TEXT COLLATE "C" NOT NULL,
                created_by   TEXT COLLATE "C" NOT NULL
            );
            CREATE INDEX files_workspace_created ON files(workspace_id, created_at DESC, id DESC);
            CREATE INDEX files_location ON files(location_id);
            CREATE INDEX files_expires ON files(expires_at) WHERE expires_at IS NOT NULL;
            """),
        (2, "datasets", """
            CREATE TABLE datasets (
                id            TEXT COLLATE "C" PRIMARY KEY,
                workspace_id  TEXT COLLATE "C" NOT NULL REFERENCES workspaces(id),
                name          TEXT COLLATE "C" NOT NULL,
                status        TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
                request_json  TEXT NOT NULL,
                progress_json TEXT,
                summary_json  TEXT,
                error         TEXT,
                policy        TEXT COLLATE "C" NOT NULL,
                location_id   TEXT COLLATE "C" NOT NULL,
                created_at    BIGINT NOT NULL,
                started_at    BIGINT,
                finished_at   BIGINT,
                created_by    TEXT COLLATE "C" NOT NULL
            );
            CREATE INDEX datasets_workspace_created ON datasets(workspace_id, created_at DESC, id DESC);
            CREATE INDEX datasets_status ON datasets(status);
            """),
        (3, "feature store, vector collections", """
            CREATE TABLE feature_views (
                id           TEXT COLLATE "C" PRIMARY KEY,
                workspace_id TEXT COLLATE "C" NOT NULL,
                name         TEXT COLLATE "C" NOT NULL,
                version      INTEGER NOT NULL,
                definition   TEXT NOT NULL,
                created_at   BIGINT NOT NULL,
                UNIQUE (workspace_id, name, version)
            );
            CREATE TABLE feature_segments (
                view_id      TEXT COLLATE "C" NOT NULL,
                seq          BIGINT NOT NULL,
                location_id  TEXT COLLATE "C" NOT NULL,
                blob_key     TEXT COLLATE "C" NOT NULL,
                rows         BIGINT NOT NULL,
                bytes        BIGINT NOT NULL,
                sha256       TEXT NOT NULL,
                min_event    BIGINT NOT NULL,
                max_event    BIGINT NOT NULL,
                source       TEXT NOT NULL,
                created_at   BIGINT NOT NULL,
                PRIMARY KEY (view_id, seq)
            );
            CREATE TABLE feature_training_sets (
                id           TEXT COLLATE "C" PRIMARY KEY,
                workspace_id TEXT COLLATE "C" NOT NULL,
                name         TEXT COLLATE "C" NOT NULL,
                version      INTEGER NOT NULL,
                manifest     TEXT NOT NULL,
                created_at   BIGINT NOT NULL,
                UNIQUE (workspace_id, name, version)
            );
            CREATE TABLE vector_collections (
                id           TEXT COLLATE "C" PRIMARY KEY,
                workspace_id TEXT COLLATE "C" NOT NULL REFERENCES workspaces(id),
                name         TEXT COLLATE "C" NOT NULL,
                config_json  TEXT NOT NULL,
                policy       TEXT COLLATE "C" NOT NULL,
                created_at   BIGINT NOT NULL,
                created_by   TEXT COLLATE "C" NOT NULL,
                UNIQUE (workspace_id, name)
            );
            """),
        (4, "models", """
            -- Base models have no workspace (visible to every workspace); fine-tuned models have one.
            CREATE TABLE models (
                id                 TEXT COLLATE "C" PRIMARY KEY,
                workspace_id       TEXT COLLATE "C" REFERENCES workspaces(id),
                type               TEXT NOT NULL CHECK (type IN ('base', 'fine-tuned')),
                name               TEXT,
                description        TEXT,
                root               TEXT COLLATE "C",
                job_id             TEXT COLLATE "C",
                created_at         BIGINT NOT NULL,
                archived           BOOLEAN NOT NULL DEFAULT FALSE,
                max_context_length INTEGER NOT NULL,
                capabilities_json  TEXT NOT NULL,
                policy             TEXT COLLATE "C" NOT NULL,
                artifacts_json     TEXT NOT NULL,
                aliases_json       TEXT NOT NULL DEFAULT '[]',
                lineage_json       TEXT NOT NULL DEFAULT '{}',
                owned_by           TEXT NOT NULL,
                created_by         TEXT NOT NULL,
                CHECK ((type = 'base') = (workspace_id IS NULL))
            );
            CREATE INDEX models_workspace_created ON models(workspace_id, created_at DESC, id DESC);
            CREATE INDEX models_root ON models(root);
            CREATE UNIQUE INDEX models_job ON models(job_id) WHERE job_id IS NOT NULL;
            """),
        (5, "fine_tuning_jobs", """
            CREATE TABLE fine_tuning_jobs (
                id                   TEXT COLLATE "C" PRIMARY KEY,
                workspace_id         TEXT COLLATE "C" NOT NULL REFERENCES workspaces(id),
                model                TEXT COLLATE "C" NOT NULL,
                status               TEXT COLLATE "C" NOT NULL,
                started              BOOLEAN NOT NULL DEFAULT FALSE,
                auto_start           BOOLEAN NOT NULL,
                request_json         TEXT NOT NULL,
                suffix               TEXT COLLATE "C",
                fine_tuned_model     TEXT COLLATE "C",
                trained_tokens       BIGINT,
                metadata_json        TEXT,
                policy               TEXT COLLATE "C" NOT NULL,
                location_id          TEXT COLLATE "C" NOT NULL,
                node                 TEXT COLLATE "C",
                attempt              INTEGER NOT NULL DEFAULT 0,
                error                TEXT,
                created_at           BIGINT NOT NULL,
                modified_at          BIGINT NOT NULL,
                created_by           TEXT COLLATE "C" NOT NULL
            );
            CREATE INDEX fine_tuning_jobs_workspace_created ON fine_tuning_jobs(workspace_id, created_at DESC, id DESC);
            CREATE INDEX fine_tuning_jobs_status ON fine_tuning_jobs(status);
            CREATE TABLE fine_tuning_job_events (
                job_id      TEXT COLLATE "C" NOT NULL REFERENCES fine_tuning_jobs(id) ON DELETE CASCADE,
                seq         BIGINT NOT NULL,
                name        TEXT NOT NULL,
                data_json   TEXT,
                created_at  BIGINT NOT NULL,
                PRIMARY KEY (job_id, seq)
            );
            CREATE TABLE fine_tuning_job_checkpoints (
                job_id            TEXT COLLATE "C" NOT NULL REFERENCES fine_tuning_jobs(id) ON DELETE CASCADE,
                step_number       BIGINT NOT NULL,
                checkpoint_id     TEXT COLLATE "C" NOT NULL,
                train_loss        DOUBLE PRECISION,
                valid_loss        DOUBLE PRECISION,
                valid_accuracy    DOUBLE PRECISION,
                created_at        BIGINT NOT NULL,
                retained          BOOLEAN NOT NULL DEFAULT TRUE,
                PRIMARY KEY (job_id, step_number)
            );
            """),
        (6, "operator role, governed residency policies", """
            ALTER TABLE api_keys DROP CONSTRAINT api_keys_role;
            ALTER TABLE api_keys ADD CONSTRAINT api_keys_role CHECK (role IN ('operator', 'admin', 'member'));
            -- The first key, written at bootstrap, was the installation's admin: it becomes the
            -- platform operator. Every other admin stays an admin of its own workspace.
            UPDATE api_keys SET role = 'operator'
            WHERE role = 'admin' AND id = (SELECT id FROM api_keys ORDER BY created_at, id LIMIT 1);
            CREATE TABLE workspace_policies (
                workspace_id          TEXT COLLATE "C" PRIMARY KEY REFERENCES workspaces(id),
                default_policy        TEXT COLLATE "C" NOT NULL,
                allowed_policies_json TEXT NOT NULL
            );
            CREATE TABLE residency_policies (
                name             TEXT COLLATE "C" PRIMARY KEY,
                definition_json  TEXT NOT NULL,
                created_at       BIGINT NOT NULL,
                created_by       TEXT NOT NULL
            );
            """),
        (7, "registry: model versions, aliases and their history, evaluations", """
            -- A registered name groups the versions of one model: a base model's id (scope '', every
            -- workspace sees it) or a fine-tune's name (scope = its workspace id). Versions are never
            -- reused: a version outlives its model's row (its status then reads 'deleted').
            CREATE TABLE model_versions (
                scope       TEXT COLLATE "C" NOT NULL,
                name        TEXT COLLATE "C" NOT NULL,
                version     INTEGER NOT NULL,
                model_id    TEXT COLLATE "C" NOT NULL UNIQUE,
                job_id      TEXT COLLATE "C",
                created_at  BIGINT NOT NULL,
                created_by  TEXT NOT NULL,
                PRIMARY KEY (scope, name, version)
            );
            CREATE TABLE model_aliases (
                scope       TEXT COLLATE "C" NOT NULL,
                name        TEXT COLLATE "C" NOT NULL,
                alias       TEXT COLLATE "C" NOT NULL,
                version     INTEGER NOT NULL,
                updated_at  BIGINT NOT NULL,
                updated_by  TEXT NOT NULL,
                PRIMARY KEY (scope, name, alias)
            );
            -- Append-only: rows are inserted, never updated or deleted.
            CREATE TABLE model_alias_history (
                scope         TEXT COLLATE "C" NOT NULL,
                name          TEXT COLLATE "C" NOT NULL,
                alias         TEXT COLLATE "C" NOT NULL,
                seq           BIGINT NOT NULL,
                from_version  INTEGER,
                to_version    INTEGER,
                actor         TEXT NOT NULL,
                workspace_id  TEXT NOT NULL,
                reason        TEXT,
                at            BIGINT NOT NULL,
                PRIMARY KEY (scope, name, alias, seq)
            );
            CREATE TABLE model_evaluations (
                id           TEXT COLLATE "C" PRIMARY KEY,
                scope        TEXT COLLATE "C" NOT NULL,
                name         TEXT COLLATE "C" NOT NULL,
                version      INTEGER NOT NULL,
                model_id     TEXT NOT NULL,
                file_id      TEXT NOT NULL,
                result_json  TEXT NOT NULL,
                created_at   BIGINT NOT NULL,
                created_by   TEXT NOT NULL
            );
            CREATE INDEX model_evaluations_version ON model_evaluations(scope, name, version, created_at);
            -- Back-fill, as the SQLite catalog's migration 7 does: every model without a version
            -- becomes one, in the order it was registered.
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
            CREATE TABLE erasures (
                id             TEXT COLLATE "C" PRIMARY KEY,
                workspace_id   TEXT COLLATE "C" NOT NULL REFERENCES workspaces(id),
                artifact_kind  TEXT COLLATE "C" NOT NULL,
                artifact_id    TEXT COLLATE "C" NOT NULL,
                content_sha256 TEXT NOT NULL,
                status         TEXT NOT NULL CHECK (status IN ('running', 'succeeded')),
                plan_json      TEXT NOT NULL,
                report_json    TEXT,
                created_at     BIGINT NOT NULL,
                finished_at    BIGINT,
                created_by     TEXT NOT NULL
            );
            -- At most one unfinished erasure per artifact: a re-run continues it instead of starting another.
            CREATE UNIQUE INDEX erasures_running ON erasures(workspace_id, artifact_kind, artifact_id) WHERE status = 'running';
            CREATE TABLE model_taints (
                model_id    TEXT COLLATE "C" PRIMARY KEY,
                erasure_id  TEXT COLLATE "C" NOT NULL REFERENCES erasures(id),
                tainted_at  BIGINT NOT NULL
            );
            CREATE TABLE serving_overrides (
                model_id    TEXT COLLATE "C" PRIMARY KEY,
                reason      TEXT NOT NULL,
                actor       TEXT NOT NULL,
                created_at  BIGINT NOT NULL
            );
            """),
        (9, "cluster membership (Orleans)", ClusterMembershipSchema.Migration),

        // Build ownership: every node scans the unfinished builds, and only the one holding a build's
        // lease builds it; a lease that is not renewed lapses, and another node takes the build over
        // (decision 0021).
        (10, "dataset build leases", """
            ALTER TABLE datasets ADD COLUMN build_owner TEXT COLLATE "C";
            ALTER TABLE datasets ADD COLUMN build_lease_until BIGINT;
            """),
    ];

    /// <summary>
    /// Applies, inside the caller's transaction, every migration the database lacks. The advisory
    /// lock is taken first, so of two nodes starting at once the second waits for the first to
    /// commit, then reads the versions it recorded and applies nothing. PostgreSQL's DDL is
    /// transactional: a failed migration leaves the schema as it was.
    /// </summary>
    public static async Task<bool> ApplyAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, CancellationToken cancellationToken)
    {
        await PostgreSqlDatabase.ExecuteAsync(connection, transaction, "SELECT pg_advisory_xact_lock(@key)", cancellationToken, ("key", MigrationLock)).ConfigureAwait(false);

        // Created under the lock: two CREATE TABLE IF NOT EXISTS racing can both fail on the catalog's own unique index.
        await PostgreSqlDatabase.ExecuteAsync(
            connection,
            transaction,
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    INTEGER PRIMARY KEY,
                name       TEXT NOT NULL,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )
            """,
            cancellationToken).ConfigureAwait(false);
        var applied = new HashSet<int>(await PostgreSqlDatabase.QueryAsync(connection, transaction, "SELECT version FROM schema_migrations", static r => r.GetInt32(0), cancellationToken).ConfigureAwait(false));

        // Engineers add entries in parallel, so the array is not trusted to be in order.
        foreach (var (version, name, sql) in All.OrderBy(m => m.Version))
        {
            if (applied.Contains(version))
            {
                continue;
            }

            await PostgreSqlDatabase.ExecuteAsync(connection, transaction, sql, cancellationToken).ConfigureAwait(false);
            await PostgreSqlDatabase.ExecuteAsync(connection, transaction, "INSERT INTO schema_migrations(version, name) VALUES (@v, @n)", cancellationToken, ("v", version), ("n", name)).ConfigureAwait(false);
        }

        return true;
    }

    public static int Latest => All.Max(m => m.Version);

    public static IReadOnlyList<int> Versions => [.. All.Select(m => m.Version).Order()];
}
