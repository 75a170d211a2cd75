using System.Diagnostics;

namespace Atelier.Server.Hosting;

/// <summary>
/// One line per request at Debug (off by default: decision 0012): method, path, status and
/// duration. The query string is left out on
/// purpose: a signed download URL carries its signature there, and whoever reads the log must not
/// be able to download the file with it.
/// </summary>
public sealed partial class RequestLog(RequestDelegate next, ILogger<RequestLog> logger)
{
    /// <summary>Calls the rest of the pipeline and logs the outcome.</summary>
    public async Task InvokeAsync(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (!logger.IsEnabled(LogLevel.Debug))
        {
            await next(context).ConfigureAwait(false);
            return;
        }

        var started = Stopwatch.GetTimestamp();
        try
        {
            await next(context).ConfigureAwait(false);
        }
        finally
        {
            LogRequest(logger, context.Request.Method, context.Request.Path.Value ?? "/", context.Response.StatusCode, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        }
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "{Method} {Path} answered {Status} in {ElapsedMs:F1} ms")]
    private static partial void LogRequest(ILogger logger, string method, string path, int status, double elapsedMs);
}
