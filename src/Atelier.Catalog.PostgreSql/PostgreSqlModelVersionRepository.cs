using Npgsql;

namespace Atelier.Catalog.PostgreSql;

/// <summary>
/// Registered model names in the PostgreSQL catalog (tables <c>model_versions</c>,
/// <c>model_aliases</c>, <c>model_alias_history</c> and <c>model_evaluations</c> of migration 7).
/// Every write that reads first (the next version number, the version an alias moves from) takes
/// the name's advisory lock in its transaction: registrations and moves of one name, from any node,
/// run one after the other, and each reads what the previous one committed.
/// </summary>
public sealed class PostgreSqlModelVersionRepository(PostgreSqlDatabase database) : IModelVersionRepository
{
    // The status is read from the model's row at query time: archiving or deleting a model needs no
    // second write here.
    private const string VersionColumns =
        "v.scope, v.name, v.version, v.model_id, v.job_id, v.created_at, v.created_by, " +
        "CASE WHEN m.id IS NULL THEN 'deleted' WHEN m.archived THEN 'archived' ELSE 'ready' END";

    private const string VersionFrom = "model_versions v LEFT JOIN models m ON m.id = v.model_id";

    /// <inheritdoc />
    public Task<ModelVersionRecord> AddVersionAsync(string scope, string name, string modelId, string? jobId, long createdAt, string createdBy, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(scope);
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentException.ThrowIfNullOrEmpty(modelId);
        return database.InTransactionAsync(
            async (connection, transaction) =>
            {
                // There is no row to lock before a name's first version, so the name itself is
                // locked: the highest number is read after the previous registration committed.
                await LockNameAsync(connection, transaction, scope, name, cancellationToken).ConfigureAwait(false);

                // A model already versioned (a registration repeated after a crash, or racing under
                // another name) keeps its version: the unique model_id makes the insert a no-op.
                await PostgreSqlDatabase.ExecuteAsync(
                    connection,
                    transaction,
                    """
                    INSERT INTO model_versions(scope, name, version, model_id, job_id, created_at, created_by)
                    SELECT @scope, @name, COALESCE(MAX(version), 0) + 1, @model, @job::text, @at, @by FROM model_versions WHERE scope = @scope AND name = @name
                    ON CONFLICT (model_id) DO NOTHING
                    """,
                    cancellationToken,
                    ("scope", scope),
                    ("name", name),
                    ("model", modelId),
                    ("job", jobId),
                    ("at", createdAt),
                    ("by", createdBy)).ConfigureAwait(false);
                return (await QueryVersionsAsync(connection, transaction, "v.model_id = @model", cancellationToken, ("model", modelId)).ConfigureAwait(false))[0];
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public async Task<ModelVersionRecord?> FindByModelAsync(string modelId, CancellationToken cancellationToken = default) =>
        (await VersionsAsync("v.model_id = @model", cancellationToken, ("model", modelId)).ConfigureAwait(false)).FirstOrDefault();

    /// <inheritdoc />
    public async Task<ModelVersionRecord?> FindVersionAsync(string scope, string name, int version, CancellationToken cancellationToken = default) =>
        (await VersionsAsync("v.scope = @scope AND v.name = @name AND v.version = @v", cancellationToken, ("scope", scope), ("name", name), ("v", version)).ConfigureAwait(false)).FirstOrDefault();

    /// <inheritdoc />
    public async Task<ModelVersionRecord?> FindByAliasAsync(string scope, string name, string alias, CancellationToken cancellationToken = default) =>
        (await VersionsAsync(
            "v.scope = @scope AND v.name = @name AND v.version = (SELECT a.version FROM model_aliases a WHERE a.scope = @scope AND a.name = @name AND a.alias = @alias)",
            cancellationToken,
            ("scope", scope),
            ("name", name),
            ("alias", alias)).ConfigureAwait(false)).FirstOrDefault();

    /// <inheritdoc />
    public Task<IReadOnlyList<RegisteredNameRecord>> ListNamesAsync(IReadOnlyList<string> scopes, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(scopes);
        return NamesAsync("v.scope = ANY(@scopes)", cancellationToken, ("scopes", scopes.ToArray()));
    }

    /// <inheritdoc />
    public async Task<RegisteredNameRecord?> FindNameAsync(string scope, string name, CancellationToken cancellationToken = default) =>
        (await NamesAsync("v.scope = @scope AND v.name = @name", cancellationToken, ("scope", scope), ("name", name)).ConfigureAwait(false)).FirstOrDefault();

    /// <inheritdoc />
    public Task<IReadOnlyList<ModelVersionRecord>> ListVersionsAsync(string scope, string name, CancellationToken cancellationToken = default) =>
        VersionsAsync("v.scope = @scope AND v.name = @name", cancellationToken, ("scope", scope), ("name", name));

    /// <inheritdoc />
    public Task<AliasMoveOutcome> MoveAliasAsync(string scope, string name, string alias, int? toVersion, string actor, string workspaceId, string? reason, long at, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(scope);
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentException.ThrowIfNullOrEmpty(alias);
        return database.InTransactionAsync(
            async (connection, transaction) =>
            {
                // Under the name's lock: the move records the version it really moved from, so a
                // concurrent move either came before this one (and is its 'from') or comes after.
                await LockNameAsync(connection, transaction, scope, name, cancellationToken).ConfigureAwait(false);
                var key = new (string, object?)[] { ("scope", scope), ("name", name), ("alias", alias) };
                if (toVersion is { } target)
                {
                    var versions = await PostgreSqlDatabase.QueryAsync(
                        connection,
                        transaction,
                        "SELECT COUNT(*), COUNT(*) FILTER (WHERE version = @v) FROM model_versions WHERE scope = @scope AND name = @name",
                        static r => (All: r.GetInt64(0), Target: r.GetInt64(1)),
                        cancellationToken,
                        [.. key, ("v", target)]).ConfigureAwait(false);
                    if (versions[0].Target == 0)
                    {
                        return new AliasMoveOutcome(versions[0].All == 0 ? AliasMoveStatus.NotFound : AliasMoveStatus.NoSuchVersion, null);
                    }
                }

                var current = (await PostgreSqlDatabase.QueryAsync(
                    connection,
                    transaction,
                    "SELECT version FROM model_aliases WHERE scope = @scope AND name = @name AND alias = @alias",
                    static r => (int?)r.GetInt32(0),
                    cancellationToken,
                    key).ConfigureAwait(false)).FirstOrDefault();
                if (current == toVersion)
                {
                    return new AliasMoveOutcome(toVersion is null ? AliasMoveStatus.NotFound : AliasMoveStatus.Unchanged, null);
                }

                var change = toVersion is null
                    ? "DELETE FROM model_aliases WHERE scope = @scope AND name = @name AND alias = @alias"
                    : """
                      INSERT INTO model_aliases(scope, name, alias, version, updated_at, updated_by) VALUES (@scope, @name, @alias, @to, @at, @actor)
                      ON CONFLICT (scope, name, alias) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at, updated_by = excluded.updated_by
                      """;
                await PostgreSqlDatabase.ExecuteAsync(connection, transaction, change, cancellationToken, [.. key, ("to", toVersion), ("at", at), ("actor", actor)]).ConfigureAwait(false);
                var sequence = (await PostgreSqlDatabase.QueryAsync(
                    connection,
                    transaction,
                    """
                    INSERT INTO model_alias_history(scope, name, alias, seq, from_version, to_version, actor, workspace_id, reason, at)
                    SELECT @scope, @name, @alias, COALESCE(MAX(seq), 0) + 1, @from::integer, @to::integer, @actor, @ws, @reason::text, @at
                    FROM model_alias_history WHERE scope = @scope AND name = @name AND alias = @alias
                    RETURNING seq
                    """,
                    static r => r.GetInt64(0),
                    cancellationToken,
                    [.. key, ("from", current), ("to", toVersion), ("actor", actor), ("ws", workspaceId), ("reason", reason), ("at", at)]).ConfigureAwait(false))[0];
                return new AliasMoveOutcome(AliasMoveStatus.Moved, new ModelAliasMove(sequence, alias, current, toVersion, actor, workspaceId, reason, at));
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<ModelAliasMove>> AliasHistoryAsync(string scope, string name, string alias, CancellationToken cancellationToken = default) =>
        await database.QueryAsync(
            "SELECT seq, alias, from_version, to_version, actor, workspace_id, reason, at FROM model_alias_history WHERE scope = @scope AND name = @name AND alias = @alias ORDER BY seq",
            static r => new ModelAliasMove(
                r.GetInt64(0),
                r.GetString(1),
                r.IsDBNull(2) ? null : r.GetInt32(2),
                r.IsDBNull(3) ? null : r.GetInt32(3),
                r.GetString(4),
                r.GetString(5),
                r.IsDBNull(6) ? null : r.GetString(6),
                r.GetInt64(7)),
            cancellationToken,
            ("scope", scope),
            ("name", name),
            ("alias", alias)).ConfigureAwait(false);

    /// <inheritdoc />
    public async Task AddEvaluationAsync(ModelEvaluationRecord evaluation, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(evaluation);
        await database.ExecuteAsync(
            """
            INSERT INTO model_evaluations(id, scope, name, version, model_id, file_id, result_json, created_at, created_by)
            VALUES (@id, @scope, @name, @v, @model, @file, @result, @at, @by)
            """,
            cancellationToken,
            ("id", evaluation.Id),
            ("scope", evaluation.Scope),
            ("name", evaluation.Name),
            ("v", evaluation.Version),
            ("model", evaluation.ModelId),
            ("file", evaluation.FileId),
            ("result", evaluation.ResultJson),
            ("at", evaluation.CreatedAt),
            ("by", evaluation.CreatedBy)).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<ModelEvaluationRecord>> ListEvaluationsAsync(string scope, string name, int version, CancellationToken cancellationToken = default) =>
        await database.QueryAsync(
            "SELECT id, scope, name, version, model_id, file_id, result_json, created_at, created_by FROM model_evaluations WHERE scope = @scope AND name = @name AND version = @v ORDER BY created_at, id",
            static r => new ModelEvaluationRecord(r.GetString(0), r.GetString(1), r.GetString(2), r.GetInt32(3), r.GetString(4), r.GetString(5), r.GetString(6), r.GetInt64(7), r.GetString(8)),
            cancellationToken,
            ("scope", scope),
            ("name", name),
            ("v", version)).ConfigureAwait(false);

    // The scope and the name joined by a character neither holds, so ("a", "b:c") and ("a:b", "c") differ.
    private static Task LockNameAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string scope, string name, CancellationToken cancellationToken) =>
        PostgreSqlDatabase.LockAsync(connection, transaction, CatalogLock.ModelName, scope + "\0" + name, shared: false, cancellationToken);

    private Task<IReadOnlyList<ModelVersionRecord>> VersionsAsync(string where, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters) =>
        database.RunAsync<IReadOnlyList<ModelVersionRecord>>(
            async connection => await QueryVersionsAsync(connection, null, where, cancellationToken, parameters).ConfigureAwait(false),
            cancellationToken);

    private static Task<List<ModelVersionRecord>> QueryVersionsAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, string where, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters) =>
        PostgreSqlDatabase.QueryAsync(connection, transaction, $"SELECT {VersionColumns} FROM {VersionFrom} WHERE {where} ORDER BY v.scope, v.name, v.version", ReadVersion, cancellationToken, parameters);

    private Task<IReadOnlyList<RegisteredNameRecord>> NamesAsync(string where, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters) =>
        database.RunAsync<IReadOnlyList<RegisteredNameRecord>>(
            async connection =>
            {
                // One round trip for the names and one for all their aliases, not one per name.
                var names = await PostgreSqlDatabase.QueryAsync(
                    connection,
                    null,
                    $"""
                    SELECT v.scope, v.name, v.version, v.model_id, (SELECT COUNT(*) FROM model_versions c WHERE c.scope = v.scope AND c.name = v.name), v.created_at
                    FROM model_versions v
                    WHERE {where} AND v.version = (SELECT MAX(l.version) FROM model_versions l WHERE l.scope = v.scope AND l.name = v.name)
                    ORDER BY v.name, v.scope
                    """,
                    static r => (Scope: r.GetString(0), Name: r.GetString(1), Latest: r.GetInt32(2), ModelId: r.GetString(3), Count: (int)r.GetInt64(4), At: r.GetInt64(5)),
                    cancellationToken,
                    parameters).ConfigureAwait(false);
                var aliases = (await PostgreSqlDatabase.QueryAsync(
                    connection,
                    null,
                    $"SELECT a.scope, a.name, a.alias, a.version, a.updated_at, a.updated_by FROM model_aliases a WHERE EXISTS (SELECT 1 FROM model_versions v WHERE v.scope = a.scope AND v.name = a.name AND {where}) ORDER BY a.alias",
                    static r => (Scope: r.GetString(0), Name: r.GetString(1), Alias: new ModelAliasRecord(r.GetString(2), r.GetInt32(3), r.GetInt64(4), r.GetString(5))),
                    cancellationToken,
                    parameters).ConfigureAwait(false)).ToLookup(a => (a.Scope, a.Name), a => a.Alias);
                return names.Select(n => new RegisteredNameRecord(n.Scope, n.Name, n.Latest, n.ModelId, n.Count, n.At, [.. aliases[(n.Scope, n.Name)]])).ToList();
            },
            cancellationToken);

    private static ModelVersionRecord ReadVersion(NpgsqlDataReader r) => new(
        r.GetString(0),
        r.GetString(1),
        r.GetInt32(2),
        r.GetString(3),
        r.IsDBNull(4) ? null : r.GetString(4),
        r.GetInt64(5),
        r.GetString(6),
        r.GetString(7));
}
