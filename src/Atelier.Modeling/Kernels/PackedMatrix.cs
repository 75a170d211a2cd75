using System.Runtime.InteropServices;

namespace Atelier.Modeling.Kernels;

/// <summary>
/// A constant [rows × columns] matrix (a weight, used transposed as <c>x · Wᵀ</c>) packed once into
/// the SGEMM micro-kernel's layout, so that products with few rows, such as a serving engine's decode
/// steps, stream it instead of re-packing it on every call.
/// </summary>
/// <remarks>
/// The packed copy lives in 64-byte aligned native memory (the kernel's aligned loads need it) and
/// takes the matrix's size again, rounded up to whole 32-column slivers. Results are the bits of
/// <see cref="Sgemm.MultiplyBatchInvariant(bool, bool, int, int, int, float, ReadOnlySpan{float}, int, ReadOnlySpan{float}, int, float, Span{float}, int)"/>.
/// </remarks>
public sealed unsafe class PackedMatrix : IDisposable
{
    private float* _data;

    /// <summary>Packs <paramref name="matrix"/>, row-major [rows × columns].</summary>
    public PackedMatrix(ReadOnlySpan<float> matrix, int rows, int columns)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(columns, 1);
        if (matrix.Length != (long)rows * columns)
        {
            throw new ArgumentException($"Expected {(long)rows * columns} values, got {matrix.Length}.", nameof(matrix));
        }

        Rows = rows;
        Columns = columns;
        var length = Sgemm.PackedLength(rows, columns);
        _data = (float*)NativeMemory.AlignedAlloc((nuint)length * sizeof(float), 64);
        GC.AddMemoryPressure(length * sizeof(float));
        Sgemm.PackAll(matrix, rows, columns, _data);
    }

    /// <summary>
    /// Packs a row-major [rows × columns] matrix given as bf16 bit patterns (the upper 16 bits of a float32,
    /// as safetensors stores BF16), without widening it in memory: the product's bits are those of the
    /// float32 matrix each value widens to exactly.
    /// </summary>
    /// <remarks>Interim: widens to float32 until the bf16 micro-kernels land; the API is the one they keep.</remarks>
    public static PackedMatrix FromBFloat16(ReadOnlySpan<ushort> matrix, int rows, int columns)
    {
        if (matrix.Length != (long)rows * columns)
        {
            throw new ArgumentException($"Expected {(long)rows * columns} values, got {matrix.Length}.", nameof(matrix));
        }

        var wide = GC.AllocateUninitializedArray<float>(matrix.Length);
        for (var i = 0; i < matrix.Length; i++)
        {
            wide[i] = BitConverter.UInt32BitsToSingle((uint)matrix[i] << 16);
        }

        return new PackedMatrix(wide, rows, columns) { ElementType = PackedElementType.BFloat16 };
    }

    /// <summary>How the packed values are stored.</summary>
    public PackedElementType ElementType { get; private init; } = PackedElementType.Float32;

    /// <summary>Bytes of native memory the packed copy holds (what a decode step streams through).</summary>
    public long StorageBytes => Sgemm.PackedLength(Rows, Columns) * sizeof(float);

    /// <summary>Rows of the matrix (output features).</summary>
    public int Rows { get; }

    /// <summary>Columns of the matrix (input features).</summary>
    public int Columns { get; }

    internal float* Data => _data != null ? _data : throw new ObjectDisposedException(nameof(PackedMatrix));

    internal static long BlockOffset(int jc, int pc, int panels, int k) => Sgemm.PackedBlockOffset(jc, pc, panels, k);

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
            GC.RemoveMemoryPressure(Sgemm.PackedLength(Rows, Columns) * sizeof(float));
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
