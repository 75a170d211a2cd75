using System.Text.Json;
using Atelier.Core.Errors;
using Microsoft.AspNetCore.Http.Features;

namespace Atelier.Server.Errors;

/// <summary>
/// The one place errors become responses. On <c>/v1</c> they take Mistral's shape
/// (<c>{"object":"error","message",...,"type","param","code"}</c>, plus FastAPI-style
/// <c>detail</c> entries for validation problems, as the Mistral SDK's
/// <c>HTTPValidationError</c> parses them); on everything else RFC 9457 problem details.
/// </summary>
public sealed partial class ErrorMapping(RequestDelegate next, ILogger<ErrorMapping> logger)
{
    /// <summary>Runs the pipeline and maps what it throws.</summary>
    public async Task InvokeAsync(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        try
        {
            await next(context).ConfigureAwait(false);
        }
        catch (AtelierException e) when (!context.Response.HasStarted)
        {
            await WriteAsync(context, e).ConfigureAwait(false);
        }
        catch (BadHttpRequestException e) when (!context.Response.HasStarted)
        {
            var mapped = e.StatusCode == StatusCodes.Status413PayloadTooLarge
                ? (AtelierException)new PayloadTooLargeException(context.Features.Get<IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize ?? 0)
                : new BadRequestException(e.Message);
            await WriteAsync(context, mapped).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away; there is nobody to answer.
        }
        catch (Exception e) when (!context.Response.HasStarted)
        {
            LogUnhandled(logger, e, context.Request.Method, context.Request.Path);
            await WriteAsync(context, new InternalErrorException()).ConfigureAwait(false);
        }
    }

    private static Task WriteAsync(HttpContext context, AtelierException error)
    {
        context.Response.Clear();
        context.Response.StatusCode = error.StatusCode;
        if (error is UnauthorizedException)
        {
            context.Response.Headers.WWWAuthenticate = "Bearer";
        }

        if (context.Request.Path.StartsWithSegments("/v1"))
        {
            return context.Response.WriteAsJsonAsync(MistralError(error), AtelierJson.Options);
        }

        var problem = new Dictionary<string, object?>
        {
            ["type"] = $"https://atelier.dev/errors/{error.Code}",
            ["title"] = Title(error.StatusCode),
            ["status"] = error.StatusCode,
            ["detail"] = error.Message,
            ["instance"] = context.Request.Path.Value,
            ["code"] = error.Code,
        };
        if (error.Problems.Count > 0)
        {
            problem["problems"] = error.Problems.Select(ProblemJson).ToArray();
            problem["total_problems"] = error.TotalProblems;
        }

        return context.Response.WriteAsJsonAsync(problem, AtelierJson.Options, "application/problem+json");
    }

    private static Dictionary<string, object?> MistralError(AtelierException error)
    {
        var body = new Dictionary<string, object?>
        {
            ["object"] = "error",
            ["message"] = error.Message,
            ["type"] = error.Code,
            ["param"] = null,
            ["code"] = error.StatusCode.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        if (error.Problems.Count > 0)
        {
            body["detail"] = error.Problems.Select(p => new Dictionary<string, object?>
            {
                ["loc"] = Loc(p),
                ["msg"] = p.Message,
                ["type"] = "value_error",
            }).ToArray();
            body["problems"] = error.Problems.Select(ProblemJson).ToArray();
            body["total_problems"] = error.TotalProblems;
        }

        return body;
    }

    private static object[] Loc(Problem p)
    {
        var loc = new List<object> { "body", "file" };
        if (p.Line is { } line)
        {
            loc.Add("line");
            loc.Add(line);
        }

        if (p.Field is { } field)
        {
            loc.Add(field);
        }

        return [.. loc];
    }

    private static Dictionary<string, object?> ProblemJson(Problem p) => new()
    {
        ["file"] = p.File,
        ["line"] = p.Line,
        ["field"] = p.Field,
        ["message"] = p.Message,
    };

    private static string Title(int status) => status switch
    {
        400 => "Bad request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not found",
        409 => "Conflict",
        413 => "Payload too large",
        415 => "Unsupported media type",
        422 => "Unprocessable content",
        507 => "Insufficient storage",
        _ => "Error",
    };

    [LoggerMessage(Level = LogLevel.Error, Message = "Unhandled error in {Method} {Path}")]
    private static partial void LogUnhandled(ILogger logger, Exception exception, string method, string path);

    private sealed class InternalErrorException() : AtelierException("An internal error occurred; the server log has the details.")
    {
        public override int StatusCode => 500;

        public override string Code => "internal_error";
    }
}

/// <summary>The JSON conventions of the API: snake_case, as Mistral's.</summary>
public static class AtelierJson
{
    /// <summary>Serializer options for every response body.</summary>
    public static JsonSerializerOptions Options { get; } = new(JsonSerializerDefaults.Web)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DictionaryKeyPolicy = null,

        // Bodies are JSON for API clients, never embedded in HTML, so quotes and angle brackets
        // can stay readable in error messages.
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };
}
