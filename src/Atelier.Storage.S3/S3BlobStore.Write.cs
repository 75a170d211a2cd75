using System.Net;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using Atelier.Storage.Blobs;

namespace Atelier.Storage.S3;

public sealed partial class S3BlobStore
{
    /// <inheritdoc />
    /// <remarks>Starts the multipart upload now: a process killed before the commit leaves an upload the orphan sweep finds.</remarks>
    public async ValueTask<PendingBlob> BeginWriteAsync(string key, CancellationToken cancellationToken)
    {
        BlobKey.Validate(key);
        var objectKey = _prefix + key;
        var upload = await _client.InitiateMultipartUploadAsync(new InitiateMultipartUploadRequest { BucketName = _options.Bucket, Key = objectKey }, cancellationToken).ConfigureAwait(false);
        _inProgress.TryAdd(upload.UploadId, 0);
        return new S3PendingBlob(this, key, objectKey, upload.UploadId);
    }

    private static bool IsTaken(AmazonS3Exception e) =>

        // 412: the If-None-Match condition failed. 409: S3 refuses one of two conditional writes racing on a key.
        e.StatusCode is HttpStatusCode.PreconditionFailed or HttpStatusCode.Conflict;

    /// <summary>
    /// A write in progress: a multipart upload, with the part being filled in memory. Parts are
    /// uploaded as they fill; the commit makes the whole blob visible at once, or fails with
    /// <see cref="BlobAlreadyExistsException"/> when the key exists.
    /// </summary>
    private sealed class S3PendingBlob : PendingBlob
    {
        private readonly S3BlobStore _store;
        private readonly string _objectKey;
        private readonly string _uploadId;
        private readonly PartStream _stream;
        private readonly List<PartETag> _parts = [];
        private bool _finished;

        // Parts upload while the caller fills the next, several at once: one RGW request writes its
        // stripes one after another, so a single part in flight leaves the OSD waiting on latency.
        private readonly Queue<(Task Upload, MemoryStream Buffer)> _inFlight = new();
        private int _partsStarted;

        public S3PendingBlob(S3BlobStore store, string key, string objectKey, string uploadId)
        {
            _store = store;
            Key = key;
            _objectKey = objectKey;
            _uploadId = uploadId;
            _stream = new PartStream(this);
        }

        public override string Key { get; }

        public override Stream Stream => _stream;

        internal int PartSize => _store._options.PartSize;

        /// <summary>
        /// Starts uploading <paramref name="full"/>, first waiting for the oldest part in flight when
        /// <see cref="S3BlobStoreOptions.PartsInFlight"/> are, and returns an empty buffer for the
        /// next part. A failed upload surfaces here or at the commit.
        /// </summary>
        internal async ValueTask<MemoryStream> SendPartAsync(MemoryStream full, CancellationToken cancellationToken)
        {
            var spare = _inFlight.Count >= _store._options.PartsInFlight ? await WaitForOldestPartAsync().ConfigureAwait(false) : new MemoryStream();
            var number = ++_partsStarted;
            _inFlight.Enqueue((UploadPartAsync(full, number, cancellationToken), full));
            return spare;
        }

        /// <summary>Waits for the oldest part in flight and returns its buffer emptied.</summary>
        private async ValueTask<MemoryStream> WaitForOldestPartAsync()
        {
            var (upload, buffer) = _inFlight.Dequeue();
            try
            {
                await upload.ConfigureAwait(false);
            }
            catch
            {
                buffer.Dispose();
                throw;
            }

            buffer.SetLength(0);
            return buffer;
        }

        /// <summary>Waits for every part in flight; the first failure is thrown once all have ended.</summary>
        private async ValueTask WaitForAllPartsAsync()
        {
            Exception? failure = null;
            while (_inFlight.Count > 0)
            {
                try
                {
                    (await WaitForOldestPartAsync().ConfigureAwait(false)).Dispose();
                }
                catch (Exception e) when (e is AmazonServiceException or HttpRequestException or IOException or OperationCanceledException)
                {
                    failure ??= e;
                }
            }

            if (failure is not null)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
            }
        }

        private async Task UploadPartAsync(MemoryStream part, int number, CancellationToken cancellationToken)
        {
            // A read-only view of the buffer: the SDK may close the stream it is given.
            using var body = new MemoryStream(part.GetBuffer(), 0, (int)part.Length, writable: false);
            var response = await _store._client.UploadPartAsync(
                new UploadPartRequest
                {
                    BucketName = _store._options.Bucket,
                    Key = _objectKey,
                    UploadId = _uploadId,
                    PartNumber = number,
                    InputStream = body,
                    PartSize = body.Length,
                    UseChunkEncoding = false,
                },
                cancellationToken).ConfigureAwait(false);

            // Parts finish in any order; the commit sorts them by number.
            lock (_parts)
            {
                _parts.Add(new PartETag(number, response.ETag));
            }
        }

