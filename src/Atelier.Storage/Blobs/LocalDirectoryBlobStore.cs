using Atelier.Core.Errors;
using Atelier.Core.IO;

namespace Atelier.Storage.Blobs;

/// <summary>
/// A location that is a local directory. Layout: <c>objects/&lt;key&gt;</c> for committed blobs,
/// <c>tmp/</c> for writes in progress. A write goes to a fresh file in <c>tmp/</c>, is fsynced,
/// renamed into <c>objects/</c> (atomic within one filesystem) and the directory is fsynced, so a
/// crash at any point leaves the key either absent or complete. Orphans in <c>tmp/</c> are removed
/// by <see cref="RemoveOrphansAsync"/> at start-up.
/// </summary>
public sealed class LocalDirectoryBlobStore : IBlobStore
{
    private const int ENoSpc = 28;
    private readonly string _objects;
    private readonly string _temp;

    /// <summary>Opens (and creates if needed) the store rooted at <paramref name="root"/>.</summary>
    public LocalDirectoryBlobStore(string locationId, string root)
    {
        LocationId = locationId;
        Root = Path.GetFullPath(root);
        _objects = Path.Combine(Root, "objects");
        _temp = Path.Combine(Root, "tmp");
        Directory.CreateDirectory(_objects);
        Directory.CreateDirectory(_temp);
    }

    /// <inheritdoc />
    public string LocationId { get; }

    /// <summary>The directory holding this location's bytes.</summary>
    public string Root { get; }

    /// <inheritdoc />
    public ValueTask<PendingBlob> BeginWriteAsync(string key, CancellationToken cancellationToken)
    {
        BlobKey.Validate(key);
        cancellationToken.ThrowIfCancellationRequested();
        var tempPath = Path.Combine(_temp, Guid.NewGuid().ToString("N") + ".part");
        FileStream stream;
        try
        {
            // No FileStream buffer: callers write in large chunks and the OS page cache does the rest.
            stream = new FileStream(tempPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 0, FileOptions.Asynchronous);
        }
        catch (IOException e) when (IsDiskFull(e))
        {
            throw new StorageUnavailableException($"Location '{LocationId}' is full.", e);
        }

        return ValueTask.FromResult<PendingBlob>(new LocalPendingBlob(this, key, tempPath, stream));
    }

    // The file system answers these at once; the async members below wrap them.
    private bool TryOpenRead(string key, out Stream stream)
    {
        BlobKey.Validate(key);
        try
        {
            stream = new FileStream(PathOf(key), FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, bufferSize: 1 << 16, FileOptions.Asynchronous | FileOptions.SequentialScan);
            return true;
        }
        catch (FileNotFoundException)
        {
        }
        catch (DirectoryNotFoundException)
        {
        }

        stream = Stream.Null;
        return false;
    }

    private long GetLength(string key)
    {
        BlobKey.Validate(key);
        var info = new FileInfo(PathOf(key));
        return info.Exists ? info.Length : -1;
    }

    /// <inheritdoc />
    public ValueTask<bool> DeleteAsync(string key, CancellationToken cancellationToken)
    {
        BlobKey.Validate(key);
        var path = PathOf(key);
        if (!File.Exists(path))
        {
            return ValueTask.FromResult(false);
        }

        File.Delete(path);
        AtomicFile.FsyncDirectory(Path.GetDirectoryName(path)!);
        return ValueTask.FromResult(true);
    }

    private IEnumerable<string> EnumerateKeys(string prefix)
    {
        if (!Directory.Exists(_objects))
        {
            yield break;
        }

        foreach (var file in Directory.EnumerateFiles(_objects, "*", SearchOption.AllDirectories))
        {
            var key = Path.GetRelativePath(_objects, file).Replace(Path.DirectorySeparatorChar, '/');
            if (key.StartsWith(prefix, StringComparison.Ordinal))
            {
                yield return key;
            }
        }
    }

    private int RemoveOrphans()
    {
        var removed = 0;
        foreach (var file in Directory.EnumerateFiles(_temp))
        {
            File.Delete(file);
            removed++;
        }

        return removed;
    }

    /// <inheritdoc />
    public ValueTask<Stream?> OpenReadAsync(string key, CancellationToken cancellationToken) =>
        OpenReadRangeAsync(key, 0, null, cancellationToken);

    /// <inheritdoc />
    public ValueTask<Stream?> OpenReadRangeAsync(string key, long offset, long? length, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        if (length is < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, "A range length is zero or more.");
        }

