using System.Globalization;
using Atelier.Core.Errors;

namespace Atelier.Server.Hosting;

/// <summary>
/// Bounded numeric query parameters. A value outside its range is refused, naming the parameter and
/// the range, rather than clamped: a client that asked for a billion rows should learn it gets at
/// most a thousand, not receive a thousand and believe it has everything.
/// </summary>
public static class QueryParameters
{
    /// <summary>The integer <paramref name="name"/> in <c>[min, max]</c>, or <paramref name="fallback"/> when absent.</summary>
    public static long Integer(HttpRequest request, string name, long fallback, long min, long max)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (!request.Query.TryGetValue(name, out var values) || values.Count == 0 || string.IsNullOrEmpty(values[0]))
        {
            return fallback;
        }

        if (values.Count > 1)
        {
            throw new BadRequestException($"'{name}' is given {values.Count} times; give it once.", "invalid_parameter");
        }

        return long.TryParse(values[0], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v) && v >= min && v <= max
            ? v
            : throw new BadRequestException($"'{name}' must be a whole number between {min} and {max}, not '{values[0]}'.", "invalid_parameter");
    }

    /// <summary>The integer <paramref name="name"/> in <c>[min, max]</c>, or null when absent.</summary>
    public static long? OptionalInteger(HttpRequest request, string name, long min, long max)
    {
        ArgumentNullException.ThrowIfNull(request);
        return request.Query.TryGetValue(name, out var values) && values.Count > 0 && !string.IsNullOrEmpty(values[0])
            ? Integer(request, name, 0, min, max)
            : null;
    }
}
