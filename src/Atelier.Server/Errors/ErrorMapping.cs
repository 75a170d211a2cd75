using System.Text.Json;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Storage.Audit;
using Microsoft.AspNetCore.Http.Features;

namespace Atelier.Server.Errors;

/// <summary>
/// The one place errors become responses. On <c>/v1</c> they take Mistral's shape
/// (<c>{"object":"error","message",...,"type","param","code"}</c>, plus FastAPI-style
/// <c>detail</c> entries for validation problems, as the Mistral SDK's
/// <c>HTTPValidationError</c> parses them); on everything else RFC 9457 problem details.
/// </summary>
public sealed partial class ErrorMapping(RequestDelegate next, ILogger<ErrorMapping> logger, AtelierConfig config, AuditLog audit)
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
            // A tainted model's refusal is audited like any other: who asked to be served it.
            if (e is ForbiddenException or UnavailableForLegalReasonsException)
            {
                await AuditRefusalAsync(context, e).ConfigureAwait(false);
            }

            await WriteAsync(context, e).ConfigureAwait(false);
            return;
        }
        catch (BadHttpRequestException e) when (!context.Response.HasStarted)
        {
            await WriteAsync(context, Map(context, e)).ConfigureAwait(false);
            return;
        }
        catch (JsonException e) when (!context.Response.HasStarted)
        {
            await WriteAsync(context, Malformed(e)).ConfigureAwait(false);
            return;
        }
        catch (InvalidOperationException e) when (!context.Response.HasStarted && e.Source == JsonRethrowableSource)
        {
            // System.Text.Json reports text it cannot turn into a .NET string (bad UTF-8, a lone
            // surrogate escape) this way when a string is read from a parsed document.
            await WriteAsync(context, new MalformedJsonException("The request body holds a string that is not valid Unicode (invalid UTF-8 bytes, or a lone UTF-16 surrogate such as \\ud800).")).ConfigureAwait(false);
            return;
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away; there is nobody to answer.
            return;
        }
        catch (Exception e) when (!context.Response.HasStarted && IsStorageFull(e))
        {
            LogStorageFull(logger, e, context.Request.Method, context.Request.Path);
            await WriteAsync(context, new StorageUnavailableException("The server's storage is full, so the request could not be completed. Reads and deletions still work; free space and retry.", e)).ConfigureAwait(false);
            return;
        }
        catch (Exception e) when (!context.Response.HasStarted && IsClusterUnreachable(e))
        {
            // A grain lived on a node that just stopped: until membership votes that node dead
            // (seconds), calls to it fail; then the grain comes back on a live node. Not a bug here.
            LogClusterUnreachable(logger, e, context.Request.Method, context.Request.Path);
            await WriteAsync(context, new ServiceUnavailableException($"A node of the cluster did not answer ({e.GetType().Name}); if one has just stopped, its work moves to the live nodes within seconds. Retry shortly.", "cluster_unavailable")).ConfigureAwait(false);
            return;
        }
        catch (Exception e) when (!context.Response.HasStarted)
        {
            LogUnhandled(logger, e, context.Request.Method, context.Request.Path);
            await WriteAsync(context, new InternalErrorException()).ConfigureAwait(false);
            return;
        }

        // The framework answers some failures with a bare status and no body (a body it could not
        // bind, a route with no such method); every error gets a body that says what is wrong.
        if (!context.Response.HasStarted && context.Response.StatusCode >= 400 && context.Response.ContentType is null && context.Response.ContentLength is null or 0)
        {
            await WriteAsync(context, Bare(context)).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// True when <paramref name="e"/> or an exception inside it says the disk is full: <c>ENOSPC</c>
    /// from the filesystem, or the catalog's full storage.
    /// </summary>
    public static bool IsStorageFull(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
        {
            if (e is StorageUnavailableException
                || (e is IOException io && Atelier.Storage.Blobs.LocalDirectoryBlobStore.IsDiskFull(io))
                || e is Atelier.Catalog.CatalogStorageFullException

                // SQLITE_FULL from the stores that still run their own SQLite statements (feature
                // store, online store, model registry) until they move behind the catalog's repositories.
                || Atelier.Catalog.Sqlite.CatalogDatabase.IsStorageFull(e))
            {
                return true;
            }

            if (e is AggregateException aggregate && aggregate.InnerExceptions.Any(IsStorageFull))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// True when <paramref name="e"/> says a grain call did not reach a live silo: the silo is gone
    /// (<see cref="Orleans.Runtime.SiloUnavailableException"/>), the message was rejected on the way,
    /// or no answer came in time (Orleans' response timeout, or a call's own limit).
    /// </summary>
    public static bool IsClusterUnreachable(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
        {
            if (e is Orleans.Runtime.SiloUnavailableException or Orleans.Runtime.OrleansMessageRejectionException or TimeoutException)
            {
                return true;
            }
        }

        return false;
    }

    private const string JsonRethrowableSource = "System.Text.Json.Rethrowable";

    private AtelierException Map(HttpContext context, BadHttpRequestException e)
    {
        if (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return RequestBodyLimit.TooLarge(context, config);
        }

        if (e.InnerException is JsonException json)
        {
            return Malformed(json);
        }

        if (e.InnerException is InvalidOperationException { Source: JsonRethrowableSource })
        {
            return new MalformedJsonException("The request body holds a string that is not valid Unicode (invalid UTF-8 bytes, or a lone UTF-16 surrogate).");
        }

        // Minimal APIs say `Failed to bind parameter "int? page" from "x".`: name the parameter, not its .NET type.
        var bind = BindFailure().Match(e.Message);
        if (bind.Success)
        {
            return new BadRequestException($"The parameter '{bind.Groups["name"].Value}' must be {Friendly(bind.Groups["type"].Value)}, not '{bind.Groups["value"].Value}'.", "invalid_parameter");
        }

        var required = RequiredMissing().Match(e.Message);
        if (required.Success)
        {
            return new BadRequestException($"The parameter '{required.Groups["name"].Value}' is required.", "invalid_parameter");
        }

        if (e.Message.Contains("request body", StringComparison.OrdinalIgnoreCase) || e.Message.Contains("Content-Type", StringComparison.OrdinalIgnoreCase))
        {
            return new MalformedJsonException("The request needs a JSON body with 'Content-Type: application/json'.");
        }

        return new BadRequestException(WithoutTypeNames(e.Message));
    }

    /// <summary>A malformed body, named by position and field, in words rather than .NET types.</summary>
    public static MalformedJsonException Malformed(JsonException e)
    {
        ArgumentNullException.ThrowIfNull(e);
        var reason = e.Message;
        var cut = reason.IndexOf(" Path:", StringComparison.Ordinal);
        if (cut < 0)
        {
            cut = reason.IndexOf(" LineNumber:", StringComparison.Ordinal);
        }

        reason = (cut >= 0 ? reason[..cut] : reason).Trim().TrimEnd('.');
        if (reason.Contains("could not be converted to", StringComparison.Ordinal))
        {
            reason = e.Path is null or "$" ? "the body must be a JSON object" : "the value has the wrong type for this field";
        }
        else if (reason.Length == 0 || reason.StartsWith("The JSON value", StringComparison.Ordinal))
        {
            reason = "the value does not fit this field";
        }

        reason = WithoutTypeNames(reason);
        var where = new List<string>();
        if (e.Path is { Length: > 0 } path)
        {
            where.Add($"field '{path}'");
        }

        if (e.LineNumber is { } line)
        {
            where.Add($"line {line + 1}");
        }

        if (e.BytePositionInLine is { } position)
        {
            where.Add($"byte {position + 1}");
        }

        return new MalformedJsonException($"The request body is not valid JSON for this request: {reason}" + (where.Count > 0 ? $" (at {string.Join(", ", where)})." : "."));
    }

    // What a bodiless framework answer means, by status.
    private AtelierException Bare(HttpContext context) => context.Response.StatusCode switch
    {
        StatusCodes.Status413PayloadTooLarge => RequestBodyLimit.TooLarge(context, config),
        StatusCodes.Status404NotFound => new NotFoundException("route", context.Request.Path.Value ?? "/"),
        StatusCodes.Status405MethodNotAllowed => new StatusException(405, "method_not_allowed", $"'{context.Request.Method}' is not allowed on '{context.Request.Path}'."),
        StatusCodes.Status415UnsupportedMediaType => new StatusException(415, "unsupported_media_type", "The request needs a JSON body with 'Content-Type: application/json'."),
        StatusCodes.Status400BadRequest => new MalformedJsonException("The request body or its parameters could not be read; send a JSON object with 'Content-Type: application/json'."),
        var status => new StatusException(status, "error", $"The request failed with status {status}."),
    };

    private static string Friendly(string type) => type.TrimEnd('?') switch
    {
        "int" or "long" or "short" or "Int32" or "Int64" => "a whole number",
        "double" or "float" or "decimal" => "a number",
        "bool" or "Boolean" => "true or false",
        "DateTimeOffset" or "DateTime" => "a date and time (ISO 8601)",
        "Guid" => "an id",
        _ => "a valid value",
    };

    // Drops .NET type names (System.Int32, Atelier.Server.X) from framework messages.
    private static string WithoutTypeNames(string message) => TypeName().Replace(message, "the expected type");

    [System.Text.RegularExpressions.GeneratedRegex(@"(?<name>[^.\[\]]+)|\[(?<index>\d+)\]")]
    private static partial System.Text.RegularExpressions.Regex FieldPath();

    [System.Text.RegularExpressions.GeneratedRegex("Failed to bind parameter \"(?<type>[^\"]*) (?<name>[^\" ]+)\" from \"(?<value>[^\"]*)\"")]
    private static partial System.Text.RegularExpressions.Regex BindFailure();

    [System.Text.RegularExpressions.GeneratedRegex("Required parameter \"(?<type>[^\"]*) (?<name>[^\" ]+)\" was not provided")]
    private static partial System.Text.RegularExpressions.Regex RequiredMissing();

    [System.Text.RegularExpressions.GeneratedRegex("\\b(System|Microsoft|Atelier)(\\.[A-Za-z_][A-Za-z0-9_`]*)+(\\[[^\\]]*\\])?")]
    private static partial System.Text.RegularExpressions.Regex TypeName();

    private static Task WriteAsync(HttpContext context, AtelierException error)
    {
        context.Response.Clear();
        context.Response.StatusCode = error.StatusCode;
        if (error is PayloadTooLargeException)
        {
            // The rest of the body is not read; the connection cannot carry another request.
            context.Response.Headers.Connection = "close";
        }

        if (error is ServiceUnavailableException)
        {
            context.Response.Headers.RetryAfter = "5";
        }

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

        if (error is ConflictException { Derived.Count: > 0 } conflict)
        {
            problem["derived"] = DerivedJson(conflict);
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

        if (error is ConflictException { Derived.Count: > 0 } conflict)
        {
            body["derived"] = DerivedJson(conflict);
        }

        return body;
    }

    // What derives from an artifact a delete was refused for: [{"kind": "fine_tuning_job", "id": ...}].
    private static Dictionary<string, string>[] DerivedJson(ConflictException conflict) =>
        [.. conflict.Derived.Select(d => new Dictionary<string, string> { ["kind"] = d.Kind, ["id"] = d.Id })];

    private static object[] Loc(Problem p)
    {
        if (p.File is null && p.Line is null && p.Field is { } path)
        {
            // A field of a JSON body, FastAPI-style: messages[2].role is ["body", "messages", 2, "role"].
            return ["body", .. FieldPath().Matches(path).Select(m => m.Groups["index"].Success ? (object)int.Parse(m.Groups["index"].Value, System.Globalization.CultureInfo.InvariantCulture) : m.Groups["name"].Value)];
        }

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
        405 => "Method not allowed",
        413 => "Payload too large",
        415 => "Unsupported media type",
        422 => "Unprocessable content",
        451 => "Unavailable for legal reasons",
        503 => "Service unavailable",
        507 => "Insufficient storage",
        _ => "Error",
    };

    /// <summary>
    /// Every refusal of an authenticated caller is audited (placement refusals already are, by the
    /// guard): who tried what, in which workspace, and why it was refused. The path is logged
    /// without its query, which may hold a signature.
    /// </summary>
    private async Task AuditRefusalAsync(HttpContext context, AtelierException e)
    {
        if (Auth.ApiKeyAuthentication.TryCaller(context) is not { } caller)
        {
            return;
        }

        try
        {
            await audit.AppendAsync(
                new Atelier.Storage.Audit.AuditEvent
                {
                    Type = "access_refused",
                    Workspace = caller.WorkspaceId,
                    Actor = caller.Actor,
                    Detail = $"{context.Request.Method} {context.Request.Path}: {e.Message}",
                },
                CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception auditFailure) when (IsStorageFull(auditFailure))
        {
            // The refusal stands; only its record is lost, and the disk-full warning says why.
            LogStorageFull(logger, auditFailure, context.Request.Method, context.Request.Path);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Storage full in {Method} {Path}")]
    private static partial void LogStorageFull(ILogger logger, Exception exception, string method, string path);

    [LoggerMessage(Level = LogLevel.Warning, Message = "A cluster node did not answer in {Method} {Path}")]
    private static partial void LogClusterUnreachable(ILogger logger, Exception exception, string method, string path);

    [LoggerMessage(Level = LogLevel.Error, Message = "Unhandled error in {Method} {Path}")]
    private static partial void LogUnhandled(ILogger logger, Exception exception, string method, string path);

    // A status the framework chose, given a body here.
    private sealed class StatusException(int status, string code, string message) : AtelierException(message)
    {
        public override int StatusCode => status;

        public override string Code => code;
    }

    private sealed class InternalErrorException() : AtelierException("An internal error occurred; the server log has the details.")
    {
        public override int StatusCode => 500;

        public override string Code => "internal_error";
    }
}