        cancellationToken.ThrowIfCancellationRequested();
        if (!TryOpenRead(key, out var file))
        {
            return ValueTask.FromResult<Stream?>(null);
        }

        if (offset == 0 && length is null)
        {
            return ValueTask.FromResult<Stream?>(file);
        }

        var start = Math.Min(offset, file.Length);
        var count = Math.Min(length ?? long.MaxValue, file.Length - start);
        file.Position = start;
        return ValueTask.FromResult<Stream?>(new RangeStream(file, count));
    }

    /// <inheritdoc />
    public ValueTask<long?> GetLengthAsync(string key, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var length = GetLength(key);
        return ValueTask.FromResult<long?>(length < 0 ? null : length);
    }

    /// <inheritdoc />
    public async IAsyncEnumerable<string> ListAsync(string prefix, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        var keys = EnumerateKeys(prefix).ToList();
        keys.Sort(StringComparer.Ordinal);
        foreach (var key in keys)
        {
            cancellationToken.ThrowIfCancellationRequested();
            yield return key;
        }

        await Task.CompletedTask.ConfigureAwait(false);
    }

    /// <inheritdoc />
    public ValueTask<int> RemoveOrphansAsync(CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return ValueTask.FromResult(RemoveOrphans());
    }

    /// <summary>The number of writes in progress or orphaned (files in <c>tmp/</c>).</summary>
    public int PendingCount => Directory.EnumerateFiles(_temp).Count();

    /// <summary>True when <paramref name="e"/> says the filesystem is full (ENOSPC).</summary>
    public static bool IsDiskFull(IOException e)
    {
        ArgumentNullException.ThrowIfNull(e);
        return (e.HResult & 0xFFFF) == ENoSpc;
    }

    private string PathOf(string key) => Path.Combine(_objects, key);

    private sealed class LocalPendingBlob(LocalDirectoryBlobStore store, string key, string tempPath, FileStream stream) : PendingBlob
    {
        // Writers see the write-behind stream; the commit flushes the file under it.
        private readonly WriteBehindFileStream _writer = new(stream);
        private bool _committed;
        private bool _disposed;

        public override string Key => key;

        public override Stream Stream => _writer;

        public override async ValueTask CommitAsync(CancellationToken cancellationToken)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            var finalPath = store.PathOf(key);
            try
            {
                await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
                await _writer.WaitForFlushBehindAsync().ConfigureAwait(false);
                stream.Flush(flushToDisk: true);
                await stream.DisposeAsync().ConfigureAwait(false);
                var directory = Path.GetDirectoryName(finalPath)!;
                Directory.CreateDirectory(directory);

                // Move without overwrite, atomically: an existing key is never replaced in place.
                if (File.Exists(finalPath))
                {
                    throw new BlobAlreadyExistsException(store.LocationId, key);
                }

                try
                {
                    AtomicFile.MoveNoReplace(tempPath, finalPath);
                }
                catch (IOException) when (File.Exists(finalPath))
                {
                    // Another writer committed the same key first.
                    throw new BlobAlreadyExistsException(store.LocationId, key);
                }

                AtomicFile.FsyncDirectory(directory);
                _committed = true;
            }
            catch (IOException e) when (IsDiskFull(e))
            {
                throw new StorageUnavailableException($"Location '{store.LocationId}' is full.", e);
            }
        }

        public override async ValueTask DisposeAsync()
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            await stream.DisposeAsync().ConfigureAwait(false);
            if (!_committed)
            {
                try
                {
                    File.Delete(tempPath);
                }
                catch (IOException)
                {
                    // Left for RemoveOrphansAsync at the next start; it is in tmp/ and invisible.
                }
            }
        }
    }

    /// <summary>A window of a file: reads stop after <c>length</c> bytes; disposing closes the file.</summary>
    private sealed class RangeStream(Stream file, long length) : Stream
    {
        private readonly long _length = length;
        private long _remaining = length;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => _length;

        public override long Position
        {
            get => _length - _remaining;
            set => throw new NotSupportedException();
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            var n = file.Read(buffer[..(int)Math.Min(buffer.Length, _remaining)]);
            _remaining -= n;
            return n;
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var n = await file.ReadAsync(buffer[..(int)Math.Min(buffer.Length, _remaining)], cancellationToken).ConfigureAwait(false);
            _remaining -= n;
            return n;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                file.Dispose();
            }

            base.Dispose(disposing);
        }
    }
}
