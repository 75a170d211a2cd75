using System.Globalization;

namespace Atelier.Server.Hosting;

/// <summary>
/// Where clients reach the server, for the URLs it hands out: the configured public URL, else the
/// address it listens on. Never the request's Host header, which the client chooses and could point
/// at another server.
/// </summary>
/// <param name="PublicUrl">The configured <c>server.public_url</c>, if any.</param>
/// <param name="Bind">The address the server listens on.</param>
public sealed record PublicAddress(string? PublicUrl, string Bind)
{
    /// <summary>The base URL (no trailing slash) for a URL handed out in answer to <paramref name="context"/>.</summary>
    public string BaseUrl(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (PublicUrl is { Length: > 0 } configured)
        {
            return configured.TrimEnd('/');
        }

        var host = Bind is "0.0.0.0" ? "127.0.0.1" : Bind is "::" ? "[::1]" : Bind.Contains(':', StringComparison.Ordinal) ? $"[{Bind}]" : Bind;
        return string.Create(CultureInfo.InvariantCulture, $"http://{host}:{context.Connection.LocalPort}");
    }
}
