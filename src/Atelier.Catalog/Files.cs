using System.Globalization;
using System.Text;
using Atelier.Core.Errors;
using Microsoft.Data.Sqlite;

namespace Atelier.Catalog;

/// <summary>The catalog row of an uploaded file.</summary>
public sealed record FileRecord
{
    /// <summary>UUID.</summary>
    public required string Id { get; init; }

    /// <summary>Owning workspace.</summary>
    public required string WorkspaceId { get; init; }

    /// <summary>The name the user gave; display only, never a path.</summary>
    public required string Filename { get; init; }

    /// <summary><c>fine-tune</c>, <c>batch</c> or <c>ocr</c>.</summary>
    public required string Purpose { get; init; }

    /// <summary>Size in bytes.</summary>
    public required long Bytes { get; init; }

    /// <summary>Unix seconds.</summary>
    public required long CreatedAt { get; init; }

    /// <summary><c>instruct</c>, <c>pretrain</c>, <c>batch_request</c>, ...</summary>
    public required string SampleType { get; init; }

    /// <summary>Lines in a JSONL file.</summary>
    public long? NumLines { get; init; }

    /// <summary>The MIME type.</summary>
    public string? Mimetype { get; init; }

    /// <summary><c>upload</c>, <c>repository</c> or <c>mistral</c>.</summary>
    public string Source { get; init; } = "upload";

    /// <summary>SHA-256 of the content, lower-case hex.</summary>
    public required string Signature { get; init; }

    /// <summary><c>workspace</c> or <c>user</c>.</summary>
    public string Visibility { get; init; } = "workspace";

    /// <summary>Unix seconds after which the file is gone.</summary>
    public long? ExpiresAt { get; init; }

    /// <summary>The residency policy the file was placed under.</summary>
    public required string Policy { get; init; }

    /// <summary>Where its bytes are.</summary>
    public required string LocationId { get; init; }

    /// <summary>The blob key within that location.</summary>
    public required string BlobKey { get; init; }

    /// <summary>The API key id that uploaded it.</summary>
    public required string CreatedBy { get; init; }
}

/// <summary>Filters and paging of a file listing, as <c>GET /v1/files</c> takes them.</summary>
public sealed record FileQuery
{
    /// <summary>0-based page.</summary>
    public int Page { get; init; }

    /// <summary>Rows per page.</summary>
    public int PageSize { get; init; } = 100;

    /// <summary>Whether to count all matches.</summary>
    public bool IncludeTotal { get; init; } = true;

    /// <summary>Only these purposes.</summary>
    public string? Purpose { get; init; }

    /// <summary>A substring of the file name.</summary>
    public string? Search { get; init; }

    /// <summary>Only these sample types.</summary>
    public IReadOnlyList<string> SampleTypes { get; init; } = [];

    /// <summary>Only these sources.</summary>
    public IReadOnlyList<string> Sources { get; init; } = [];

    /// <summary>Only these MIME types.</summary>
    public IReadOnlyList<string> Mimetypes { get; init; } = [];
}

/// <summary>Files in the catalog. Every query is scoped to one workspace.</summary>
public sealed class FileCatalog(CatalogDatabase database, TimeProvider clock)
{
    /// <summary>Adds the row of a file whose bytes are already committed.</summary>
    public void Insert(FileRecord file)
    {
        ArgumentNullException.ThrowIfNull(file);
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = """
            INSERT INTO files(id, workspace_id, filename, purpose, bytes, created_at, sample_type, num_lines, mimetype,
                              source, signature, visibility, expires_at, policy, location_id, blob_key, created_by)
            VALUES ($id, $ws, $filename, $purpose, $bytes, $created, $sample, $lines, $mime,
                    $source, $sig, $vis, $expires, $policy, $loc, $key, $by)
            """;
        var p = command.Parameters;
        p.AddWithValue("$id", file.Id);
        p.AddWithValue("$ws", file.WorkspaceId);
        p.AddWithValue("$filename", file.Filename);
        p.AddWithValue("$purpose", file.Purpose);
        p.AddWithValue("$bytes", file.Bytes);
        p.AddWithValue("$created", file.CreatedAt);
        p.AddWithValue("$sample", file.SampleType);
        p.AddWithValue("$lines", (object?)file.NumLines ?? DBNull.Value);
        p.AddWithValue("$mime", (object?)file.Mimetype ?? DBNull.Value);
        p.AddWithValue("$source", file.Source);
        p.AddWithValue("$sig", file.Signature);
        p.AddWithValue("$vis", file.Visibility);
        p.AddWithValue("$expires", (object?)file.ExpiresAt ?? DBNull.Value);
        p.AddWithValue("$policy", file.Policy);
        p.AddWithValue("$loc", file.LocationId);
        p.AddWithValue("$key", file.BlobKey);
        p.AddWithValue("$by", file.CreatedBy);
        command.ExecuteNonQuery();
    }

