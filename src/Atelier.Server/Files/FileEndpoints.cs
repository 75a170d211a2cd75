using System.Globalization;
using Atelier.Catalog;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Server.Auth;
using Atelier.Server.Errors;
using Atelier.Server.Hosting;
using Atelier.Storage.Placement;

namespace Atelier.Server.Files;

/// <summary>A file as Mistral's API returns it.</summary>
public sealed record FileObject(
    string Id,
    string Object,
    long Bytes,
    long CreatedAt,
    string Filename,
    string Purpose,
    string SampleType,
    long? NumLines,
    string? Mimetype,
    string Source,
    string? Signature,
    long? ExpiresAt,
    string? Visibility)
{
    /// <summary>The wire form of a catalog row.</summary>
    public static FileObject From(FileRecord f)
    {
        ArgumentNullException.ThrowIfNull(f);
        return new(f.Id, "file", f.Bytes, f.CreatedAt, f.Filename, f.Purpose, f.SampleType, f.NumLines, f.Mimetype, f.Source, f.Signature, f.ExpiresAt, f.Visibility);
    }
}

/// <summary><c>GET /v1/files/{id}</c>: the file plus its <c>deleted</c> flag.</summary>
public sealed record RetrievedFileObject(
    string Id, string Object, long Bytes, long CreatedAt, string Filename, string Purpose, string SampleType,
    long? NumLines, string? Mimetype, string Source, string? Signature, long? ExpiresAt, string? Visibility, bool Deleted);

/// <summary>A page of files.</summary>
public sealed record FileList(IReadOnlyList<FileObject> Data, string Object, int? Total);

/// <summary>The answer to a delete.</summary>
public sealed record DeletedFile(string Id, string Object, bool Deleted);

/// <summary>A download URL that needs no key until it expires.</summary>
public sealed record SignedUrl(string Url);

/// <summary>The form of <c>POST /v1/files</c> (for the OpenAPI document: the handler reads the parts as they stream).</summary>
/// <param name="File">The file's bytes; JSONL for <c>fine-tune</c>, each line validated.</param>
/// <param name="Purpose"><c>fine-tune</c> (the default), <c>batch</c> or <c>ocr</c>.</param>
/// <param name="Visibility">Mistral's visibility field, stored as given.</param>
/// <param name="Expiry">Hours until the file expires; none when absent.</param>
public sealed record FileUploadForm(IFormFile File, string? Purpose, string? Visibility, long? Expiry);

/// <summary>The Mistral-compatible Files API.</summary>
public static class FileEndpoints
{
    /// <summary>Maps <c>/v1/files</c>.</summary>
    public static void MapFiles(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/v1/files").WithTags("Files");

        api.MapPost("", async (HttpContext context, FileUpload upload) =>
            Results.Json(FileObject.From(await upload.HandleAsync(context).ConfigureAwait(false)), AtelierJson.Options))
            .DisableAntiforgery()
            .WithBodyKind(Errors.RequestBodyKind.Upload)
            .WithSummary("Upload a file (multipart: file, purpose, visibility, expiry).")
            .WithName("uploadFile").WithRequestBody<RouteHandlerBuilder, FileUploadForm>("multipart/form-data").Produces<FileObject>().ProducesErrors(403, 422);

        api.MapGet("", async (HttpContext context, IFileRepository files) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var query = ParseQuery(context.Request.Query);
            var (page, total) = await files.ListAsync(caller.WorkspaceId, query, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new FileList([.. page.Select(FileObject.From)], "list", total), AtelierJson.Options);
        }).WithSummary("List files, with paging and filters.").WithName("listFiles").Produces<FileList>()
            .Query("page", typeof(int), "Page number, from 0.").Query("page_size", typeof(int), "Files per page, 1 to 1000 (100).")
            .Query("include_total", typeof(bool), "Whether to count the files (true).").Query("purpose", typeof(string), "fine-tune, batch or ocr.")
            .Query("search", typeof(string), "Part of the file name.").Query("sample_type", typeof(string), "Sample types, comma-separated.")
            .Query("source", typeof(string), "Sources, comma-separated.").Query("mimetypes", typeof(string), "Media types, comma-separated.");

