using Atelier.Core.Errors;

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

/// <summary>
/// The rows of uploaded files. Every query but the sweeper's and the recovery's is scoped to one
/// workspace: a row of another workspace is invisible, as if it did not exist.
/// </summary>
public interface IFileRepository
{
    /// <summary>Adds the row of a file whose bytes are already committed.</summary>
    /// <exception cref="ConflictException">The row breaks a catalog constraint (an unknown workspace, a taken id).</exception>
    Task InsertAsync(FileRecord file, CancellationToken cancellationToken = default);

    /// <summary>The live (not expired) file <paramref name="id"/> of the workspace, or null.</summary>
    Task<FileRecord?> GetAsync(string workspaceId, string id, CancellationToken cancellationToken = default);

    /// <summary>A page of the workspace's live files, newest first, and the total count when asked.</summary>
    Task<FilePage> ListAsync(string workspaceId, FileQuery query, CancellationToken cancellationToken = default);

    /// <summary>
    /// Removes the row unless a dataset version or a fine-tuning job of the workspace uses the file;
    /// returns it, or null when there was none in the workspace. The check and the removal are one
    /// atomic step, so no use recorded in between is missed.
    /// </summary>
    /// <exception cref="ConflictException">Something derives from the file (named in <see cref="ConflictException.Derived"/>); nothing was removed.</exception>
    Task<FileRecord?> DeleteAsync(string workspaceId, string id, CancellationToken cancellationToken = default);

    /// <summary>
    /// Removes the row of a file whose expiry has passed; returns it, or null when it is gone or its
    /// expiry was not reached. The uploader chose the expiry, so it applies whatever used the file:
    /// an expired file was already invisible to everything that reads files.
    /// </summary>
    Task<FileRecord?> DeleteExpiredAsync(string workspaceId, string id, CancellationToken cancellationToken = default);

    /// <summary>Files of every workspace whose expiry has passed, at most <paramref name="limit"/>, for the sweeper to remove.</summary>
    Task<IReadOnlyList<FileRecord>> ExpiredAsync(int limit, CancellationToken cancellationToken = default);

    /// <summary>Every blob key referenced at <paramref name="locationId"/>, for orphan checks.</summary>
    Task<IReadOnlySet<string>> BlobKeysAsync(string locationId, CancellationToken cancellationToken = default);
}

/// <summary>A page of a file listing.</summary>
/// <param name="Page">The files of the page, newest first.</param>
/// <param name="Total">How many match in all, when asked.</param>
public sealed record FilePage(IReadOnlyList<FileRecord> Page, int? Total);
