using System.Diagnostics.CodeAnalysis;
using Atelier.Core.Errors;

namespace Atelier.Vectors;

/// <summary>A persisted index or table failed a consistency check on open (a truncated or altered file).</summary>
public sealed class VectorStoreCorruptedException(string message) : AtelierException(message)
{
    /// <inheritdoc />
    public override int StatusCode => 500;

    /// <inheritdoc />
    public override string Code => "vector_store_corrupted";
}

/// <summary>Throw helpers, so hot methods stay small.</summary>
internal static class VectorThrow
{
    [DoesNotReturn]
    public static void DimensionMismatch(int expected, int actual) =>
        throw new BadRequestException($"Vector has dimension {actual}; the collection expects {expected}.", "invalid_vector_dimension");

    [DoesNotReturn]
    public static void BadArgument(string message) => throw new BadRequestException(message);

    [DoesNotReturn]
    public static void Corrupted(string message) => throw new VectorStoreCorruptedException(message);

    [DoesNotReturn]
    public static void Disposed(string name) => throw new ObjectDisposedException(name);
}
