using System.Collections.Frozen;
using System.Reflection;
using System.Security.Cryptography;
using Microsoft.Net.Http.Headers;

namespace Atelier.Server.WebConsole;

/// <summary>
/// The web console: hand-written HTML, CSS and JavaScript modules embedded in this assembly and
/// served at <c>/</c> and <c>/console/…</c>. Nothing is fetched from elsewhere, so it works offline
/// and needs no build step; it calls the same <c>/v1</c> and <c>/api/v1</c> endpoints as any client,
/// with the key the user typed (docs/decisions/0013-web-console.md).
/// </summary>
public static class ConsoleEndpoints
{
    /// <summary>
    /// The console's Content-Security-Policy: its own scripts, styles and API only, no inline
    /// script or style element, never inside a frame (clickjacking), no form posting elsewhere.
    /// </summary>
    public const string ContentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; " +
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

    private const string ResourcePrefix = "console/";

    /// <summary>The text <c>GET /</c> answers a client that does not ask for HTML (curl, scripts).</summary>
    public const string PlainTextAnswer =
        "Atelier is running. Web console at / (in a browser), Mistral-compatible API under /v1, platform API under /api/v1, OpenAPI at /openapi/v1.json, metrics at /metrics.\n";

    private static readonly FrozenDictionary<string, ConsoleAsset> Assets = Load();

    /// <summary>Maps <c>GET /</c> (the console's page, or a line of text for non-browsers) and <c>GET /console/{path}</c>.</summary>
    public static void MapConsole(this IEndpointRouteBuilder app)
    {
        app.MapGet("/", (HttpContext context) =>
        {
            // A browser asks for text/html; curl and scripts keep the one-line answer they had.
            if (!AcceptsHtml(context.Request))
            {
                return Results.Text(PlainTextAnswer, "text/plain");
            }

            return Serve(context, "index.html");
        }).ExcludeFromDescription();

        app.MapGet("/console/{**path}", (HttpContext context, string path) => Serve(context, path))
            .ExcludeFromDescription();
    }

    /// <summary>The paths of the embedded console files, relative to <c>/console/</c>.</summary>
    public static IReadOnlyCollection<string> Files => Assets.Keys;

    private static bool AcceptsHtml(HttpRequest request) =>
        request.Headers.Accept.ToString().Contains("text/html", StringComparison.OrdinalIgnoreCase);

    private static IResult Serve(HttpContext context, string path)
    {
        if (!Assets.TryGetValue(path, out var asset))
        {
            return Results.NotFound();
        }

        var headers = context.Response.Headers;
        headers.ContentSecurityPolicy = ContentSecurityPolicy;
        headers.XContentTypeOptions = "nosniff";
        headers.XFrameOptions = "DENY";
        headers["Referrer-Policy"] = "no-referrer";
        headers["Cross-Origin-Opener-Policy"] = "same-origin";

        // Revalidated on every load: an upgraded server never runs with last version's scripts.
        headers.CacheControl = "no-cache";
        headers.ETag = asset.ETag;
        if (context.Request.Headers.IfNoneMatch.ToString() == asset.ETag)
        {
            return Results.StatusCode(StatusCodes.Status304NotModified);
        }

        return Results.Bytes(asset.Content, asset.ContentType);
    }

    private static FrozenDictionary<string, ConsoleAsset> Load()
    {
        var assembly = typeof(ConsoleEndpoints).Assembly;
        var assets = new Dictionary<string, ConsoleAsset>(StringComparer.Ordinal);
        foreach (var name in assembly.GetManifestResourceNames())
        {
            if (!name.StartsWith(ResourcePrefix, StringComparison.Ordinal))
            {
                continue;
            }

            var path = name[ResourcePrefix.Length..].Replace('\\', '/');
            var content = Read(assembly, name);
            var etag = "\"" + Convert.ToHexStringLower(SHA256.HashData(content))[..16] + "\"";
            assets[path] = new ConsoleAsset(content, ContentTypeOf(path), etag);
        }

        return assets.ToFrozenDictionary(StringComparer.Ordinal);
    }

    private static byte[] Read(Assembly assembly, string name)
    {
        using var stream = assembly.GetManifestResourceStream(name)!;
        using var buffer = new MemoryStream();
        stream.CopyTo(buffer);
        return buffer.ToArray();
    }

    private static string ContentTypeOf(string path) => Path.GetExtension(path) switch
    {
        ".html" => "text/html; charset=utf-8",
        ".js" => "text/javascript; charset=utf-8",
        ".css" => "text/css; charset=utf-8",
        ".svg" => "image/svg+xml",
        _ => "application/octet-stream",
    };

    private sealed record ConsoleAsset(byte[] Content, string ContentType, string ETag);
}
