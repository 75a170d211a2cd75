using Atelier.Catalog;
using Atelier.Core.Errors;
using Atelier.Server.Hosting;

namespace Atelier.Server.Auth;

/// <summary>The caller of a request, once authenticated.</summary>
public sealed class RequestCaller
{
    /// <summary>The key the caller presented.</summary>
    public required ApiKeyInfo Key { get; init; }

    /// <summary>The workspace every resource lookup is scoped to.</summary>
    public string WorkspaceId => Key.WorkspaceId;

    /// <summary>The actor recorded in audit events.</summary>
    public string Actor => "key:" + Key.Id;
}

/// <summary>
/// Requires <c>Authorization: Bearer &lt;key&gt;</c> on every <c>/v1</c> and <c>/api/v1</c> call.
/// The one exception is a file download that carries a valid URL signature, which its endpoint
/// checks itself.
/// </summary>
public sealed class ApiKeyAuthentication(RequestDelegate next, ApiKeyStore keys)
{
    private const string CallerKey = "atelier.caller";

    /// <summary>Authenticates, then calls the rest of the pipeline.</summary>
    public async Task InvokeAsync(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var path = context.Request.Path;
        if (!path.StartsWithSegments("/v1") && !path.StartsWithSegments("/api/v1"))
        {
            await next(context).ConfigureAwait(false);
            return;
        }

        var header = context.Request.Headers.Authorization.ToString();
        if (header.Length == 0)
        {
            if (context.Request.Query.ContainsKey("signature") && path.StartsWithSegments("/v1/files"))
            {
                await next(context).ConfigureAwait(false);
                return;
            }

            throw new UnauthorizedException("Missing 'Authorization: Bearer <key>' header.");
        }

        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            throw new UnauthorizedException("The Authorization header must be 'Bearer <key>'.");
        }

        var key = await keys.AuthenticateAsync(header["Bearer ".Length..].Trim(), context.RequestAborted).ConfigureAwait(false)
            ?? throw new UnauthorizedException("The API key is not valid, or was revoked.");
        context.Items[CallerKey] = new RequestCaller { Key = key };
        await next(context).ConfigureAwait(false);
    }

    /// <summary>The authenticated caller of the request.</summary>
    public static RequestCaller Caller(HttpContext context) =>
        context.Items.TryGetValue(CallerKey, out var caller) && caller is RequestCaller c
            ? c
            : throw new UnauthorizedException("Missing 'Authorization: Bearer <key>' header.");

    /// <summary>The caller, or null for a signed, key-less request.</summary>
    public static RequestCaller? TryCaller(HttpContext context) =>
        context.Items.TryGetValue(CallerKey, out var caller) ? caller as RequestCaller : null;

    /// <summary>The caller, who must hold an admin key of its workspace (or the operator's key).</summary>
    public static RequestCaller Admin(HttpContext context)
    {
        var caller = Caller(context);
        return caller.Key.IsAdmin ? caller : throw new ForbiddenException("This operation needs an admin key of the workspace.");
    }

    /// <summary>The caller, who must hold the platform operator's key.</summary>
    public static RequestCaller Operator(HttpContext context)
    {
        var caller = Caller(context);
        return caller.Key.IsOperator ? caller : throw new ForbiddenException("This operation needs the platform operator's key.");
    }
}
