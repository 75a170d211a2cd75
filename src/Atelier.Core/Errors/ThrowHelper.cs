using System.Diagnostics.CodeAnalysis;

namespace Atelier.Core.Errors;

/// <summary>
/// Throw helpers kept out of line, so the methods that call them stay small enough to inline.
/// </summary>
public static class ThrowHelper
{
    /// <summary>Throws <see cref="BadRequestException"/>.</summary>
    [DoesNotReturn]
    public static void BadRequest(string message, string code = "invalid_request") => throw new BadRequestException(message, code);

    /// <summary>Throws <see cref="NotFoundException"/>.</summary>
    [DoesNotReturn]
    public static void NotFound(string kind, string id) => throw new NotFoundException(kind, id);

    /// <summary>Throws <see cref="ArgumentException"/> for a contract violation by a caller inside the process.</summary>
    [DoesNotReturn]
    public static void Argument(string message, string paramName) => throw new ArgumentException(message, paramName);

    /// <summary>Throws <see cref="InvalidOperationException"/> for a broken internal invariant.</summary>
    [DoesNotReturn]
    public static void InvalidOperation(string message) => throw new InvalidOperationException(message);
}
