using Atelier.Core.Errors;
using Atelier.Server.Auth;
using Atelier.Server.Errors;
using Atelier.Server.Hosting;
using Atelier.Storage.Audit;

namespace Atelier.Server.Platform;

/// <summary>The body of <c>POST /api/v1/keys</c>.</summary>
/// <param name="Name">A label for the key.</param>
/// <param name="Workspace">The workspace it acts in (created if new); the caller's when absent.</param>
/// <param name="Role"><c>member</c> (default) or <c>admin</c>.</param>
public sealed record CreateKeyRequest(string? Name, string? Workspace, string? Role);

/// <summary>The platform's own resources under <c>/api/v1</c>: keys, locations, policies, audit.</summary>
public static class PlatformEndpoints
{
    /// <summary>Maps <c>/api/v1</c>.</summary>
    public static void MapPlatform(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/v1");

        api.MapGet("/locations", (AtelierRuntime runtime) =>
            Results.Json(new { data = runtime.Locations.All.ToArray() }, AtelierJson.Options))
            .WithTags("Locations").WithSummary("Where bytes can live, with jurisdiction, site, rack, on-prem and operator.");

        api.MapGet("/policies", (AtelierRuntime runtime) =>
            Results.Json(new { data = runtime.Config.Policies, defaults = runtime.Config.Defaults }, AtelierJson.Options))
            .WithTags("Locations").WithSummary("Residency policies and which applies by default.");

        var keys = api.MapGroup("/keys").WithTags("Keys");
        keys.MapPost("", async (HttpContext context, CreateKeyRequest? body, AtelierRuntime runtime) =>
        {
            var caller = ApiKeyAuthentication.Admin(context);
            var name = string.IsNullOrWhiteSpace(body?.Name) ? "key" : body.Name.Trim();
            var role = body?.Role ?? "member";
            if (role is not ("admin" or "member"))
            {
                throw new BadRequestException($"Unknown role '{role}'; expected admin or member.");
            }

            var workspaceName = string.IsNullOrWhiteSpace(body?.Workspace) ? caller.Key.WorkspaceName : body.Workspace.Trim();
            if (workspaceName.Length > 64 || !workspaceName.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
            {
                throw new BadRequestException("A workspace name is 1 to 64 letters, digits, '-' or '_'.");
            }

            var workspace = runtime.Keys.EnsureWorkspace(workspaceName);
            var (key, token) = runtime.Keys.Create(workspace, name, role);
            await runtime.Audit.AppendAsync(new AuditEvent { Type = "key_created", Workspace = workspace.Name, Actor = caller.Actor, ArtifactKind = "api_key", ArtifactId = key.Id, Detail = $"role {role}" }, CancellationToken.None).ConfigureAwait(false);
            return Results.Json(new { key.Id, key = token, workspace = workspace.Name, key.Name, key.Role, key.CreatedAt }, AtelierJson.Options, statusCode: StatusCodes.Status201Created);
        }).WithSummary("Create an API key (admin). The key is shown once.");

        keys.MapGet("", (HttpContext context, AtelierRuntime runtime) =>
        {
            ApiKeyAuthentication.Admin(context);
            return Results.Json(new { data = runtime.Keys.List(null).Select(k => new { k.Id, workspace = k.WorkspaceName, k.Name, k.Role, k.CreatedAt, k.RevokedAt }) }, AtelierJson.Options);
        }).WithSummary("List API keys (admin); secrets are never shown.");

        keys.MapDelete("/{keyId}", async (HttpContext context, string keyId, AtelierRuntime runtime) =>
        {
            var caller = ApiKeyAuthentication.Admin(context);
            if (!runtime.Keys.Revoke(keyId))
            {
                throw new NotFoundException("api key", keyId);
            }

            await runtime.Audit.AppendAsync(new AuditEvent { Type = "key_revoked", Workspace = caller.Key.WorkspaceName, Actor = caller.Actor, ArtifactKind = "api_key", ArtifactId = keyId }, CancellationToken.None).ConfigureAwait(false);
            return Results.Json(new { id = keyId, revoked = true }, AtelierJson.Options);
        }).WithSummary("Revoke an API key (admin).");

        api.MapAudit();
    }
}
