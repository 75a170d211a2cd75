using System.Globalization;
using System.Runtime.ExceptionServices;
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
    // 8 MiB chunks, block-aligned for direct I/O. One write of a chunk is in flight at a time, so
    // the chunk is the disk's request size: on the virtio disk measured, a stream of synchronous
    // direct writes ran at 473-484 MB/s in 1 MiB blocks, 508-617 in 4 MiB and 558-720 in 8 MiB (dd,
    // 1 GiB, two rounds), and two writes in flight were no faster than one (a Python pwrite test,
    // 2 GiB, three rounds). An upload holds at most QueuedChunks + 3 chunks: the one being
    // received, the one waiting for room in the slowest stage's queue, that queue, and the one
    // the slowest stage is working on (the faster stages work on the same chunks). Up to 8 are
    // kept for the next uploads.
    private static readonly AlignedBufferPool Chunks = new(8 << 20, maxRetained: 8);

    // Chunks waiting for each stage (disk, hash, validation): two, so a stage that falls behind
    // for a moment does not hold up the receive.
    private const int QueuedChunks = 2;

    // The nice value of the hash and validation threads (0 is the server's own; 19 the lowest).
    // Measured with 5 and 15 against the same stages at 0 (2 GiB, alternating pairs): 15 kept
    // both cores busier (idle 1.3-2.0 CPU-s an upload against 2.4-3.1) and uploaded 6-15% faster,
    // 5 about half as much; 10 is between them (decision 0015, step 5).
    private const int CpuStageNice = 10;
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

            var sampleType = file.FinishValidation(purpose);
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

    /// <summary>
    /// The file part of an upload. The request thread receives it into aligned chunks, and three
    /// stages take each chunk in order, each on whichever core is free: the disk write, the
    /// SHA-256 and the line validation. A chunk goes back to the pool when all three are done
    /// with it. A stage that fails stops the others and the receive; its error is the one reported.
    /// </summary>
    private sealed class UploadedPart(string id, string fileName, string mimetype, GuardedWrite write, JsonlValidator? validation) : IAsyncDisposable
    {
        private readonly List<Channel<Chunk>> _queues = new(3);
        private readonly List<Task> _stages = new(3);
        private readonly CancellationTokenSource _stop = new();
        private ExceptionDispatchInfo? _failure;

        public string Id => id;

        public string FileName => fileName;

        public string Mimetype => mimetype;

        public GuardedWrite Write => write;

        public JsonlValidator? Validation => validation;

        public async Task PumpAsync(Stream body, long maxBytes, CancellationToken cancel)
        {
            // The disk stage waits on the device; the hash and the validation are pure CPU and
            // have slack (each needs well under the upload's time), so they run at a lower
            // priority and take the cycles the receive (and the client beside it) leaves idle,
            // rather than making the receive wait for a core while its socket fills.
            StartStage(chunk => write.WriteUnhashedAsync(chunk, cancel).AsTask().GetAwaiter().GetResult(), "upload write", nice: 0);
            StartStage(chunk => write.AppendToHash(chunk.Span), "upload hash", CpuStageNice);
            if (validation is not null)
            {
                StartStage(chunk => validation.Append(chunk), "upload validation", CpuStageNice);
            }

            var consumers = _queues.Count;
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancel, _stop.Token);
            long received = 0;
            try
            {
                while (true)
                {
                    // Fill whole chunks: fewer, larger writes and hand-offs, and block-aligned ones,
                    // so a local blob writes every chunk but the last straight to the disk.
                    var buffer = Chunks.Rent();
                    var filled = 0;
                    try
                    {
                        int read;
                        while (filled < buffer.Length && (read = await body.ReadAsync(buffer[filled..], linked.Token).ConfigureAwait(false)) > 0)
                        {
                            filled += read;
                        }
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

                    var chunk = new Chunk(buffer, filled, consumers);
                    var handed = 0;
                    try
                    {
                        foreach (var queue in _queues)
                        {
                            await queue.Writer.WriteAsync(chunk, linked.Token).ConfigureAwait(false);
                            handed++;
                        }
                    }
                    finally
                    {
                        // The references of the stages it never reached.
                        for (var i = handed; i < consumers; i++)
                        {
                            chunk.Release();
                        }
                    }
                }
            }
            catch (OperationCanceledException) when (_stop.IsCancellationRequested && !cancel.IsCancellationRequested)
            {
                // A stage failed and stopped the receive: its error is thrown below.
            }
            catch
            {
                // The receive failed (the client, the body's framing, the size limit): nothing
                // more is written, hashed or validated.
                await StopStagesAsync(stop: true).ConfigureAwait(false);
                throw;
            }

            await StopStagesAsync().ConfigureAwait(false);
            _failure?.Throw();
            if (write.BytesWritten == 0)
            {
                throw new BadRequestException($"The file '{fileName}' is empty.", "empty_file");
            }

            validation?.Complete();
        }

        public string FinishValidation(string purpose)
        {
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
            await StopStagesAsync(stop: true).ConfigureAwait(false);
            _stop.Dispose();
            validation?.Dispose();
            await write.DisposeAsync().ConfigureAwait(false);
        }

        // Ends the stages' queues and waits until every chunk handed to them is given back. With
        // `stop`, the chunks still queued are only given back, not processed.
        private async Task StopStagesAsync(bool stop = false)
        {
            if (stop && !_stop.IsCancellationRequested)
            {
                await _stop.CancelAsync().ConfigureAwait(false);
            }

            foreach (var queue in _queues)
            {
                queue.Writer.TryComplete();
            }

            await Task.WhenAll(_stages).ConfigureAwait(false);
        }

        private void Fail(Exception e)
        {
            if (Interlocked.CompareExchange(ref _failure, ExceptionDispatchInfo.Capture(e), null) is null)
            {
                _stop.Cancel();
            }
        }

        // Starts one stage on a thread of its own, with a queue of its own that the receive hands
        // every chunk to; the stage takes them in order. Never throws: the first failure of any
        // stage is kept and stops the receive and the other stages, which then only give chunks back.
        private void StartStage(Action<ReadOnlyMemory<byte>> work, string name, int nice)
        {
            var queue = Channel.CreateBounded<Chunk>(
                new BoundedChannelOptions(QueuedChunks) { SingleReader = true, SingleWriter = true, FullMode = BoundedChannelFullMode.Wait });
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var thread = new Thread(() =>
            {
                try
                {
                    ThreadNice.Lower(nice);
                    while (queue.Reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
                    {
                        while (queue.Reader.TryRead(out var chunk))
                        {
                            try
                            {
                                if (!_stop.IsCancellationRequested)
                                {
                                    work(chunk.Bytes);
                                }
                            }
                            catch (Exception e)
                            {
                                Fail(e);
                            }
                            finally
                            {
                                chunk.Release();
                            }
                        }
                    }
                }
                catch (Exception e)
                {
                    // Nothing here may end the process: kept and reported like a stage's failure.
                    Fail(e);
                }
                finally
                {
                    done.SetResult();
                }
            })
            { IsBackground = true, Name = name };
            thread.Start();
            _queues.Add(queue);
            _stages.Add(done.Task);
        }
    }

    /// <summary>A received chunk shared by the stages; the last to give it back returns it to the pool.</summary>
    private sealed class Chunk(Memory<byte> buffer, int length, int references)
    {
        private int _references = references;

        public Memory<byte> Bytes => buffer[..length];

        public void Release()
        {
            if (Interlocked.Decrement(ref _references) == 0)
            {
                Chunks.Return(buffer);
            }
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

