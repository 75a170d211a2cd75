using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace Atelier.Vectors.Storage;

/// <summary>
/// A block of unmanaged memory that is either allocated (an index being built) or a copy-on-write
/// mapping of a segment file (an index reopened from disk). The index works on raw pointers so that both
/// cases share one hot path and a reopened index is usable before its pages are read.
/// </summary>
internal sealed unsafe partial class NativeBuffer : IDisposable
{
    private const int MadviseWillNeed = 3;

    private MemoryMappedFile? _map;
    private MemoryMappedViewAccessor? _view;
    private bool _allocated;

    private NativeBuffer(byte* pointer, long length)
    {
        Pointer = pointer;
        Length = length;
    }

    public byte* Pointer { get; private set; }

    public long Length { get; }

    public bool IsMapped => _view is not null;

    public static NativeBuffer Allocate(long bytes)
    {
        bytes = Math.Max(bytes, 64);
        var p = (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        NativeMemory.Clear(p, (nuint)bytes);
        return new NativeBuffer(p, bytes) { _allocated = true };
    }

    /// <summary>
    /// Maps <paramref name="path"/> copy-on-write: pages load on first touch, and writes (new links after the
    /// reopen) stay private to this process, so the committed file never changes under a later crash.
    /// </summary>
    public static NativeBuffer Map(string path, long length)
    {
        if (length == 0)
        {
            return Allocate(64);
        }

        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, mapName: null, 0, MemoryMappedFileAccess.CopyOnWrite);
        var view = map.CreateViewAccessor(0, length, MemoryMappedFileAccess.CopyOnWrite);
        byte* p = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        p += view.PointerOffset;
        return new NativeBuffer(p, length) { _map = map, _view = view };
    }

    /// <summary>
    /// Asks the kernel to read a mapped buffer's pages ahead, in the background (<c>madvise(MADV_WILLNEED)</c>):
    /// the first searches after a reopen then find the hot segments in the page cache instead of faulting them
    /// in one random read at a time. Nothing for an allocated buffer, or off Linux.
    /// </summary>
    public void ReadAhead()
    {
        if (_view is null || !OperatingSystem.IsLinux() || Length == 0)
        {
            return;
        }

        // madvise needs a page-aligned start: the view's own base is one, the pointer may sit past it.
        byte* start = Pointer - _view.PointerOffset;
        _ = Madvise(start, (nuint)(Length + _view.PointerOffset), MadviseWillNeed);
    }

    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    private static partial int Madvise(byte* address, nuint length, int advice);

    /// <summary>A new allocated buffer of <paramref name="bytes"/> holding this one's contents; the caller disposes this one.</summary>
    public NativeBuffer Grow(long bytes)
    {
        var grown = Allocate(bytes);
        Buffer.MemoryCopy(Pointer, grown.Pointer, bytes, Math.Min(bytes, Length));
        return grown;
    }

    public void Dispose()
    {
        if (Pointer == null)
        {
            return;
        }

        if (_allocated)
        {
            NativeMemory.AlignedFree(Pointer);
        }
        else if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
            _map?.Dispose();
        }

        Pointer = null;
    }
}
