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
