using System.Globalization;
using System.Text;
using Atelier.Core.Errors;
using Microsoft.Data.Sqlite;

namespace Atelier.Catalog.Sqlite;

/// <summary>The files of the SQLite catalog (table <c>files</c>).</summary>
public sealed class SqliteFileRepository(CatalogDatabase database, TimeProvider clock) : IFileRepository
{
    private const string Columns = "id, workspace_id, filename, purpose, bytes, created_at, sample_type, num_lines, mimetype, source, signature, visibility, expires_at, policy, location_id, blob_key, created_by";

    private const string Live = "(expires_at IS NULL OR expires_at > $now)";

    /// <inheritdoc />
    public Task InsertAsync(FileRecord file, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(file);
        return database.ExecuteAsync(
            $"""
            INSERT INTO files({Columns})
            VALUES ($id, $ws, $filename, $purpose, $bytes, $created, $sample, $lines, $mime,
                    $source, $sig, $vis, $expires, $policy, $loc, $key, $by)
            """,
            cancellationToken,
            ("$id", file.Id),
            ("$ws", file.WorkspaceId),
            ("$filename", file.Filename),
            ("$purpose", file.Purpose),
            ("$bytes", file.Bytes),
            ("$created", file.CreatedAt),
            ("$sample", file.SampleType),
            ("$lines", file.NumLines),
            ("$mime", file.Mimetype),
            ("$source", file.Source),
            ("$sig", file.Signature),
            ("$vis", file.Visibility),
            ("$expires", file.ExpiresAt),
            ("$policy", file.Policy),
            ("$loc", file.LocationId),
            ("$key", file.BlobKey),
            ("$by", file.CreatedBy));
    }

    /// <inheritdoc />
    public async Task<FileRecord?> GetAsync(string workspaceId, string id, CancellationToken cancellationToken = default) =>
        (await database.QueryAsync(
            $"SELECT {Columns} FROM files WHERE workspace_id = $ws AND id = $id AND {Live}",
            Read,
            cancellationToken,
            ("$ws", workspaceId), ("$id", id), ("$now", Now())).ConfigureAwait(false)).FirstOrDefault();

    /// <inheritdoc />
    public Task<FilePage> ListAsync(string workspaceId, FileQuery query, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        return database.RunAsync(
            async connection =>
            {
                await using var command = connection.CreateCommand();
                var where = new StringBuilder($"workspace_id = $ws AND {Live}");
                command.Parameters.AddWithValue("$ws", workspaceId);
                command.Parameters.AddWithValue("$now", Now());
                if (query.Purpose is not null)
                {
                    where.Append(" AND purpose = $purpose");
                    command.Parameters.AddWithValue("$purpose", query.Purpose);
                }

                if (!string.IsNullOrEmpty(query.Search))
                {
                    // instr() rather than LIKE, so % and _ in the search text are matched literally.
                    where.Append(" AND instr(lower(filename), lower($search)) > 0");
                    command.Parameters.AddWithValue("$search", query.Search);
                }

                AppendIn(command, where, "sample_type", "$st", query.SampleTypes);
                AppendIn(command, where, "source", "$src", query.Sources);
                AppendIn(command, where, "mimetype", "$mt", query.Mimetypes);

                command.CommandText = $"SELECT {Columns} FROM files WHERE {where} ORDER BY created_at DESC, id DESC LIMIT $limit OFFSET $offset";
                command.Parameters.AddWithValue("$limit", query.PageSize);
                command.Parameters.AddWithValue("$offset", (long)query.Page * query.PageSize);
                var files = await CatalogDatabase.ReadAllAsync(command, Read, cancellationToken).ConfigureAwait(false);

                int? total = null;
                if (query.IncludeTotal)
                {
                    command.CommandText = $"SELECT COUNT(*) FROM files WHERE {where}";
                    total = Convert.ToInt32(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false), CultureInfo.InvariantCulture);
                }

                return new FilePage(files, total);
            },
            cancellationToken);
    }

    /// <inheritdoc />
    public Task<FileRecord?> DeleteAsync(string workspaceId, string id, CancellationToken cancellationToken = default) =>
        database.InWriteTransactionAsync(
            async (connection, transaction) =>
            {
                // The check and the delete share the write transaction, so no use recorded in between is missed.
                var file = await DeleteAsync(connection, transaction, "workspace_id = $ws AND id = $id", cancellationToken, ("$ws", workspaceId), ("$id", id)).ConfigureAwait(false);
                if (file is null)
                {
                    return null;
                }

                var derived = await SqliteLineageRepository.DerivedFromFileAsync(connection, transaction, workspaceId, id, cancellationToken).ConfigureAwait(false);

                // Throwing leaves the transaction uncommitted: the row stays.
                return derived.Count > 0 ? throw ConflictException.DerivedFrom("file", id, derived) : file;
            },
            cancellationToken);

    /// <inheritdoc />
    public Task<FileRecord?> DeleteExpiredAsync(string workspaceId, string id, CancellationToken cancellationToken = default) =>
        database.InWriteTransactionAsync(
            (connection, transaction) => DeleteAsync(
                connection,
                transaction,
                "workspace_id = $ws AND id = $id AND expires_at IS NOT NULL AND expires_at <= $now",
                cancellationToken,
                ("$ws", workspaceId), ("$id", id), ("$now", Now())),
            cancellationToken);

    /// <inheritdoc />
    public async Task<IReadOnlyList<FileRecord>> ExpiredAsync(int limit, CancellationToken cancellationToken = default) =>
        await database.QueryAsync(
            $"SELECT {Columns} FROM files WHERE expires_at IS NOT NULL AND expires_at <= $now LIMIT $limit",
            Read,
            cancellationToken,
            ("$now", Now()), ("$limit", limit)).ConfigureAwait(false);

    /// <inheritdoc />
    public async Task<IReadOnlySet<string>> BlobKeysAsync(string locationId, CancellationToken cancellationToken = default) =>
        new HashSet<string>(
            await database.QueryAsync("SELECT blob_key FROM files WHERE location_id = $loc", static r => r.GetString(0), cancellationToken, ("$loc", locationId)).ConfigureAwait(false),
            StringComparer.Ordinal);

    private long Now() => clock.GetUtcNow().ToUnixTimeSeconds();

    private static async Task<FileRecord?> DeleteAsync(SqliteConnection connection, SqliteTransaction transaction, string where, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters)
    {
        await using var command = CatalogDatabase.Command(connection, transaction, $"DELETE FROM files WHERE {where} RETURNING {Columns}", parameters);
        return (await CatalogDatabase.ReadAllAsync(command, Read, cancellationToken).ConfigureAwait(false)).FirstOrDefault();
    }

    private static void AppendIn(SqliteCommand command, StringBuilder where, string column, string prefix, IReadOnlyList<string> values)
    {
        if (values.Count == 0)
        {
            return;
        }

        where.Append(CultureInfo.InvariantCulture, $" AND {column} IN (");
        for (var i = 0; i < values.Count; i++)
        {
            var name = prefix + i.ToString(CultureInfo.InvariantCulture);
            where.Append(i == 0 ? name : "," + name);
            command.Parameters.AddWithValue(name, values[i]);
        }

        where.Append(')');
    }

    private static FileRecord Read(SqliteDataReader r) => new()
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
