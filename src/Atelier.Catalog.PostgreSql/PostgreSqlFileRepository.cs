using System.Text;
using Atelier.Core.Errors;
using Npgsql;

namespace Atelier.Catalog.PostgreSql;

/// <summary>The files of the PostgreSQL catalog (table <c>files</c>).</summary>
public sealed class PostgreSqlFileRepository(PostgreSqlDatabase database, TimeProvider clock) : IFileRepository
{
    private const string Columns = "id, workspace_id, filename, purpose, bytes, created_at, sample_type, num_lines, mimetype, source, signature, visibility, expires_at, policy, location_id, blob_key, created_by";

    private const string Live = "(expires_at IS NULL OR expires_at > @now)";

    /// <inheritdoc />
    public Task InsertAsync(FileRecord file, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(file);
        return database.ExecuteAsync(
            $"""
            INSERT INTO files({Columns})
            VALUES (@id, @ws, @filename, @purpose, @bytes, @created, @sample, @lines, @mime,
                    @source, @sig, @vis, @expires, @policy, @loc, @key, @by)
            """,
            cancellationToken,
            ("id", file.Id),
            ("ws", file.WorkspaceId),
            ("filename", file.Filename),
            ("purpose", file.Purpose),
            ("bytes", file.Bytes),
            ("created", file.CreatedAt),
            ("sample", file.SampleType),
            ("lines", file.NumLines),
            ("mime", file.Mimetype),
            ("source", file.Source),
            ("sig", file.Signature),
            ("vis", file.Visibility),
            ("expires", file.ExpiresAt),
            ("policy", file.Policy),
            ("loc", file.LocationId),
            ("key", file.BlobKey),
            ("by", file.CreatedBy));
    }

    /// <inheritdoc />
    public async Task<FileRecord?> GetAsync(string workspaceId, string id, CancellationToken cancellationToken = default) =>
        (await database.QueryAsync(
            $"SELECT {Columns} FROM files WHERE workspace_id = @ws AND id = @id AND {Live}",
            Read,
            cancellationToken,
            ("ws", workspaceId), ("id", id), ("now", Now())).ConfigureAwait(false)).FirstOrDefault();