        api.MapGet("/{fileId}", async (HttpContext context, string fileId, IFileRepository files) =>
        {
            var f = await FindAsync(context, files, fileId).ConfigureAwait(false);
            return Results.Json(
                new RetrievedFileObject(f.Id, "file", f.Bytes, f.CreatedAt, f.Filename, f.Purpose, f.SampleType, f.NumLines, f.Mimetype, f.Source, f.Signature, f.ExpiresAt, f.Visibility, false),
                AtelierJson.Options);
        }).WithSummary("Retrieve a file's metadata.").WithName("retrieveFile").Produces<RetrievedFileObject>();

        api.MapGet("/{fileId}/content", async (HttpContext context, string fileId, IFileRepository files, ApiKeyStore keys, UrlSigner signer, PlacementGuard guard, TimeProvider clock) =>
        {
            FileRecord f;
            if (ApiKeyAuthentication.TryCaller(context) is not null)
            {
                f = await FindAsync(context, files, fileId).ConfigureAwait(false);
            }
            else
            {
                f = await VerifySignatureAsync(context, files, keys, signer, clock, fileId).ConfigureAwait(false);
            }

            var stream = await guard.OpenReadAsync(f.LocationId, f.BlobKey, context.RequestAborted).ConfigureAwait(false)
                ?? throw new StorageUnavailableException($"The bytes of file '{f.Id}' are missing from location '{f.LocationId}'.");

            return Results.Stream(stream, "application/octet-stream", f.Filename, enableRangeProcessing: true);
        }).WithSummary("Download a file's bytes.").WithName("downloadFile").ProducesBytes().WithMetadata(new SignedUrlAccessMetadata())
            .Query("expires", typeof(long), "A signed URL's expiry (Unix seconds).").Query("workspace", typeof(string), "A signed URL's workspace.")
            .Query("key_id", typeof(string), "The key that signed the URL.").Query("signature", typeof(string), "A signed URL's signature.")
            .ProducesErrors(507);

        api.MapGet("/{fileId}/url", async (HttpContext context, string fileId, IFileRepository files, UrlSigner signer, PublicAddress address, TimeProvider clock) =>
        {
            var f = await FindAsync(context, files, fileId).ConfigureAwait(false);
            var hours = 24L;
            if (context.Request.Query.TryGetValue("expiry", out var expiryText) && expiryText.Count > 0)
            {
                hours = long.TryParse(expiryText[0], NumberStyles.None, CultureInfo.InvariantCulture, out var h) && h is > 0 and <= 24 * 7
                    ? h
                    : throw new BadRequestException($"'expiry' must be a whole number of hours between 1 and {24 * 7}.");
            }

            // The URL names the key that asked for it, under the signature, so revoking that key
            // (or moving it out of the workspace) ends every URL it signed.
            var keyId = ApiKeyAuthentication.Caller(context).Key.Id;
            var expires = clock.GetUtcNow().ToUnixTimeSeconds() + (hours * 3600);
            var signature = signer.Sign(f.WorkspaceId, f.Id, expires, keyId);
            var url = $"{address.BaseUrl(context)}/v1/files/{f.Id}/content?expires={expires}&workspace={Uri.EscapeDataString(f.WorkspaceId)}&key_id={Uri.EscapeDataString(keyId)}&signature={signature}";
            return Results.Json(new SignedUrl(url), AtelierJson.Options);
        }).WithSummary("A download URL that works without a key until it expires.").WithName("getFileSignedUrl").Produces<SignedUrl>()
            .Query("expiry", typeof(int), "Hours the URL works, 1 to 168 (24).");

        api.MapDelete("/{fileId}", async (HttpContext context, string fileId, IFileRepository files, PlacementGuard guard, FreeingSpace freeing) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);

