using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Atelier.Storage.Blobs;

/// <summary>
/// The stream a local pending blob is written through: a file written front to back whose bytes
/// are handed to the disk as they arrive and whose page-cache pages are given back once they are
/// on disk, keeping at most <see cref="WindowBytes"/> of the blob in the page cache.
/// <para>
/// Why: written the plain way, a large blob sits dirty in the page cache until the commit's fsync,
/// so the disk idles while the bytes arrive and then the whole blob is written at the end, and
/// every page written is a fresh one. On the virtualised hosts measured, copying into fresh pages
/// costs the kernel about 2 CPU-seconds per GiB (the first touch of guest memory is paid in the
/// copy), against about 0.2 when the same few pages are recycled; it was the largest single cost
/// of an upload. Every <see cref="StepBytes"/> the new range is queued for writeback
/// (<c>sync_file_range(WRITE)</c>, which does not wait), and the range a window behind is waited
/// for and dropped (<c>posix_fadvise(DONTNEED)</c>): its pages are clean, so they are freed, and
/// the next writes reuse them. The wait is also the backpressure that keeps a writer faster than
/// the disk from filling memory with dirty pages. The commit's fsync then has only the last
/// window left to write.
/// </para>
/// <para>
/// Durability is unchanged: nothing here replaces the commit's fsync. An error that the early
/// writeback meets (EIO, ENOSPC) is thrown here, because the kernel reports a writeback error
/// once per open file and the wait would otherwise consume the one the fsync should see.
/// Blobs smaller than the window keep all their pages cached, as before. Linux only; elsewhere
/// this is the plain file.
/// </para>
/// </summary>
internal sealed partial class WriteBehindFileStream(FileStream file) : Stream
{
    /// <summary>How much is written between two hand-offs to the disk.</summary>
    internal const long StepBytes = 8 << 20;

    /// <summary>How much of the blob's tail stays in the page cache, written back or not yet.</summary>
    internal const long WindowBytes = 64 << 20;

    private const int SyncFileRangeWaitBefore = 1;
    private const int SyncFileRangeWrite = 2;
    private const int SyncFileRangeWaitAfter = 4;
    private const int PosixFadvDontNeed = 4;

    private bool _enabled = OperatingSystem.IsLinux();
    private long _written;
    private long _queued;
    private long _dropped;

    /// <summary>The file underneath, for the commit's flush to disk.</summary>
    public FileStream File => file;

    /// <inheritdoc />
    public override bool CanRead => false;

    /// <inheritdoc />
    public override bool CanSeek => false;

    /// <inheritdoc />
    public override bool CanWrite => file.CanWrite;

    /// <inheritdoc />
    public override long Length => _written;

    /// <inheritdoc />
    public override long Position
    {
        get => _written;
        set => throw new NotSupportedException();
    }

    /// <inheritdoc />
    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    /// <inheritdoc />
    public override void Write(ReadOnlySpan<byte> buffer)
    {
        file.Write(buffer);
        Advance(buffer.Length);
    }

    /// <inheritdoc />
    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    /// <inheritdoc />
    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        await file.WriteAsync(buffer, cancellationToken).ConfigureAwait(false);
        Advance(buffer.Length);
    }

    /// <inheritdoc />
    public override void Flush() => file.Flush();

    /// <inheritdoc />
    public override Task FlushAsync(CancellationToken cancellationToken) => file.FlushAsync(cancellationToken);

    /// <inheritdoc />
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    /// <inheritdoc />
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    /// <inheritdoc />
    public override void SetLength(long value) => throw new NotSupportedException();

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            file.Dispose();
        }

        base.Dispose(disposing);
    }

    /// <inheritdoc />
    public override async ValueTask DisposeAsync()
    {
        await file.DisposeAsync().ConfigureAwait(false);
        await base.DisposeAsync().ConfigureAwait(false);
    }

    // A few system calls every StepBytes: nothing per write for the common sizes.
    private void Advance(int written)
    {
        _written += written;
        if (!_enabled || _written - _queued < StepBytes)
        {
            return;
        }

        var handle = file.SafeFileHandle;
        while (_written - _queued >= StepBytes)
        {
            if (!SyncRange(handle, _queued, StepBytes, SyncFileRangeWrite))
            {
                return;
            }

            _queued += StepBytes;
        }

        while (_queued - _dropped > WindowBytes)
        {
            if (!SyncRange(handle, _dropped, StepBytes, SyncFileRangeWaitBefore | SyncFileRangeWrite | SyncFileRangeWaitAfter))
            {
                return;
            }

            // Advice: a failure only leaves the pages cached.
            _ = Fadvise(handle, _dropped, StepBytes, PosixFadvDontNeed);
            _dropped += StepBytes;
        }
    }

    // False when the file system does not take the call (write-behind is then off for this blob);
    // an I/O error is thrown, as the fsync would have thrown it.
    private bool SyncRange(SafeFileHandle handle, long offset, long length, int flags)
    {
        if (SyncFileRange(handle, offset, length, flags) == 0)
        {
            return true;
        }

        var errno = Marshal.GetLastPInvokeError();
        if (errno is 22 or 29 or 38 or 95)
        {
            // EINVAL, ESPIPE, ENOSYS, EOPNOTSUPP: not a file system that supports it.
            _enabled = false;
            return false;
        }

        // HResult carries the errno, as the runtime's own I/O exceptions on Unix do (so a full disk
        // is recognised as one by LocalDirectoryBlobStore.IsDiskFull).
        throw new IOException($"Writing the blob back to disk failed (errno {errno}).", errno);
    }

    [LibraryImport("libc", EntryPoint = "sync_file_range", SetLastError = true)]
    private static partial int SyncFileRange(SafeFileHandle fd, long offset, long length, int flags);

    [LibraryImport("libc", EntryPoint = "posix_fadvise")]
    private static partial int Fadvise(SafeFileHandle fd, long offset, long length, int advice);
}