    /// <inheritdoc />
    public Task<FilePage> ListAsync(string workspaceId, FileQuery query, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        var where = new StringBuilder($"workspace_id = @ws AND {Live}");
        var parameters = new List<(string, object?)> { ("ws", workspaceId), ("now", Now()) };
        if (query.Purpose is not null)
        {
            where.Append(" AND purpose = @purpose");
            parameters.Add(("purpose", query.Purpose));
        }

        if (!string.IsNullOrEmpty(query.Search))
        {
            // strpos() rather than LIKE, so % and _ in the search text are matched literally.
            where.Append(" AND strpos(lower(filename), lower(@search)) > 0");
            parameters.Add(("search", query.Search));
        }

        AppendAny(where, parameters, "sample_type", "st", query.SampleTypes);
        AppendAny(where, parameters, "source", "src", query.Sources);
        AppendAny(where, parameters, "mimetype", "mt", query.Mimetypes);
        return database.RunAsync(
            async connection =>
            {
                var files = await PostgreSqlDatabase.QueryAsync(
                    connection,
                    null,
                    $"SELECT {Columns} FROM files WHERE {where} ORDER BY created_at DESC, id DESC LIMIT @limit OFFSET @offset",
                    Read,
                    cancellationToken,
                    [.. parameters, ("limit", (long)query.PageSize), ("offset", (long)query.Page * query.PageSize)]).ConfigureAwait(false);
                int? total = null;
                if (query.IncludeTotal)
                {
                    total = (int)(await PostgreSqlDatabase.QueryAsync(connection, null, $"SELECT COUNT(*) FROM files WHERE {where}", static r => r.GetInt64(0), cancellationToken, [.. parameters]).ConfigureAwait(false))[0];
                }

                return new FilePage(files, total);
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<FileRecord?> DeleteAsync(string workspaceId, string id, CancellationToken cancellationToken = default) =>
        database.InTransactionAsync(
            async (connection, transaction) =>
            {
                // Exclusive on the workspace's lineage lock: a dataset or job naming the file is either
                // committed before the check below reads (and refuses the delete) or waits for this
                // transaction to end.
                await PostgreSqlDatabase.LockAsync(connection, transaction, CatalogLock.Lineage, workspaceId, shared: false, cancellationToken).ConfigureAwait(false);
                var file = await DeleteAsync(connection, transaction, "workspace_id = @ws AND id = @id", cancellationToken, ("ws", workspaceId), ("id", id)).ConfigureAwait(false);
                if (file is null)
                {
                    return null;
                }

                var derived = await PostgreSqlLineageRepository.DerivedFromFileAsync(connection, transaction, workspaceId, id, cancellationToken).ConfigureAwait(false);

                // Throwing rolls the transaction back: the row stays.
                return derived.Count > 0 ? throw ConflictException.DerivedFrom("file", id, derived) : file;
            },
            cancellationToken);

    /// <inheritdoc />
    public async Task<FileRecord?> DeleteExpiredAsync(string workspaceId, string id, CancellationToken cancellationToken = default) =>
        (await database.QueryAsync(
            $"DELETE FROM files WHERE workspace_id = @ws AND id = @id AND expires_at IS NOT NULL AND expires_at <= @now RETURNING {Columns}",
            Read,
            cancellationToken,
            ("ws", workspaceId), ("id", id), ("now", Now())).ConfigureAwait(false)).FirstOrDefault();

    /// <inheritdoc />
    public async Task<IReadOnlyList<FileRecord>> ExpiredAsync(int limit, CancellationToken cancellationToken = default) =>
        await database.QueryAsync(
            $"SELECT {Columns} FROM files WHERE expires_at IS NOT NULL AND expires_at <= @now LIMIT @limit",
            Read,
            cancellationToken,
            ("now", Now()), ("limit", (long)limit)).ConfigureAwait(false);

    /// <inheritdoc />
    public async Task<IReadOnlySet<string>> BlobKeysAsync(string locationId, CancellationToken cancellationToken = default) =>
        new HashSet<string>(
            await database.QueryAsync("SELECT blob_key FROM files WHERE location_id = @loc", static r => r.GetString(0), cancellationToken, ("loc", locationId)).ConfigureAwait(false),
            StringComparer.Ordinal);

    private long Now() => clock.GetUtcNow().ToUnixTimeSeconds();

    private static async Task<FileRecord?> DeleteAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, string where, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters) =>
        (await PostgreSqlDatabase.QueryAsync(connection, transaction, $"DELETE FROM files WHERE {where} RETURNING {Columns}", Read, cancellationToken, parameters).ConfigureAwait(false)).FirstOrDefault();

    private static void AppendAny(StringBuilder where, List<(string, object?)> parameters, string column, string name, IReadOnlyList<string> values)
    {
        if (values.Count == 0)
        {
            return;
        }

        where.Append(System.Globalization.CultureInfo.InvariantCulture, $" AND {column} = ANY(@{name})");
        parameters.Add((name, values.ToArray()));
    }

    private static FileRecord Read(NpgsqlDataReader r) => new()
    {
        Id = r.GetString(0),
        WorkspaceId = r.GetString(1),
        Filename = r.GetString(2),
        Purpose = r.GetString(3),
        Bytes = r.GetInt64(4),
        CreatedAt = r.GetInt64(5),
        SampleType = r.GetString(6),
        NumLines = r.IsDBNull(7) ? null : r.GetInt64(7),
        Mimetype = r.IsDBNull(8) ? null : r.GetString(8),
        Source = r.GetString(9),
        Signature = r.GetString(10),
        Visibility = r.GetString(11),
        ExpiresAt = r.IsDBNull(12) ? null : r.GetInt64(12),
        Policy = r.GetString(13),
        LocationId = r.GetString(14),
        BlobKey = r.GetString(15),
        CreatedBy = r.GetString(16),
    };
}
