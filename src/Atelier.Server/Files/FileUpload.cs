using System.Globalization;
using System.Threading.Channels;
using Atelier.Catalog;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Data.Validation;
using Atelier.Server.Auth;
using Atelier.Server.Hosting;
using Atelier.Storage.Blobs;
using Atelier.Storage.Placement;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Net.Http.Headers;

namespace Atelier.Server.Files;

/// <summary>
/// <c>POST /v1/files</c>: streams a multipart upload to storage with constant memory. The file part
/// goes through the placement guard into a pending blob, hashed on the way, while a second task
/// validates its lines from a bounded queue of pooled buffers (so the two cores share the work).
/// The blob is committed only when the whole body is read and valid, and the catalog row is
/// written after that: a file is never visible half-written, and a failure leaves nothing.
/// </summary>
/// <param name="files">The file repository the row goes to.</param>
/// <param name="policies">Residency policies: a file gets its workspace's default.</param>
/// <param name="guard">The placement guard, the only write path.</param>
/// <param name="config">The installation's configuration: upload limits, the default location.</param>
/// <param name="clock">The clock.</param>
/// <param name="logger">The log.</param>
public sealed partial class FileUpload(IFileRepository files, PolicyCatalog policies, PlacementGuard guard, AtelierConfig config, TimeProvider clock, ILogger<FileUpload> logger)
{
    // 8 MiB chunks, block-aligned for direct I/O (see UploadedPart.PumpAsync). One write of a
    // chunk is in flight at a time, so the chunk is the disk's request size: on the virtio disk
    // measured, a stream of synchronous direct writes ran at 473-484 MB/s in 1 MiB blocks, 508-617
    // in 4 MiB and 558-720 in 8 MiB (dd, 1 GiB, two rounds). Up to 8 kept (64 MiB) for the next
    // uploads; an upload holds at most 1 + 1 + QueuedChunks + 1 of them.
    private static readonly AlignedBufferPool Chunks = new(8 << 20, maxRetained: 8);

    // Chunks waiting for the validator: 16 MiB (8 chunks of 1 MiB, 8 MiB, before): two, so the
    // writer can hand one over while the validator works on the other.
    private const int QueuedChunks = 2;
    private const int MaxFieldBytes = 4096;

