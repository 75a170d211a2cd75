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
/// <para>
/// Direct I/O (decision 0015, third step): a write whose memory starts on a 4 KiB boundary, at a
/// file offset on one, goes straight from that memory to the disk (<c>O_DIRECT</c>) for all its
/// whole 4 KiB blocks: no copy into the page cache at all, and so no pages to write back or drop.
/// Callers get such memory from <see cref="AlignedBufferPool"/>; the upload path receives into it.
/// Every other write (unaligned memory or offset, and the last partial block of a blob) goes
/// through the page cache as above, the descriptor's <c>O_DIRECT</c> flag switched off again with
/// <c>fcntl</c>, so a blob that ends mid-block needs no padding or truncation, and a caller that
/// writes ordinary arrays sees no change. A file system that refuses <c>O_DIRECT</c> (EINVAL, as
/// tmpfs did before Linux 6.6) leaves the stream on the page-cache path for the rest of the blob.
/// All writes are positional (<c>pwrite</c> at the running length), so the two paths never
/// disagree about where the next byte goes. The commit's fsync covers both: it flushes the cached
/// tail and the device's own cache.
/// </para>
/// <para>
/// Flush-behind (decision 0015, fourth step): a write acknowledged by the device may still sit in
/// the device's volatile cache (a virtual disk's host page cache, a drive's write cache), and the
/// commit's fsync used to drain all of it at the end: on the virtio disk measured, 0.3 to 1.5 s of
/// a 2 GiB upload, with nothing else left to overlap it. So every <see cref="DeviceFlushStepBytes"/>
/// a flush of the file (<c>fdatasync</c>) starts on a thread of its own while the writes go on,
/// one at a time, and the commit's fsync has only the bytes since the last one left. Durability is
/// unchanged (the commit still fsyncs); an error such a flush meets is kept and thrown by the next
/// write or by <see cref="WaitForFlushBehindAsync"/>, since the kernel reports it only once.
/// </para>
/// </summary>
internal sealed partial class WriteBehindFileStream(FileStream file, long deviceFlushStepBytes = WriteBehindFileStream.DeviceFlushStepBytes) : Stream
{
    /// <summary>How much is written between two hand-offs to the disk.</summary>
    internal const long StepBytes = 8 << 20;

    /// <summary>How much of the blob's tail stays in the page cache, written back or not yet.</summary>
    internal const long WindowBytes = 64 << 20;

    /// <summary>How much is written between the starts of two background flushes of the device's cache (by default).</summary>
    internal const long DeviceFlushStepBytes = 128 << 20;

    private const int SyncFileRangeWaitBefore = 1;
    private const int SyncFileRangeWrite = 2;
    private const int SyncFileRangeWaitAfter = 4;
    private const int PosixFadvDontNeed = 4;

    private const int FcntlGetFlags = 3;
    private const int FcntlSetFlags = 4;
    private const int EInval = 22;