    /// <summary>The live (not expired) file <paramref name="id"/> of the workspace, or null.</summary>
    public FileRecord? Get(string workspaceId, string id) => database.Query(
        $"SELECT {Columns} FROM files WHERE workspace_id = $ws AND id = $id AND (expires_at IS NULL OR expires_at > $now)",
        Read,
        ("$ws", workspaceId), ("$id", id), ("$now", clock.GetUtcNow().ToUnixTimeSeconds())).FirstOrDefault();

    /// <summary>A page of the workspace's live files, newest first, and the total count when asked.</summary>
    public (IReadOnlyList<FileRecord> Page, int? Total) List(string workspaceId, FileQuery query)
    {
        ArgumentNullException.ThrowIfNull(query);
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        var where = new StringBuilder("workspace_id = $ws AND (expires_at IS NULL OR expires_at > $now)");
        command.Parameters.AddWithValue("$ws", workspaceId);
        command.Parameters.AddWithValue("$now", clock.GetUtcNow().ToUnixTimeSeconds());
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
        var files = CatalogDatabase.ReadAll(command, Read);

        int? total = null;
        if (query.IncludeTotal)
        {
            command.CommandText = $"SELECT COUNT(*) FROM files WHERE {where}";
            total = Convert.ToInt32(command.ExecuteScalar(), CultureInfo.InvariantCulture);
        }

        return (files, total);
    }

    /// <summary>
    /// Removes the row unless a dataset version or a fine-tuning job of the workspace uses the file;
    /// returns it, or null when there was none in the workspace.
    /// </summary>
    /// <exception cref="ConflictException">Something derives from the file (named in <see cref="ConflictException.Derived"/>); nothing was removed.</exception>
    public FileRecord? Delete(string workspaceId, string id)
    {
        using var connection = database.Open();

        // One write transaction for the check and the delete, so no use recorded in between is missed.
        using var transaction = connection.BeginTransaction(deferred: false);
        var file = Delete(connection, transaction, "workspace_id = $ws AND id = $id", ("$ws", workspaceId), ("$id", id));
        if (file is null)
        {
            return null;
        }

        var derived = LineageCatalog.DerivedFromFile(connection, transaction, workspaceId, id);
        if (derived.Count > 0)
        {
            transaction.Rollback();
            throw ConflictException.DerivedFrom("file", id, derived);
        }

        transaction.Commit();
        return file;
    }

    /// <summary>
    /// Removes the row of a file whose expiry has passed; returns it, or null when it is gone or its
    /// expiry was not reached. The uploader chose the expiry, so it applies whatever used the file:
    /// an expired file was already invisible to everything that reads files.
    /// </summary>
    public FileRecord? DeleteExpired(string workspaceId, string id)
    {
        using var connection = database.Open();
        using var transaction = connection.BeginTransaction(deferred: false);
        var file = Delete(
            connection,
            transaction,
            "workspace_id = $ws AND id = $id AND expires_at IS NOT NULL AND expires_at <= $now",
            ("$ws", workspaceId), ("$id", id), ("$now", clock.GetUtcNow().ToUnixTimeSeconds()));
        transaction.Commit();
        return file;
    }

    /// <summary>Files whose expiry has passed, for the sweeper to remove.</summary>
    public IReadOnlyList<FileRecord> Expired(int limit) =>
        database.Query($"SELECT {Columns} FROM files WHERE expires_at IS NOT NULL AND expires_at <= $now LIMIT $limit", Read, ("$now", clock.GetUtcNow().ToUnixTimeSeconds()), ("$limit", limit));

    /// <summary>Every blob key referenced at <paramref name="locationId"/>, for orphan checks.</summary>
    public HashSet<string> BlobKeys(string locationId)
    {
        using var connection = database.Open();
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT blob_key FROM files WHERE location_id = $loc";
        command.Parameters.AddWithValue("$loc", locationId);
        using var reader = command.ExecuteReader();
        var keys = new HashSet<string>(StringComparer.Ordinal);
        while (reader.Read())
        {
            keys.Add(reader.GetString(0));
        }

        return keys;
    }

    private static FileRecord? Delete(SqliteConnection connection, SqliteTransaction transaction, string where, params (string Name, object Value)[] parameters)
    {
        using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = $"DELETE FROM files WHERE {where} RETURNING {Columns}";
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }

        return CatalogDatabase.ReadAll(command, Read).FirstOrDefault();
    }

    private const string Columns = "id, workspace_id, filename, purpose, bytes, created_at, sample_type, num_lines, mimetype, source, signature, visibility, expires_at, policy, location_id, blob_key, created_by";

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