    /// <summary>Handles one upload.</summary>
    public async Task<FileRecord> HandleAsync(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var caller = ApiKeyAuthentication.Caller(context);
        var request = context.Request;
        var limits = config.Files;
        var cancel = context.RequestAborted;

        if (!MediaTypeHeaderValue.TryParse(request.ContentType, out var mediaType) || !mediaType.MediaType.Equals("multipart/form-data", StringComparison.OrdinalIgnoreCase))
        {
            throw new BadRequestException("The upload must be multipart/form-data with a 'file' part.", "invalid_content_type");
        }

        var boundary = HeaderUtilities.RemoveQuotes(mediaType.Boundary).Value;
        if (string.IsNullOrEmpty(boundary))
        {
            throw new BadRequestException("The multipart/form-data content type has no boundary.", "invalid_content_type");
        }

        // Headroom for the multipart framing and the small fields around the file.
        var maxBody = limits.MaxUploadBytes + 64 * 1024;
        if (request.ContentLength > maxBody)
        {
            throw new PayloadTooLargeException(limits.MaxUploadBytes, "upload", "files.max_upload_bytes");
        }

        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } sizeFeature)
        {
            sizeFeature.MaxRequestBodySize = maxBody;
        }

        // The default 4 KiB buffer turns a large upload into hundreds of thousands of small reads.
        var reader = new MultipartReader(boundary, request.Body, bufferSize: 256 * 1024) { HeadersLengthLimit = 16 * 1024 };
        string? purpose = null;
        string? visibility = null;
        long? expiryHours = null;
        UploadedPart? file = null;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        try
        {
            MultipartSection? section;
            while ((section = await reader.ReadNextSectionAsync(cancel).ConfigureAwait(false)) is not null)
            {
                if (!ContentDispositionHeaderValue.TryParse(section.ContentDisposition, out var disposition) || !disposition.DispositionType.Equals("form-data", StringComparison.OrdinalIgnoreCase))
                {
                    throw new BadRequestException("Every multipart part needs a 'Content-Disposition: form-data' header.");
                }

                var name = HeaderUtilities.RemoveQuotes(disposition.Name).Value;
                if (name is "purpose" or "visibility" or "expiry" && !seen.Add(name))
                {
                    // Two values for one field: which one wins would be a guess, so neither does.
                    throw new BadRequestException($"The upload has more than one '{name}' part; send it once.", "duplicate_field");
                }

                switch (name)
                {
                    case "file":
                        if (file is not null)
                        {
                            throw new BadRequestException("The upload has more than one 'file' part; send one file per request.");
                        }

                        var fileName = FileNames.Validate(disposition.FileNameStar.HasValue ? disposition.FileNameStar.Value : HeaderUtilities.RemoveQuotes(disposition.FileName).Value);
                        file = await ReceiveFileAsync(section, fileName, purpose, caller, cancel).ConfigureAwait(false);
                        break;
                    case "purpose":
                        purpose = await ReadFieldAsync(section, name, cancel).ConfigureAwait(false);
                        break;
                    case "visibility":
                        visibility = await ReadFieldAsync(section, name, cancel).ConfigureAwait(false);
                        break;
                    case "expiry":
                        var expiry = await ReadFieldAsync(section, name, cancel).ConfigureAwait(false);
                        if (expiry.Length > 0 && !string.Equals(expiry, "null", StringComparison.Ordinal))
                        {
                            expiryHours = long.TryParse(expiry, NumberStyles.None, CultureInfo.InvariantCulture, out var hours) && hours is > 0 and <= 24 * 365 * 10
                                ? hours
                                : throw new BadRequestException($"'expiry' must be a whole number of hours between 1 and {24 * 365 * 10}, not '{expiry}'.");
                        }

                        break;
                    default:
                        // Unknown fields are drained and ignored, as form handlers do.
                        await section.Body.CopyToAsync(Stream.Null, cancel).ConfigureAwait(false);
                        break;
                }
            }

            if (file is null)
            {
                throw new BadRequestException("The upload has no 'file' part.", "missing_file");
            }

            purpose ??= "fine-tune";
            if (purpose is not ("fine-tune" or "batch" or "ocr"))
            {
                throw new BadRequestException($"Unknown purpose '{purpose}'; expected fine-tune, batch or ocr.", "invalid_purpose");
            }

            visibility ??= "workspace";
            if (visibility is not ("workspace" or "user"))
            {
                throw new BadRequestException($"Unknown visibility '{visibility}'; expected workspace or user.", "invalid_visibility");
            }

            var sampleType = await file.FinishValidationAsync(purpose).ConfigureAwait(false);
            var receipt = await file.Write.CommitAsync(cancel).ConfigureAwait(false);
            var now = clock.GetUtcNow().ToUnixTimeSeconds();
            var record = new FileRecord
            {
                Id = file.Id,
                WorkspaceId = caller.WorkspaceId,
                Filename = file.FileName,
                Purpose = purpose,
                Bytes = receipt.Bytes,
                CreatedAt = now,
                SampleType = sampleType,
                NumLines = file.Validation is null ? null : file.Validation.Lines,
                Mimetype = file.Mimetype,
                Source = "upload",
                Signature = receipt.Sha256,
                Visibility = visibility,
                ExpiresAt = expiryHours is { } h ? now + (h * 3600) : null,
                Policy = file.Write.Policy.Name,
                LocationId = receipt.LocationId,
                BlobKey = receipt.Key,
                CreatedBy = caller.Actor,
            };
            // Not cancelled by the client: the bytes are committed, and a row missing now would leave
            // them to the orphan sweep of the next start.
            await files.InsertAsync(record, CancellationToken.None).ConfigureAwait(false);
            LogUploaded(logger, record.Id, record.Bytes, record.Filename);
            return record;
        }
        catch (IOException e) when (Atelier.Storage.Blobs.LocalDirectoryBlobStore.IsDiskFull(e))
        {
            throw new StorageUnavailableException("The storage location is full; nothing was stored.", e);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            // A chunked body (no Content-Length) that ran past Kestrel's limit: still a 413, not a malformed body.
            throw new PayloadTooLargeException(limits.MaxUploadBytes, "upload", "files.max_upload_bytes");
        }
        catch (InvalidDataException e)
        {
            throw new BadRequestException($"The multipart body is malformed: {e.Message}");
        }
        catch (IOException e) when (!cancel.IsCancellationRequested && e is not EndOfStreamException)
        {
            // MultipartReader reports a body cut off before its closing boundary as an IOException.
            throw new BadRequestException($"The multipart body is malformed or was cut off: {e.Message}");
        }
        finally
        {
            if (file is not null)
            {
                await file.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    private async Task<UploadedPart> ReceiveFileAsync(MultipartSection section, string fileName, string? purpose, RequestCaller caller, CancellationToken cancel)
    {
        var limits = config.Files;
        // A file gets its workspace's default policy, which the operator sets.
        var governed = await policies.ForWorkspaceAsync(caller.WorkspaceId, cancel).ConfigureAwait(false);
        var policy = policies.Resolve(governed.DefaultPolicy);
        var id = ResourceIds.NewUuid(clock);

        // The guard judges the placement before a single byte is written.
        var write = await guard.BeginWriteAsync(
            new ArtifactRef("file", id, caller.WorkspaceId),
            policy,
            config.Defaults.FileLocation,
            caller.Actor,
            cancellationToken: cancel).ConfigureAwait(false);

        // The SDK sends the file before the purpose; when the purpose is not known yet, judge the
        // lines by both JSONL rule sets in the same pass and pick one at the end.
        var formats = purpose switch
        {
            "fine-tune" => JsonlFormat.FineTune,
            "batch" => JsonlFormat.Batch,
            "ocr" => (JsonlFormat)0,
            _ => JsonlFormat.FineTune | JsonlFormat.Batch,
        };
        var part = new UploadedPart(id, fileName, section.ContentType is { Length: > 0 } sent && !sent.StartsWith("application/octet-stream", StringComparison.OrdinalIgnoreCase) ? sent : GuessMimetype(fileName), write, formats == 0 ? null : new JsonlValidator(formats, limits.MaxLineBytes, fileName));
        try
        {
            await part.PumpAsync(section.Body, limits.MaxUploadBytes, cancel).ConfigureAwait(false);
        }
        catch
        {
            await part.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return part;
    }

    private static async Task<string> ReadFieldAsync(MultipartSection section, string name, CancellationToken cancel)
    {
        var buffer = new byte[MaxFieldBytes + 1];
        var total = 0;
        int read;
        while ((read = await section.Body.ReadAsync(buffer.AsMemory(total), cancel).ConfigureAwait(false)) > 0)
        {
            total += read;
            if (total > MaxFieldBytes)
            {
                throw new BadRequestException($"The '{name}' field is longer than {MaxFieldBytes} bytes.");
            }
        }

        return System.Text.Encoding.UTF8.GetString(buffer, 0, total).Trim();
    }

    private static string GuessMimetype(string fileName) =>
        Path.GetExtension(fileName).ToLowerInvariant() switch
        {
            ".jsonl" => "application/jsonl",
            ".json" => "application/json",
            ".pdf" => "application/pdf",
            ".txt" => "text/plain",
            ".png" => "image/png",
            ".jpg" or ".jpeg" => "image/jpeg",
            _ => "application/octet-stream",
        };

    [LoggerMessage(Level = LogLevel.Information, Message = "Stored file {FileId} ({Bytes} bytes, '{FileName}')")]
    private static partial void LogUploaded(ILogger logger, string fileId, long bytes, string fileName);

    /// <summary>The file part of an upload: its pending write and its validation running beside it.</summary>
    private sealed class UploadedPart(string id, string fileName, string mimetype, GuardedWrite write, JsonlValidator? validation) : IAsyncDisposable
    {
        private readonly Channel<Memory<byte>> _queue = Channel.CreateBounded<Memory<byte>>(
            new BoundedChannelOptions(QueuedChunks) { SingleReader = true, SingleWriter = true, FullMode = BoundedChannelFullMode.Wait });

        private Task? _validating;

        public string Id => id;

        public string FileName => fileName;

        public string Mimetype => mimetype;

        public GuardedWrite Write => write;

        public JsonlValidator? Validation => validation;

        public async Task PumpAsync(Stream body, long maxBytes, CancellationToken cancel)
        {
            if (validation is not null)
            {
                _validating = Task.Run(ValidateQueuedAsync, CancellationToken.None);
            }

            // Each chunk is written (hashed, handed to the disk, then queued for validation) on
            // another thread while the next one is received, so receiving, hashing, the disk write
            // and validation each run on whichever core is free instead of one after another on
            // the request thread. One write at a time, in order: the next waits for this one.
            // Chunks are block-aligned pooled memory and filled whole, so a local blob writes every
            // one but the last straight to the disk (direct I/O, no page-cache copy); the hash and
            // the validation read the same memory.
            var writing = Task.CompletedTask;
            long received = 0;
            try
            {
                while (true)
                {
                    var buffer = Chunks.Rent();
                    var filled = 0;
                    try
                    {
                        // Fill whole chunks: fewer, larger writes and hand-offs.
                        int read;
                        while (filled < buffer.Length && (read = await body.ReadAsync(buffer[filled..], cancel).ConfigureAwait(false)) > 0)
                        {
                            filled += read;
                        }

                        await writing.ConfigureAwait(false);
                    }
                    catch
                    {
                        Chunks.Return(buffer);
                        throw;
                    }

                    if (filled == 0)
                    {
                        Chunks.Return(buffer);
                        break;
                    }

                    received += filled;
                    if (received > maxBytes)
                    {
                        Chunks.Return(buffer);
                        throw new PayloadTooLargeException(maxBytes);
                    }

                    var chunk = buffer[..filled];
                    writing = Task.Run(() => WriteChunkAsync(chunk, cancel), CancellationToken.None);
                }
            }
            finally
            {
                // A receive that failed must not leave a write running on a blob about to be
                // disposed; the receive's error is the one reported.
                await writing.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                _queue.Writer.TryComplete();
            }

            if (write.BytesWritten == 0)
            {
                throw new BadRequestException($"The file '{fileName}' is empty.", "empty_file");
            }
        }

        public async Task<string> FinishValidationAsync(string purpose)
        {
            if (_validating is not null)
            {
                await _validating.ConfigureAwait(false);
            }

            if (purpose == "ocr" || validation is null)
            {
                return "ocr_input";
            }

            var format = purpose == "batch" ? JsonlFormat.Batch : JsonlFormat.FineTune;
            validation.ThrowIfInvalid(format);
            return validation.SampleType(format);
        }

        public async ValueTask DisposeAsync()
        {
            _queue.Writer.TryComplete();
            if (_validating is not null)
            {
                try
                {
                    await _validating.ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                }
            }

            // Return any buffers the validator did not get to.
            while (_queue.Reader.TryRead(out var chunk))
            {
                Chunks.Return(chunk);
            }

            validation?.Dispose();
            await write.DisposeAsync().ConfigureAwait(false);
        }

        private async Task WriteChunkAsync(Memory<byte> chunk, CancellationToken cancel)
        {
            try
            {
                await write.WriteAsync(chunk, cancel).ConfigureAwait(false);
                if (validation is not null)
                {
                    // The validator returns the chunk to the pool once it has read it.
                    await _queue.Writer.WriteAsync(chunk, cancel).ConfigureAwait(false);
                    return;
                }
            }
            catch
            {
                Chunks.Return(chunk);
                throw;
            }

            Chunks.Return(chunk);
        }

        private async Task ValidateQueuedAsync()
        {
            await foreach (var chunk in _queue.Reader.ReadAllAsync().ConfigureAwait(false))
            {
                validation!.Append(chunk);
                Chunks.Return(chunk);
            }

            validation!.Complete();
        }
    }
}

/// <summary>User-given file names: kept for display, never used as paths.</summary>
public static class FileNames
{
    /// <summary>Returns the name when it is acceptable, else throws a 400 saying why.</summary>
    public static string Validate(string? name)
    {
        if (string.IsNullOrWhiteSpace(name))
        {
            throw new BadRequestException("The 'file' part has no file name.", "invalid_filename");
        }

        if (name.Length > 255)
        {
            throw new BadRequestException("The file name is longer than 255 characters.", "invalid_filename");
        }

        if (name.Contains('/') || name.Contains('\\') || name == "." || name.Contains("..", StringComparison.Ordinal))
        {
            throw new BadRequestException($"The file name '{name}' contains a path separator or '..'; send a plain file name.", "invalid_filename");
        }

        foreach (var c in name)
        {
            if (char.IsControl(c))
            {
                throw new BadRequestException("The file name contains control characters.", "invalid_filename");
            }
        }

        return name;
    }
}
