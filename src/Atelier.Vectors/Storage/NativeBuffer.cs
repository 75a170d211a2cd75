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

    // A buffer grown from a mapping (Linux): one anonymous region whose front is the moved file mapping.
    private byte* _region;
    private long _regionBytes;
    private List<(long Offset, long Length)>? _parts;
    private long _fileBytes;

    private NativeBuffer(byte* pointer, long length)
    {
        Pointer = pointer;
        Length = length;
    }

    public byte* Pointer { get; private set; }

    public long Length { get; }

    public bool IsMapped => _view is not null || _parts is not null;

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

    private const int ProtRead = 1, ProtWrite = 2, MapPrivate = 2, MapAnonymous = 0x20, MapNoReserve = 0x4000, MremapMayMove = 1, MremapFixed = 2;

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static partial nint Mmap(nint address, nuint length, int protection, int flags, int fd, nint offset);

    [LibraryImport("libc", EntryPoint = "mremap", SetLastError = true)]
    private static partial nint Mremap(nint oldAddress, nuint oldLength, nuint newLength, int flags, nint newAddress);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    private static partial int Munmap(nint address, nuint length);

    /// <summary>Whether a mapped buffer grows by moving its pages (the default); off, it copies them (the benchmark's peer).</summary>
    internal static bool GrowByMoving { get; set; } = true;

    /// <summary>
    /// Bytes of this buffer still backed by its segment file (pages the kernel can drop and read again) rather
    /// than by anonymous memory: all of a mapped buffer, the front of one grown from a mapping, 0 for an
    /// allocated one.
    /// </summary>
    public long FileBackedBytes => _view is not null ? Length : _fileBytes;

    /// <summary>
    /// A buffer of <paramref name="bytes"/> holding this one's contents; the caller disposes this one (which then
    /// gives up nothing that the new one uses).
    /// </summary>
    /// <remarks>
    /// A buffer mapped from a segment (or grown from one) grows without copying the mapped part on Linux: a new
    /// anonymous region is reserved and the existing pages, the file-backed ones with their private copies
    /// included, are moved to its front with <c>mremap</c>. So the first insert after a reopen costs the pages it
    /// writes, not a copy of the whole mapped graph into memory (which at 10M points would be its size again).
    /// Anywhere else, or when the kernel refuses, the contents are copied into an allocated buffer.
    /// </remarks>
    public NativeBuffer Grow(long bytes)
    {
        if (GrowByMoving && bytes > Length && OperatingSystem.IsLinux() && (_view is { PointerOffset: 0 } || _parts is not null) && TryGrowByMoving(bytes) is { } moved)
        {
            return moved;
        }

        var grown = Allocate(bytes);
        Buffer.MemoryCopy(Pointer, grown.Pointer, bytes, Math.Min(bytes, Length));
        return grown;
    }

    private NativeBuffer? TryGrowByMoving(long bytes)
    {
        long page = Environment.SystemPageSize;
        long total = (bytes + page - 1) / page * page;

        // The pieces to move, each one kernel mapping: the file's (rounded to its pages) then, for a buffer grown
        // before, the anonymous pieces each growth added.
        List<(long Offset, long Length)> parts = _parts ?? [(0, (Length + page - 1) / page * page)];
        byte* start = _parts is null ? Pointer : _region;
        byte* region = (byte*)Mmap(0, (nuint)total, ProtRead | ProtWrite, MapPrivate | MapAnonymous | MapNoReserve, -1, 0);
        if ((nint)region == -1)
        {
            return null;
        }

        int movedParts = 0;
        foreach (var (offset, length) in parts)
        {
            if ((nint)Mremap((nint)(start + offset), (nuint)length, (nuint)length, MremapMayMove | MremapFixed, (nint)(region + offset)) == -1)
            {
                break;
            }

            movedParts++;
        }

        if (movedParts < parts.Count)
        {
            // Moving is all or nothing for the caller: put back what moved (the old addresses are free again,
            // since mremap unmapped them) and let the caller copy instead.
            for (int i = 0; i < movedParts; i++)
            {
                _ = Mremap((nint)(region + parts[i].Offset), (nuint)parts[i].Length, (nuint)parts[i].Length, MremapMayMove | MremapFixed, (nint)(start + parts[i].Offset));
            }

            _ = Munmap((nint)region, (nuint)total);
            return null;
        }

        long end = parts[^1].Offset + parts[^1].Length;

        // The last page of the file's mapping may hold file bytes past this buffer's length: a grown buffer's
        // new room reads as zeros, as an allocated one's does.
        if (end > Length)
        {
            NativeMemory.Clear(region + Length, (nuint)(end - Length));
        }

        List<(long Offset, long Length)> grownParts = [.. parts];
        if (total > end)
        {
            grownParts.Add((end, total - end));
        }

        // This buffer's pages now belong to the new one: it must unmap nothing when disposed.
        long fileBytes = FileBackedBytes;
        ReleaseMovedPages();
        return new NativeBuffer(region, bytes) { _region = region, _regionBytes = total, _parts = grownParts, _fileBytes = fileBytes };
    }

    private void ReleaseMovedPages()
    {
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.SafeMemoryMappedViewHandle.SetHandleAsInvalid();
            _view.Dispose();
            _view = null;
            _map?.Dispose();
            _map = null;
        }
        else if (_parts is not null)
        {
            _region = null;
            _parts = null;
        }

        Pointer = null;
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
        else if (_region is not null)
        {
            _ = Munmap((nint)_region, (nuint)_regionBytes);
            _region = null;
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
