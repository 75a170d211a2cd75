namespace Atelier.Catalog.PostgreSql;

/// <summary>
/// Atelier's own PostgreSQL schema and queries for Orleans' ADO.NET clustering provider
/// (<c>Microsoft.Orleans.Clustering.AdoNet</c> 10.4.2, invariant <c>Npgsql</c>), which ships no SQL.
/// The provider reads its nine queries by key from a table named <c>OrleansQuery</c>
/// (<c>SELECT QueryKey, QueryText FROM OrleansQuery</c>), binds named parameters (<c>@DeploymentId</c>,
/// <c>@Address</c>, <c>@Port</c>, <c>@Generation</c>, ...) and reads result columns by name, so the
/// queries alias Atelier's snake_case columns to the names it expects. The cluster's silos share
/// the catalog's database, so the tables are the catalog's own migration 9; <c>Atelier.Cluster</c>
/// points the provider at them (decision 0018).
/// </summary>
/// <remarks>
/// The membership protocol's consistency rests on one row per cluster, <c>cluster_membership_version</c>:
/// every insert or update of a member is conditional on the version the silo read (<c>@Version</c>)
/// and bumps it in the same statement, so of two silos writing from the same view exactly one wins
/// (the update of the version row locks it; the loser re-reads it after the winner commits and finds
/// its version gone). A member's suspicions are a text list (<c>address,date|...</c>) as the provider
/// formats them. Times are <c>timestamptz</c>; the provider passes UTC.
/// </remarks>
public static class ClusterMembershipSchema
{
    /// <summary>The DDL and the query rows: the catalog's migration 9 (see <c>Migrations</c>).</summary>
    public const string Migration = """
        CREATE TABLE cluster_membership_version (
            deployment_id text PRIMARY KEY,
            version integer NOT NULL DEFAULT 0,
            updated_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE cluster_members (
            deployment_id text NOT NULL REFERENCES cluster_membership_version (deployment_id),
            address text NOT NULL,
            port integer NOT NULL,
            generation integer NOT NULL,
            silo_name text NOT NULL,
            host_name text NOT NULL,
            status integer NOT NULL,
            proxy_port integer NULL,
            suspect_times text NULL,
            start_time timestamptz NOT NULL,
            i_am_alive_time timestamptz NOT NULL,
            PRIMARY KEY (deployment_id, address, port, generation)
        );

        -- Unquoted, as the provider names it (PostgreSQL folds it to lower case on both sides).
        CREATE TABLE OrleansQuery (
            QueryKey text PRIMARY KEY,
            QueryText text NOT NULL
        );

        INSERT INTO OrleansQuery (QueryKey, QueryText) VALUES
        ('InsertMembershipVersionKey', $q$
            WITH created AS (
                INSERT INTO cluster_membership_version (deployment_id) VALUES (@DeploymentId)
                ON CONFLICT (deployment_id) DO NOTHING
                RETURNING 1)
            SELECT count(*) > 0 FROM created
        $q$),
        ('MembershipReadAllKey', $q$
            SELECT v.version AS "Version", m.address AS "Address", m.port AS "Port", m.generation AS "Generation",
                   m.silo_name AS "SiloName", m.host_name AS "HostName", m.status AS "Status", m.proxy_port AS "ProxyPort",
                   m.suspect_times AS "SuspectTimes", m.start_time AS "StartTime", m.i_am_alive_time AS "IAmAliveTime"
            FROM cluster_membership_version v
            LEFT JOIN cluster_members m ON m.deployment_id = v.deployment_id
            WHERE v.deployment_id = @DeploymentId
        $q$),
        ('MembershipReadRowKey', $q$
            SELECT v.version AS "Version", m.address AS "Address", m.port AS "Port", m.generation AS "Generation",
                   m.silo_name AS "SiloName", m.host_name AS "HostName", m.status AS "Status", m.proxy_port AS "ProxyPort",
                   m.suspect_times AS "SuspectTimes", m.start_time AS "StartTime", m.i_am_alive_time AS "IAmAliveTime"
            FROM cluster_membership_version v
            LEFT JOIN cluster_members m ON m.deployment_id = v.deployment_id
                AND m.address = @Address AND m.port = @Port AND m.generation = @Generation
            WHERE v.deployment_id = @DeploymentId
        $q$),
        ('InsertMembershipKey', $q$
            WITH bumped AS (
                UPDATE cluster_membership_version SET version = version + 1, updated_at = now()
                WHERE deployment_id = @DeploymentId AND version = @Version
                  AND NOT EXISTS (SELECT 1 FROM cluster_members
                                  WHERE deployment_id = @DeploymentId AND address = @Address AND port = @Port AND generation = @Generation)
                RETURNING deployment_id),
            inserted AS (
                INSERT INTO cluster_members (deployment_id, address, port, generation, silo_name, host_name, status, proxy_port, start_time, i_am_alive_time)
                SELECT deployment_id, @Address, @Port, @Generation, @SiloName, @HostName, @Status, @ProxyPort, @StartTime, @IAmAliveTime FROM bumped
                ON CONFLICT DO NOTHING
                RETURNING 1)
            SELECT count(*) > 0 FROM inserted
        $q$),
        ('UpdateMembershipKey', $q$
            WITH bumped AS (
                UPDATE cluster_membership_version SET version = version + 1, updated_at = now()
                WHERE deployment_id = @DeploymentId AND version = @Version
                RETURNING deployment_id),
            updated AS (
                UPDATE cluster_members m SET status = @Status, suspect_times = @SuspectTimes, i_am_alive_time = @IAmAliveTime
                FROM bumped
                WHERE m.deployment_id = bumped.deployment_id AND m.address = @Address AND m.port = @Port AND m.generation = @Generation
                RETURNING 1)
            SELECT count(*) > 0 FROM updated
        $q$),
        ('UpdateIAmAlivetimeKey', $q$
            UPDATE cluster_members SET i_am_alive_time = @IAmAliveTime
            WHERE deployment_id = @DeploymentId AND address = @Address AND port = @Port AND generation = @Generation
        $q$),
        ('GatewaysQueryKey', $q$
            SELECT address AS "Address", proxy_port AS "ProxyPort", generation AS "Generation"
            FROM cluster_members
            WHERE deployment_id = @DeploymentId AND status = @Status AND proxy_port > 0
        $q$),
        ('DeleteMembershipTableEntriesKey', $q$
            DELETE FROM cluster_members WHERE deployment_id = @DeploymentId;
            DELETE FROM cluster_membership_version WHERE deployment_id = @DeploymentId
        $q$),
        ('CleanupDefunctSiloEntriesKey', $q$
            DELETE FROM cluster_members
            WHERE deployment_id = @DeploymentId AND i_am_alive_time < @IAmAliveTime AND status = 6
        $q$);
        """;
}
