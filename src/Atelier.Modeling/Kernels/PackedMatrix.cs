using System.Runtime.InteropServices;

namespace Atelier.Modeling.Kernels;

/// <summary>
/// A constant [rows × columns] matrix (a weight, used transposed as <c>x · Wᵀ</c>) packed once into
/// the SGEMM micro-kernel's layout, so that products with few rows, such as a serving engine's decode
/// steps, stream it instead of re-packing it on every call.
/// </summary>
/// <remarks>
/// The packed copy lives in 64-byte aligned native memory (the kernel's aligned loads need it) and
/// takes the matrix's size again (half of it for bf16), rounded up to whole 32-column slivers, each sliver
/// holding its 32 columns for the whole depth k so that a product streams it front to back. Results are
/// the bits of <see cref="Sgemm.MultiplyBatchInvariant(bool, bool, int, int, int, float, ReadOnlySpan{float}, int, ReadOnlySpan{float}, int, float, Span{float}, int)"/>
/// (on the widened values, for bf16).
/// </remarks>
public sealed unsafe partial class PackedMatrix : IDisposable
{
    private byte* _data;

    /// <summary>Packs <paramref name="matrix"/>, row-major [rows × columns].</summary>
    public PackedMatrix(ReadOnlySpan<float> matrix, int rows, int columns)
        : this(rows, columns, PackedElementType.Float32, matrix.Length)
    {
        fixed (float* src = matrix)
        {
            Sgemm.PackAll(src, rows, columns, (float*)_data);
        }
    }

    private PackedMatrix(int rows, int columns, PackedElementType elementType, int length)
    {
        CheckShape(rows, columns, length, "matrix");
        Rows = rows;
        Columns = columns;
        ElementType = elementType;
        StorageBytes = Sgemm.PackedLength(rows, columns) * ElementBytes;
        _data = AllocateStreamed(StorageBytes);
        GC.AddMemoryPressure(StorageBytes);
    }

    /// <summary>
    /// Packs a row-major [rows × columns] matrix given as bf16 bit patterns (the upper 16 bits of a float32,
    /// as safetensors stores BF16), without widening it in memory: the product's bits are those of the
    /// float32 matrix each value widens to exactly.
    /// </summary>
    /// <remarks>
    /// Two bytes a value: the micro-kernels widen each k row of a sliver in registers (one load, a shift
    /// and a mask for 32 columns), so a decode step streams half the bytes of the float32 copy.
    /// </remarks>
    public static PackedMatrix FromBFloat16(ReadOnlySpan<ushort> matrix, int rows, int columns)
    {
        var packed = new PackedMatrix(rows, columns, PackedElementType.BFloat16, matrix.Length);
        fixed (ushort* src = matrix)
        {
            Sgemm.PackAllBFloat16(src, rows, columns, (ushort*)packed._data);
        }

        return packed;
    }

    /// <summary>
    /// 64-byte aligned memory for a packed copy; on Linux, a copy of 1 MiB or more is 2 MiB aligned, rounded up to
    /// whole 2 MiB pages and asks for transparent huge pages.
    /// </summary>
    /// <remarks>
    /// A decode step streams every weight once: 0.15 GB on a ~100M model, 1.9 GB on ~1B, through 4 KiB pages a
    /// TLB miss every 64 cache lines, 37,000 page walks a token on ~100M, far more than the TLB holds. Huge pages
    /// make that ~75. Linux's default policy (<c>transparent_hugepage=madvise</c>) gives them only to memory that
    /// asks; where they are off or unavailable, madvise changes nothing and the copy works as before.
    /// </remarks>
    private static byte* AllocateStreamed(long bytes)
    {
        if (!OperatingSystem.IsLinux() || bytes < MinHugeBytes)
        {
            return (byte*)NativeMemory.AlignedAlloc((nuint)bytes, 64);
        }

        // Aligned to a huge page and rounded up to whole ones, so that every byte of the copy lies in a huge page:
        // the kernel backs a 2 MiB range with one only when the whole range lies in the mapping, so a copy's last
        // partial range (and any copy under 2 MiB) stayed in 4 KiB pages. Those were the slow products of a ~100M
        // decode step: wo (1.2 MB) and wq|wk|wv (2.0 MB) streamed at ~22 GB/s against ~49 GB/s for the output
        // matrix. The rounding costs under one huge page a matrix (~1% of a ~1B model's weights, ~5% of a ~100M
        // one's). The memory is touched first by the packing that follows, which is when the kernel backs it.
        var rounded = (bytes + HugePageBytes - 1) & ~(long)(HugePageBytes - 1);
        var data = (byte*)NativeMemory.AlignedAlloc((nuint)rounded, HugePageBytes);
        try
        {
            // Its result is ignored: without huge pages the memory is the same, only slower to stream.
            _ = Madvise(data, (nuint)rounded, MadvHugePage);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // A libc without madvise: 4 KiB pages, as before.
        }

        return data;
    }

    private const int HugePageBytes = 2 << 20;

    // Below this a copy keeps 4 KiB pages: rounding it up to a huge page would more than double it (adapter matrices,
    // small test models), and it holds too few pages for their walks to matter.
    private const int MinHugeBytes = 1 << 20;

    // MADV_HUGEPAGE in Linux's uapi/asm-generic/mman-common.h.
    private const int MadvHugePage = 14;

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(void* address, nuint length, int advice);

    private static void CheckShape(int rows, int columns, int length, string paramName)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(columns, 1);
        if (length != (long)rows * columns)
        {
            throw new ArgumentException($"Expected {(long)rows * columns} values, got {length}.", paramName);
        }
    }

    /// <summary>How the packed values are stored.</summary>
    public PackedElementType ElementType { get; }

    /// <summary>Bytes of native memory the packed copy holds (what a decode step streams through).</summary>
    public long StorageBytes { get; }

    /// <summary>Rows of the matrix (output features).</summary>
    public int Rows { get; }

    /// <summary>Columns of the matrix (input features).</summary>
    public int Columns { get; }

    internal byte* Data => _data != null ? _data : throw new ObjectDisposedException(nameof(PackedMatrix));

    /// <summary>Bytes of one stored value.</summary>
    internal int ElementBytes => ElementType == PackedElementType.BFloat16 ? sizeof(ushort) : sizeof(float);

    /// <inheritdoc />
    public void Dispose()
    {
        Free();
        GC.SuppressFinalize(this);
    }

    /// <summary>Frees the native copy if <see cref="Dispose"/> was never called.</summary>
    ~PackedMatrix() => Free();

    private void Free()
    {
        if (_data != null)
        {
            NativeMemory.AlignedFree(_data);
            GC.RemoveMemoryPressure(StorageBytes);
            _data = null;
        }
    }
}

/// <summary>The element type a <see cref="PackedMatrix"/> stores its values in.</summary>
public enum PackedElementType
{
    /// <summary>IEEE float32.</summary>
    Float32,

    /// <summary>bfloat16: the upper half of a float32, widened exactly in the kernel.</summary>
    BFloat16,
}
