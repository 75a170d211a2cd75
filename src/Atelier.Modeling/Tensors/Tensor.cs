using System.Buffers;
using System.Diagnostics;

namespace Atelier.Modeling.Tensors;

/// <summary>
/// A dense, row-major float32 tensor whose storage is rented from a pool. Dispose it to give the
/// storage back; a disposed tensor must not be touched again.
/// </summary>
/// <remarks>
/// The type is deliberately small: shapes, a span over the data, and row views. Kernels take spans,
/// so they work the same on tensors, arrays and memory-mapped weights.
/// </remarks>
public sealed class Tensor : IDisposable
{
    private float[]? _data;
    private readonly bool _pooled;

    /// <summary>Creates a zero-filled tensor of the given shape from the pool.</summary>
    public Tensor(params int[] shape) : this(shape, clear: true)
    {
    }

    private Tensor(int[] shape, bool clear)
    {
        ArgumentNullException.ThrowIfNull(shape);
        Shape = (int[])shape.Clone();
        Length = CheckedLength(Shape);
        _data = ArrayPool<float>.Shared.Rent(Math.Max(Length, 1));
        _pooled = true;
        if (clear)
        {
            Array.Clear(_data, 0, Length);
        }
    }

    private Tensor(float[] data, int[] shape)
    {
        Shape = (int[])shape.Clone();
        Length = CheckedLength(Shape);
        if (data.Length < Length)
        {
            throw new ArgumentException($"Array of {data.Length} floats is too small for shape [{string.Join(", ", shape)}].", nameof(data));
        }

        _data = data;
        _pooled = false;
    }

    /// <summary>Creates a tensor whose contents are undefined (not cleared); write every element before reading.</summary>
    public static Tensor Uninitialized(params int[] shape) => new(shape, clear: false);

    /// <summary>Wraps an existing array without copying (the array is not returned to any pool).</summary>
    public static Tensor Wrap(float[] data, params int[] shape) => new(data, shape);

    /// <summary>Creates a tensor holding a copy of <paramref name="values"/>.</summary>
    public static Tensor FromSpan(ReadOnlySpan<float> values, params int[] shape)
    {
        var t = Uninitialized(shape);
        if (values.Length != t.Length)
        {
            t.Dispose();
            throw new ArgumentException($"Expected {t.Length} values, got {values.Length}.", nameof(values));
        }

        values.CopyTo(t.Span);
        return t;
    }

    /// <summary>The dimensions, outermost first.</summary>
    public int[] Shape { get; }

    /// <summary>The number of elements.</summary>
    public int Length { get; }

    /// <summary>The number of dimensions.</summary>
    public int Rank => Shape.Length;

    /// <summary>The size of the last dimension (1 for a scalar).</summary>
    public int Columns => Shape.Length == 0 ? 1 : Shape[^1];

    /// <summary>The product of every dimension but the last.</summary>
    public int Rows => Columns == 0 ? 0 : Length / Columns;

    /// <summary>The elements in row-major order.</summary>
    public Span<float> Span
    {
        get
        {
            var data = _data;
            if (data is null)
            {
                ThrowDisposed();
            }

            return data.AsSpan(0, Length);
        }
    }

    /// <summary>One row of a tensor viewed as a matrix of <see cref="Rows"/> × <see cref="Columns"/>.</summary>
    public Span<float> Row(int row)
    {
        Debug.Assert((uint)row < (uint)Rows);
        return Span.Slice(row * Columns, Columns);
    }

    /// <summary>Sets every element to zero.</summary>
    public void Clear() => Span.Clear();

    /// <summary>Returns a new pooled tensor holding a copy of this one.</summary>
    public Tensor Clone() => FromSpan(Span, Shape);

    /// <inheritdoc />
    public void Dispose()
    {
        var data = _data;
        _data = null;
        if (data is not null && _pooled)
        {
            ArrayPool<float>.Shared.Return(data);
        }
    }

    /// <inheritdoc />
    public override string ToString() => $"Tensor[{string.Join(", ", Shape)}]";

    private static int CheckedLength(int[] shape)
    {
        long n = 1;
        foreach (var d in shape)
        {
            if (d < 0)
            {
                throw new ArgumentException("Tensor dimensions must not be negative.", nameof(shape));
            }

            n *= d;
            if (n > Array.MaxLength)
            {
                throw new ArgumentException($"Tensor of shape [{string.Join(", ", shape)}] is too large.", nameof(shape));
            }
        }

        return (int)n;
    }

    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private static void ThrowDisposed() => throw new ObjectDisposedException(nameof(Tensor));
}