    // O_DIRECT differs between architectures (asm-generic: 0x4000; arm and arm64: 0x10000). Zero:
    // an architecture not listed, where direct I/O is never tried.
    private static readonly int ODirect = !OperatingSystem.IsLinux() ? 0 : RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 or Architecture.X86 => 0x4000,
        Architecture.Arm64 or Architecture.Arm => 0x10000,
        _ => 0,
    };

    private bool _enabled = OperatingSystem.IsLinux();
    private bool _directRefused = ODirect == 0;
    private bool _directOn;
    private long _written;
    private long _queued;
    private long _dropped;
    private long _flushStartedAt;
    private Task _flushBehind = Task.CompletedTask;

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
        var handle = file.SafeFileHandle;
        var direct = DirectLength(buffer.Length);
        if (direct > 0)
        {
            // Pinned for the check and the write, so the address checked is the one written from.
            unsafe
            {
                fixed (byte* start = buffer)
                {
                    if (IsAligned(start) && SetDirect(handle, true) && TryWriteDirect(handle, buffer[..direct]))
                    {
                        Advance(direct);
                        buffer = buffer[direct..];
                    }
                }
            }
        }

        if (buffer.Length > 0)
        {
            SetDirect(handle, false);
            RandomAccess.Write(handle, buffer, _written);
            Advance(buffer.Length);
        }
    }

    /// <inheritdoc />
    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    /// <inheritdoc />
    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var handle = file.SafeFileHandle;
        var direct = DirectLength(buffer.Length);
        if (direct > 0)
        {
            // Pinned across the write: a managed array that is not on the pinned heap must not
            // move between the alignment check and the system call.
            using var pin = buffer.Pin();
            if (IsAligned(pin) && SetDirect(handle, true))
            {
                var written = true;
                try
                {
                    await RandomAccess.WriteAsync(handle, buffer[..direct], _written, cancellationToken).ConfigureAwait(false);
                }
                catch (IOException e) when (e.HResult == EInval)
                {
                    // The file system took the flag but not this write: the page cache instead, for
                    // the rest of the blob. Rewriting the same bytes at the same offset is harmless.
                    RefuseDirect(handle);
                    written = false;
                }

                if (written)
                {
                    DirectBytes += direct;
                    Advance(direct);
                    buffer = buffer[direct..];
                }
            }
        }

        if (buffer.Length > 0)
        {
            SetDirect(handle, false);
            await RandomAccess.WriteAsync(handle, buffer, _written, cancellationToken).ConfigureAwait(false);
            Advance(buffer.Length);
        }
    }

    /// <summary>Bytes written with direct I/O so far (the tests check which path a write took).</summary>
    internal long DirectBytes { get; private set; }

    /// <summary>Background flushes of the device's cache started so far (the tests check them).</summary>
    internal int FlushesBehind { get; private set; }

    /// <summary>
    /// Waits for the background flush in flight, if any, and throws the error it met. The commit
    /// calls it before its own fsync.
    /// </summary>
    public Task WaitForFlushBehindAsync() => _flushBehind;

    /// <summary>True once the file system refused direct I/O for this blob.</summary>
    internal bool DirectRefused => _directRefused && ODirect != 0;

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
            // The flush holds a reference on the handle for its system call, so closing now is
            // safe; its outcome no longer matters to a blob being dropped.
            file.Dispose();
        }

        base.Dispose(disposing);
    }

    /// <inheritdoc />
    public override async ValueTask DisposeAsync()
    {
        await _flushBehind.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        await file.DisposeAsync().ConfigureAwait(false);
        await base.DisposeAsync().ConfigureAwait(false);
    }

    // How much of a write of `length` bytes at the current offset could go direct: its whole
    // blocks, when the offset is on a block boundary. The memory's alignment is checked apart.
    private int DirectLength(int length) =>
        _directRefused || (_written & (AlignedBufferPool.Alignment - 1)) != 0 ? 0 : length & ~(AlignedBufferPool.Alignment - 1);

    private static unsafe bool IsAligned(byte* start) => ((nint)start & (AlignedBufferPool.Alignment - 1)) == 0;

    private static unsafe bool IsAligned(in System.Buffers.MemoryHandle pin) => IsAligned((byte*)pin.Pointer);

    private bool TryWriteDirect(SafeFileHandle handle, ReadOnlySpan<byte> blocks)
    {
        try
        {
            RandomAccess.Write(handle, blocks, _written);
            DirectBytes += blocks.Length;
            return true;
        }
        catch (IOException e) when (e.HResult == EInval)
        {
            RefuseDirect(handle);
            return false;
        }
    }

    // Sets or clears O_DIRECT on the descriptor when it is not already so. False when direct I/O
    // was asked for and the file system refuses it (it is then never asked for again).
    private bool SetDirect(SafeFileHandle handle, bool on)
    {
        if (on == _directOn || (on && _directRefused))
        {
            return !_directRefused || !on;
        }

        var flags = Fcntl(handle, FcntlGetFlags, 0);
        if (flags < 0 || Fcntl(handle, FcntlSetFlags, on ? flags | ODirect : flags & ~ODirect) < 0)
        {
            if (on)
            {
                // EINVAL from F_SETFL: a file system (or device) without direct I/O.
                _directRefused = true;
                return false;
            }

            throw new IOException($"Turning direct I/O off for the blob failed (errno {Marshal.GetLastPInvokeError()}).", Marshal.GetLastPInvokeError());
        }

        _directOn = on;
        return true;
    }

    private void RefuseDirect(SafeFileHandle handle)
    {
        SetDirect(handle, false);
        _directRefused = true;
    }

    // A few system calls every StepBytes: nothing per write for the common sizes.
    private void Advance(int written)
    {
        _written += written;
        FlushBehind();
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

    // Starts a flush of everything written so far once a step has been written since the last one
    // started, if that one is over; rethrows the error of one that failed.
    private void FlushBehind()
    {
        if (!OperatingSystem.IsLinux() || !_flushBehind.IsCompleted)
        {
            return;
        }

        if (_flushBehind.IsFaulted)
        {
            _flushBehind.GetAwaiter().GetResult();
        }

        if (_written - _flushStartedAt < deviceFlushStepBytes)
        {
            return;
        }

        _flushStartedAt = _written;
        FlushesBehind++;
        var handle = file.SafeFileHandle;

        // A thread of its own: the flush blocks for as long as the device takes, which would hold
        // one of the few thread-pool threads of a small machine.
        _flushBehind = Task.Factory.StartNew(
            static state =>
            {
                if (Fdatasync((SafeFileHandle)state!) != 0)
                {
                    var errno = Marshal.GetLastPInvokeError();
                    throw new IOException($"Flushing the blob to disk failed (errno {errno}).", errno);
                }
            },
            handle,
            CancellationToken.None,
            TaskCreationOptions.LongRunning,
            TaskScheduler.Default);
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

    // fcntl is variadic in C; F_GETFL and F_SETFL take (or ignore) one int, passed as a fixed
    // argument exactly as a variadic int is on the Linux ABIs this is used on.
    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(SafeFileHandle fd, int command, int argument);

    [LibraryImport("libc", EntryPoint = "sync_file_range", SetLastError = true)]
    private static partial int SyncFileRange(SafeFileHandle fd, long offset, long length, int flags);

    [LibraryImport("libc", EntryPoint = "fdatasync", SetLastError = true)]
    private static partial int Fdatasync(SafeFileHandle fd);

    [LibraryImport("libc", EntryPoint = "posix_fadvise")]
    private static partial int Fadvise(SafeFileHandle fd, long offset, long length, int advice);
}
