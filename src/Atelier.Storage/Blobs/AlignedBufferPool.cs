using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Atelier.Storage.Blobs;

/// <summary>
/// Pooled buffers whose memory starts on an <see cref="Alignment"/> boundary and whose length is a
/// multiple of it: the memory a local blob's stream hands to the disk with direct I/O, from the
/// caller's buffer, without the kernel's copy into the page cache (see
/// <see cref="WriteBehindFileStream"/>). A writer that fills these and writes them whole gets
/// direct I/O for every full block; any other memory is written through the page cache as before.
/// </summary>
/// <remarks>
/// The arrays live on the pinned object heap, so their addresses never change: the alignment
/// computed once holds for the array's life, and no pinning is needed per write. A free list keeps
/// at most <c>maxRetained</c> buffers; more are left to the collector.
/// </remarks>
public sealed class AlignedBufferPool
{
    /// <summary>
    /// The alignment of every buffer's start and length, and of the file offsets direct writes go
    /// to: 4 KiB, the page size and the largest logical block size disks use, so it suits every
    /// device O_DIRECT may meet.
    /// </summary>
    public const int Alignment = 4096;

    private readonly ConcurrentQueue<byte[]> _free = new();
    private readonly int _maxRetained;
    private int _retained;

    /// <summary>Creates a pool of buffers of <paramref name="bufferBytes"/> (a multiple of <see cref="Alignment"/>).</summary>
    public AlignedBufferPool(int bufferBytes, int maxRetained)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(bufferBytes, Alignment);
        if (bufferBytes % Alignment != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(bufferBytes), bufferBytes, $"A buffer's size is a multiple of {Alignment}.");
        }

        ArgumentOutOfRangeException.ThrowIfNegative(maxRetained);
        BufferBytes = bufferBytes;
        _maxRetained = maxRetained;
    }

    /// <summary>The size of every buffer.</summary>
    public int BufferBytes { get; }

    /// <summary>A buffer of <see cref="BufferBytes"/>, aligned; its content is whatever it held before.</summary>
    public Memory<byte> Rent()
    {
        if (_free.TryDequeue(out var array))
        {
            Interlocked.Decrement(ref _retained);
        }
        else
        {
            // One alignment more than needed, so an aligned start always leaves BufferBytes after it.
            array = GC.AllocateUninitializedArray<byte>(BufferBytes + Alignment, pinned: true);
        }

        return array.AsMemory(AlignedStart(array), BufferBytes);
    }

    /// <summary>Gives back a buffer from <see cref="Rent"/> (or any slice of it); it must not be used afterwards.</summary>
    public void Return(Memory<byte> buffer)
    {
        if (!MemoryMarshal.TryGetArray<byte>(buffer, out var segment) || segment.Array is not { } array || array.Length != BufferBytes + Alignment)
        {
            throw new ArgumentException("The buffer was not rented from this pool.", nameof(buffer));
        }

        if (Interlocked.Increment(ref _retained) > _maxRetained)
        {
            Interlocked.Decrement(ref _retained);
            return;
        }

        _free.Enqueue(array);
    }

    // The array is on the pinned heap: its address, and so this offset, never change.
    private static unsafe int AlignedStart(byte[] array)
    {
        var address = (nint)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(array));
        return (int)(-address & (Alignment - 1));
    }
}