            // Row first, bytes second: a crash in between leaves an unreferenced blob, which the
            // next start removes, never a row that points at nothing.
            var f = await freeing.RunAsync(() => files.DeleteAsync(caller.WorkspaceId, fileId, context.RequestAborted)).ConfigureAwait(false)
                ?? throw new NotFoundException("file", fileId);
            await guard.DeleteAsync(new ArtifactRef("file", f.Id, caller.WorkspaceId), f.LocationId, caller.Actor, f.BlobKey, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new DeletedFile(f.Id, "file", true), AtelierJson.Options);
        }).WithSummary("Delete a file and its bytes.").WithName("deleteFile").Produces<DeletedFile>().ProducesErrors(409);
    }

    private static async Task<FileRecord> FindAsync(HttpContext context, IFileRepository files, string fileId)
    {
        var caller = ApiKeyAuthentication.Caller(context);
        return await files.GetAsync(caller.WorkspaceId, fileId, context.RequestAborted).ConfigureAwait(false) ?? throw new NotFoundException("file", fileId);
    }

    private static async Task<FileRecord> VerifySignatureAsync(HttpContext context, IFileRepository files, ApiKeyStore keys, UrlSigner signer, TimeProvider clock, string fileId)
    {
        var q = context.Request.Query;
        if (!long.TryParse(q["expires"], NumberStyles.None, CultureInfo.InvariantCulture, out var expires) || q["workspace"].Count != 1 || q["key_id"].Count != 1 || q["signature"].Count != 1)
        {
            throw new UnauthorizedException("The signed URL is malformed.");
        }

        var workspace = q["workspace"][0]!;
        var keyId = q["key_id"][0]!;
        if (!signer.IsValid(workspace, fileId, expires, keyId, q["signature"][0]!))
        {
            throw new UnauthorizedException("The URL signature is not valid.");
        }

        if (clock.GetUtcNow().ToUnixTimeSeconds() > expires)
        {
            throw new UnauthorizedException("The signed URL has expired.");
        }

        // Checked on every download, not when signing: a URL lives only as long as its key does.
        if (await keys.GetAsync(keyId, context.RequestAborted).ConfigureAwait(false) is not { RevokedAt: null } key || key.WorkspaceId != workspace)
        {
            throw new UnauthorizedException($"The API key '{keyId}' that signed this URL has been revoked or no longer belongs to the workspace, so the URL no longer works; ask for a new one with a live key.");
        }

        return await files.GetAsync(workspace, fileId, context.RequestAborted).ConfigureAwait(false) ?? throw new NotFoundException("file", fileId);
    }

    private static FileQuery ParseQuery(IQueryCollection q)
    {
        var page = Int(q, "page", 0, 0, int.MaxValue / 1000);
        var pageSize = Int(q, "page_size", 100, 1, 1000);
        var includeTotal = !q.TryGetValue("include_total", out var it) || it.Count == 0 || !string.Equals(it[0], "false", StringComparison.OrdinalIgnoreCase);
        var purpose = q.TryGetValue("purpose", out var p) && p.Count > 0 && !string.IsNullOrEmpty(p[0]) ? p[0] : null;
        if (purpose is not null and not ("fine-tune" or "batch" or "ocr"))
        {
            throw new BadRequestException($"Unknown purpose '{purpose}'; expected fine-tune, batch or ocr.", "invalid_purpose");
        }

        return new FileQuery
        {
            Page = page,
            PageSize = pageSize,
            IncludeTotal = includeTotal,
            Purpose = purpose,
            Search = q.TryGetValue("search", out var s) && s.Count > 0 ? s[0] : null,
            SampleTypes = Many(q, "sample_type"),
            Sources = Many(q, "source"),
            Mimetypes = Many(q, "mimetypes"),
        };
    }

    private static string[] Many(IQueryCollection q, string name) =>
        q.TryGetValue(name, out var values)
            ? [.. values.SelectMany(v => (v ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))]
            : [];

    private static int Int(IQueryCollection q, string name, int fallback, int min, int max)
    {
        if (!q.TryGetValue(name, out var values) || values.Count == 0 || string.IsNullOrEmpty(values[0]))
        {
            return fallback;
        }

        return int.TryParse(values[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v >= min && v <= max
            ? v
            : throw new BadRequestException($"'{name}' must be an integer between {min} and {max}, not '{values[0]}'.");
    }
}