        public override async ValueTask CommitAsync(CancellationToken cancellationToken)
        {
            ObjectDisposedException.ThrowIf(_finished, this);
            var client = _store._client;
            var bucket = _store._options.Bucket;
            var last = _stream.Part;
            try
            {
                if (_partsStarted == 0)
                {
                    // One part at most: a single PUT, conditional on the server, is the commit. The
                    // multipart upload only marked the write as started; it is aborted below.
                    last.Position = 0;
                    await client.PutObjectAsync(
                        new PutObjectRequest
                        {
                            BucketName = bucket,
                            Key = _objectKey,
                            InputStream = last,
                            IfNoneMatch = "*",
                            UseChunkEncoding = false,
                            AutoCloseStream = false,
                        },
                        cancellationToken).ConfigureAwait(false);
                }
                else
                {
                    if (last.Length > 0)
                    {
                        _stream.Part = await SendPartAsync(last, cancellationToken).ConfigureAwait(false);
                    }

                    await WaitForAllPartsAsync().ConfigureAwait(false);
                    _parts.Sort((a, b) => a.PartNumber.GetValueOrDefault().CompareTo(b.PartNumber.GetValueOrDefault()));

                    // Servers that honour If-None-Match on completion (AWS S3) make the create
                    // conditional by themselves; for those that ignore it (Ceph RGW 16) the HEAD
                    // narrows the window in which a second writer could replace the first to the
                    // time between the two requests.
                    if (await _store.HeadAsync(_objectKey, cancellationToken).ConfigureAwait(false) is not null)
                    {
                        throw new BlobAlreadyExistsException(_store.LocationId, Key);
                    }

                    var complete = new CompleteMultipartUploadRequest { BucketName = bucket, Key = _objectKey, UploadId = _uploadId, IfNoneMatch = "*" };
                    complete.AddPartETags(_parts);
                    await client.CompleteMultipartUploadAsync(complete, cancellationToken).ConfigureAwait(false);
                    _store._inProgress.TryRemove(_uploadId, out _);
                }
            }
            catch (AmazonS3Exception e) when (IsTaken(e))
            {
                throw new BlobAlreadyExistsException(_store.LocationId, Key);
            }

            _finished = true;
            await DisposeAsync().ConfigureAwait(false);
        }

        public override async ValueTask DisposeAsync()
        {
            if (_stream.Disposed)
            {
                return;
            }

            try
            {
                // Aborting while a part still uploads could leave that part behind the abort.
                await WaitForAllPartsAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is AmazonServiceException or HttpRequestException or IOException or OperationCanceledException)
            {
                // The write is thrown away; its failure was (or will never be) reported by a write or the commit.
            }

            _stream.Release();
            if (_store._inProgress.TryRemove(_uploadId, out _))
            {
                // Not completed (thrown away, refused, or committed by a single PUT): its parts go.
                // A failure here leaves the upload to the orphan sweep, once it is old enough.
                try
                {
                    await _store.AbortAsync(_objectKey, _uploadId, CancellationToken.None).ConfigureAwait(false);
                }
                catch (AmazonS3Exception)
                {
                }
                catch (HttpRequestException)
                {
                }
            }

            _finished = true;
        }
    }

    /// <summary>
    /// What a caller writes into: fills the current part in memory and, when it reaches the part
    /// size, starts its upload and fills another while it runs. Writes are sequential, as on a
    /// file; a write that must wait for the previous part's upload waits (a synchronous one blocks).
    /// </summary>
    private sealed class PartStream(S3PendingBlob owner) : Stream
    {
        private long _written;

        public MemoryStream Part { get; set; } = new();

        public bool Disposed { get; private set; }

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => !Disposed;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => _written;
            set => throw new NotSupportedException();
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            ObjectDisposedException.ThrowIf(Disposed, this);
            while (!buffer.IsEmpty)
            {
                var take = Math.Min(buffer.Length, owner.PartSize - (int)Part.Length);
                Part.Write(buffer[..take]);
                _written += take;
                buffer = buffer[take..];
                if (Part.Length == owner.PartSize)
                {
                    // A caller that writes synchronously waits for the network, as it would for a disk.
                    Part = owner.SendPartAsync(Part, CancellationToken.None).AsTask().GetAwaiter().GetResult();
                }
            }
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            ObjectDisposedException.ThrowIf(Disposed, this);
            while (!buffer.IsEmpty)
            {
                var take = Math.Min(buffer.Length, owner.PartSize - (int)Part.Length);
                Part.Write(buffer.Span[..take]);
                _written += take;
                buffer = buffer[take..];
                if (Part.Length == owner.PartSize)
                {
                    Part = await owner.SendPartAsync(Part, cancellationToken).ConfigureAwait(false);
                }
            }
        }

        // Bytes reach the server only as whole parts or at the commit; flushing has nothing to send early.
        public override void Flush()
        {
        }

        public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public void Release()
        {
            Disposed = true;
            Part.Dispose();
        }

        // The pending blob owns the buffer: a caller disposing the stream does not throw the write away.
        protected override void Dispose(bool disposing)
        {
        }
    }
}
