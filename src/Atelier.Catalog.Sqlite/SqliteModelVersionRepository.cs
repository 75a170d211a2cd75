using Microsoft.Data.Sqlite;

namespace Atelier.Catalog.Sqlite;

/// <summary>
/// Registered model names in the SQLite catalog (tables <c>model_versions</c>, <c>model_aliases</c>,
/// <c>model_alias_history</c> and <c>model_evaluations</c> of migration 7). Every write that reads
/// first (the next version number, the version an alias moves from) runs in one write transaction
/// taken at its start, so concurrent writers are ordered instead of interleaved.
/// </summary>
public sealed class SqliteModelVersionRepository(CatalogDatabase database) : IModelVersionRepository
{
    // The status is read from the model's row at query time: archiving or deleting a model needs no
    // second write here.
    private const string VersionColumns =
        "v.scope, v.name, v.version, v.model_id, v.job_id, v.created_at, v.created_by, " +
        "CASE WHEN m.id IS NULL THEN 'deleted' WHEN m.archived <> 0 THEN 'archived' ELSE 'ready' END";

    private const string VersionFrom = "model_versions v LEFT JOIN models m ON m.id = v.model_id";

    /// <inheritdoc />
    public Task<ModelVersionRecord> AddVersionAsync(string scope, string name, string modelId, string? jobId, long createdAt, string createdBy, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(scope);
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentException.ThrowIfNullOrEmpty(modelId);
        return database.InWriteTransactionAsync(
            async (connection, transaction) =>
            {
                // The number is read and written under the write lock, so two registrations of one
                // name are numbered one after the other; a model already versioned keeps its version.
                await using (var insert = CatalogDatabase.Command(
                    connection,
                    transaction,
                    """
                    INSERT INTO model_versions(scope, name, version, model_id, job_id, created_at, created_by)
                    SELECT $scope, $name, (SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE scope = $scope AND name = $name), $model, $job, $at, $by
                    WHERE NOT EXISTS (SELECT 1 FROM model_versions WHERE model_id = $model)
                    """,
                    ("$scope", scope),
                    ("$name", name),
                    ("$model", modelId),
                    ("$job", jobId),
                    ("$at", createdAt),
                    ("$by", createdBy)))
                {
                    await insert.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }

                return (await QueryVersionsAsync(connection, transaction, "v.model_id = $model", cancellationToken, ("$model", modelId)).ConfigureAwait(false))[0];
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public async Task<ModelVersionRecord?> FindByModelAsync(string modelId, CancellationToken cancellationToken = default) =>
        (await VersionsAsync("v.model_id = $model", cancellationToken, ("$model", modelId)).ConfigureAwait(false)).FirstOrDefault();

    /// <inheritdoc />
    public async Task<ModelVersionRecord?> FindVersionAsync(string scope, string name, int version, CancellationToken cancellationToken = default) =>
        (await VersionsAsync("v.scope = $scope AND v.name = $name AND v.version = $v", cancellationToken, ("$scope", scope), ("$name", name), ("$v", version)).ConfigureAwait(false)).FirstOrDefault();

    /// <inheritdoc />
    public async Task<ModelVersionRecord?> FindByAliasAsync(string scope, string name, string alias, CancellationToken cancellationToken = default) =>
        (await VersionsAsync(
            "v.scope = $scope AND v.name = $name AND v.version = (SELECT a.version FROM model_aliases a WHERE a.scope = $scope AND a.name = $name AND a.alias = $alias)",
            cancellationToken,
            ("$scope", scope),
            ("$name", name),
            ("$alias", alias)).ConfigureAwait(false)).FirstOrDefault();

    /// <inheritdoc />
    public Task<IReadOnlyList<RegisteredNameRecord>> ListNamesAsync(IReadOnlyList<string> scopes, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(scopes);
        var names = scopes.Select((_, i) => "$s" + i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        return NamesAsync($"v.scope IN ({string.Join(", ", names)})", cancellationToken, [.. scopes.Select((s, i) => (names[i], (object?)s))]);
    }

    /// <inheritdoc />
    public async Task<RegisteredNameRecord?> FindNameAsync(string scope, string name, CancellationToken cancellationToken = default) =>
        (await NamesAsync("v.scope = $scope AND v.name = $name", cancellationToken, ("$scope", scope), ("$name", name)).ConfigureAwait(false)).FirstOrDefault();

    /// <inheritdoc />
    public Task<IReadOnlyList<ModelVersionRecord>> ListVersionsAsync(string scope, string name, CancellationToken cancellationToken = default) =>
        VersionsAsync("v.scope = $scope AND v.name = $name", cancellationToken, ("$scope", scope), ("$name", name));

    /// <inheritdoc />
    public Task<AliasMoveOutcome> MoveAliasAsync(string scope, string name, string alias, int? toVersion, string actor, string workspaceId, string? reason, long at, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(scope);
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentException.ThrowIfNullOrEmpty(alias);
        return database.InWriteTransactionAsync(
            async (connection, transaction) =>
            {
                var parameters = new (string, object?)[] { ("$scope", scope), ("$name", name), ("$alias", alias) };
                if (toVersion is { } target)
                {
                    var exists = await ScalarAsync(connection, transaction, "SELECT 1 FROM model_versions WHERE scope = $scope AND name = $name AND version = $v", cancellationToken, [.. parameters, ("$v", target)]).ConfigureAwait(false);
                    if (exists is null)
                    {
                        var any = await ScalarAsync(connection, transaction, "SELECT 1 FROM model_versions WHERE scope = $scope AND name = $name", cancellationToken, parameters).ConfigureAwait(false);
                        return new AliasMoveOutcome(any is null ? AliasMoveStatus.NotFound : AliasMoveStatus.NoSuchVersion, null);
                    }
                }

                // Read under the write lock: the move records the version it really moved from, so a
                // concurrent move either came before this one (and is its 'from') or comes after.
                var current = await ScalarAsync(connection, transaction, "SELECT version FROM model_aliases WHERE scope = $scope AND name = $name AND alias = $alias", cancellationToken, parameters).ConfigureAwait(false) is { } c
                    ? Convert.ToInt32(c, System.Globalization.CultureInfo.InvariantCulture)
                    : (int?)null;
                if (current == toVersion)
                {
                    return new AliasMoveOutcome(toVersion is null ? AliasMoveStatus.NotFound : AliasMoveStatus.Unchanged, null);
                }

                var change = toVersion is null
                    ? "DELETE FROM model_aliases WHERE scope = $scope AND name = $name AND alias = $alias"
                    : """
                      INSERT INTO model_aliases(scope, name, alias, version, updated_at, updated_by) VALUES ($scope, $name, $alias, $to, $at, $actor)
                      ON CONFLICT(scope, name, alias) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at, updated_by = excluded.updated_by
                      """;
                await using (var command = CatalogDatabase.Command(connection, transaction, change, [.. parameters, ("$to", toVersion), ("$at", at), ("$actor", actor)]))
                {
                    await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }

                var sequence = Convert.ToInt64(
                    await ScalarAsync(connection, transaction, "SELECT COALESCE(MAX(seq), 0) + 1 FROM model_alias_history WHERE scope = $scope AND name = $name AND alias = $alias", cancellationToken, parameters).ConfigureAwait(false),
                    System.Globalization.CultureInfo.InvariantCulture);
                await using (var history = CatalogDatabase.Command(
                    connection,
                    transaction,
                    """
                    INSERT INTO model_alias_history(scope, name, alias, seq, from_version, to_version, actor, workspace_id, reason, at)
                    VALUES ($scope, $name, $alias, $seq, $from, $to, $actor, $ws, $reason, $at)
                    """,
                    [.. parameters, ("$seq", sequence), ("$from", current), ("$to", toVersion), ("$actor", actor), ("$ws", workspaceId), ("$reason", reason), ("$at", at)]))
                {
                    await history.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }

                return new AliasMoveOutcome(AliasMoveStatus.Moved, new ModelAliasMove(sequence, alias, current, toVersion, actor, workspaceId, reason, at));
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<ModelAliasMove>> AliasHistoryAsync(string scope, string name, string alias, CancellationToken cancellationToken = default) =>
        await database.QueryAsync(
            "SELECT seq, alias, from_version, to_version, actor, workspace_id, reason, at FROM model_alias_history WHERE scope = $scope AND name = $name AND alias = $alias ORDER BY seq",
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
            ("$scope", scope),
            ("$name", name),
            ("$alias", alias)).ConfigureAwait(false);

    /// <inheritdoc />
    public async Task AddEvaluationAsync(ModelEvaluationRecord evaluation, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(evaluation);
        await database.ExecuteAsync(
            """
            INSERT INTO model_evaluations(id, scope, name, version, model_id, file_id, result_json, created_at, created_by)
            VALUES ($id, $scope, $name, $v, $model, $file, $result, $at, $by)
            """,
            cancellationToken,
            ("$id", evaluation.Id),
            ("$scope", evaluation.Scope),
            ("$name", evaluation.Name),
            ("$v", evaluation.Version),
            ("$model", evaluation.ModelId),
            ("$file", evaluation.FileId),
            ("$result", evaluation.ResultJson),
            ("$at", evaluation.CreatedAt),
            ("$by", evaluation.CreatedBy)).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async Task<IReadOnlyList<ModelEvaluationRecord>> ListEvaluationsAsync(string scope, string name, int version, CancellationToken cancellationToken = default) =>
        await database.QueryAsync(
            "SELECT id, scope, name, version, model_id, file_id, result_json, created_at, created_by FROM model_evaluations WHERE scope = $scope AND name = $name AND version = $v ORDER BY created_at, id",
            static r => new ModelEvaluationRecord(r.GetString(0), r.GetString(1), r.GetString(2), r.GetInt32(3), r.GetString(4), r.GetString(5), r.GetString(6), r.GetInt64(7), r.GetString(8)),
            cancellationToken,
            ("$scope", scope),
            ("$name", name),
            ("$v", version)).ConfigureAwait(false);

    private Task<IReadOnlyList<ModelVersionRecord>> VersionsAsync(string where, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters) =>
        database.RunAsync<IReadOnlyList<ModelVersionRecord>>(
            async connection => await QueryVersionsAsync(connection, null, where, cancellationToken, parameters).ConfigureAwait(false),
            cancellationToken);

    private static async Task<List<ModelVersionRecord>> QueryVersionsAsync(SqliteConnection connection, SqliteTransaction? transaction, string where, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters)
    {
        await using var command = CatalogDatabase.Command(connection, transaction, $"SELECT {VersionColumns} FROM {VersionFrom} WHERE {where} ORDER BY v.scope, v.name, v.version", parameters);
        return await CatalogDatabase.ReadAllAsync(command, ReadVersion, cancellationToken).ConfigureAwait(false);
    }

    private Task<IReadOnlyList<RegisteredNameRecord>> NamesAsync(string where, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters) =>
        database.RunAsync<IReadOnlyList<RegisteredNameRecord>>(
            async connection =>
            {
                List<(string Scope, string Name, int Latest, string ModelId, int Count, long At)> names;
                await using (var command = CatalogDatabase.Command(
                    connection,
                    null,
                    $"""
                    SELECT v.scope, v.name, v.version, v.model_id, (SELECT COUNT(*) FROM model_versions c WHERE c.scope = v.scope AND c.name = v.name), v.created_at
                    FROM model_versions v
                    WHERE {where} AND v.version = (SELECT MAX(l.version) FROM model_versions l WHERE l.scope = v.scope AND l.name = v.name)
                    ORDER BY v.name, v.scope
                    """,
                    parameters))
                {
                    names = await CatalogDatabase.ReadAllAsync(command, static r => (r.GetString(0), r.GetString(1), r.GetInt32(2), r.GetString(3), r.GetInt32(4), r.GetInt64(5)), cancellationToken).ConfigureAwait(false);
                }

                var result = new List<RegisteredNameRecord>(names.Count);
                foreach (var n in names)
                {
                    await using var aliases = CatalogDatabase.Command(
                        connection,
                        null,
                        "SELECT alias, version, updated_at, updated_by FROM model_aliases WHERE scope = $scope AND name = $name ORDER BY alias",
                        ("$scope", n.Scope),
                        ("$name", n.Name));
                    var list = await CatalogDatabase.ReadAllAsync(aliases, static r => new ModelAliasRecord(r.GetString(0), r.GetInt32(1), r.GetInt64(2), r.GetString(3)), cancellationToken).ConfigureAwait(false);
                    result.Add(new RegisteredNameRecord(n.Scope, n.Name, n.Latest, n.ModelId, n.Count, n.At, list));
                }

                return result;
            },
            cancellationToken);

    private static async Task<object?> ScalarAsync(SqliteConnection connection, SqliteTransaction transaction, string sql, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters)
    {
        await using var command = CatalogDatabase.Command(connection, transaction, sql, parameters);
        return await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
    }

    private static ModelVersionRecord ReadVersion(SqliteDataReader r) => new(
        r.GetString(0),
        r.GetString(1),
        r.GetInt32(2),
        r.GetString(3),
        r.IsDBNull(4) ? null : r.GetString(4),
        r.GetInt64(5),
        r.GetString(6),
        r.GetString(7));
}
