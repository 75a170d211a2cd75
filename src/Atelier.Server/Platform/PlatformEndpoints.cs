using Atelier.Catalog;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Core.Residency;
using Atelier.Server.Auth;
using Atelier.Server.Errors;
using Atelier.Server.Hosting;
using Atelier.Storage.Audit;
using Atelier.Storage.Placement;

namespace Atelier.Server.Platform;

/// <summary>The body of <c>POST /api/v1/keys</c>.</summary>
/// <param name="Name">A label for the key.</param>
/// <param name="Workspace">The workspace it acts in: the caller's when absent; another (created if new) only for the operator.</param>
/// <param name="Role"><c>member</c> (default), <c>admin</c>, or (operator only) <c>operator</c>.</param>
public sealed record CreateKeyRequest(string? Name, string? Workspace, string? Role);

/// <summary>The body of <c>POST /api/v1/policies</c>: a new residency policy.</summary>
/// <param name="Name">Its name: letters, digits, '-' and '_'.</param>
/// <param name="AllowedJurisdictions">Country codes or blocs the bytes may live in; <c>*</c> for any.</param>
/// <param name="AllowedOperators">Operators allowed to hold the bytes; empty for any.</param>
/// <param name="MinReplicas">Copies needed (1 when absent).</param>
/// <param name="RequireOnPrem">Whether one copy must be on-prem.</param>
public sealed record CreatePolicyRequest(string? Name, IReadOnlyList<string>? AllowedJurisdictions, IReadOnlyList<string>? AllowedOperators, int? MinReplicas, bool? RequireOnPrem);

/// <summary>Which policies a workspace may use: the body of <c>PUT /api/v1/workspaces/{name}/policies</c>.</summary>
/// <param name="DefaultPolicy">The policy of its uploads and new artifacts.</param>
/// <param name="AllowedPolicies">The policies its members may choose (the default is added); stricter ones are allowed too.</param>
public sealed record WorkspacePoliciesRequest(string? DefaultPolicy, IReadOnlyList<string>? AllowedPolicies);

/// <summary>A key as created: its secret is shown this once.</summary>
/// <param name="Id">Its id.</param>
/// <param name="Key">The secret, for <c>Authorization: Bearer</c>.</param>
/// <param name="Workspace">Its workspace's name.</param>
/// <param name="WorkspaceId">Its workspace's id.</param>
/// <param name="Name">Its name.</param>
/// <param name="Role"><c>operator</c>, <c>admin</c> or <c>member</c>.</param>
/// <param name="CreatedAt">Unix seconds.</param>
public sealed record CreatedKeyObject(string Id, string Key, string Workspace, string WorkspaceId, string Name, string Role, long CreatedAt);

/// <summary>A key as listed (never its secret).</summary>
/// <param name="Id">Its id.</param>
/// <param name="Workspace">Its workspace's name.</param>
/// <param name="WorkspaceId">Its workspace's id.</param>
/// <param name="Name">Its name.</param>
/// <param name="Role"><c>operator</c>, <c>admin</c> or <c>member</c>.</param>
/// <param name="CreatedAt">Unix seconds.</param>
/// <param name="RevokedAt">Unix seconds, once revoked.</param>
public sealed record KeyObject(string Id, string Workspace, string WorkspaceId, string Name, string Role, long CreatedAt, long? RevokedAt);

/// <summary>The answer to a revocation.</summary>
/// <param name="Id">The key.</param>
/// <param name="Revoked">Always true.</param>
public sealed record RevokedKeyObject(string Id, bool Revoked);

/// <summary>A workspace and the policies it may use.</summary>
/// <param name="Id">Its id.</param>
/// <param name="Name">Its name.</param>
/// <param name="DefaultPolicy">The policy of what it stores when none is named.</param>
/// <param name="AllowedPolicies">The policies it may use.</param>
/// <param name="Governed">Whether the operator set them (else the installation's defaults apply).</param>
public sealed record WorkspaceObject(string Id, string Name, string DefaultPolicy, IReadOnlyList<string> AllowedPolicies, bool Governed);

/// <summary>A residency policy.</summary>
/// <param name="Name">Its name.</param>
/// <param name="AllowedJurisdictions">Where its bytes may be.</param>
/// <param name="AllowedOperators">Who may operate the locations (any when empty).</param>
/// <param name="MinReplicas">Copies it needs.</param>
/// <param name="RequireOnPrem">Whether locations must be on premises.</param>
/// <param name="Source"><c>operator</c> (defined through the API) or <c>config</c>.</param>
/// <param name="UsableHere">Whether the caller's workspace may use it.</param>
public sealed record PolicyObject(string Name, IReadOnlyList<string> AllowedJurisdictions, IReadOnlyList<string> AllowedOperators, int MinReplicas, bool RequireOnPrem, string Source, bool UsableHere);

/// <summary>The caller's workspace as the policy list shows it.</summary>
/// <param name="Id">Its id.</param>
/// <param name="Name">Its name.</param>
/// <param name="DefaultPolicy">Its default policy.</param>
/// <param name="AllowedPolicies">The policies it may use.</param>
public sealed record PolicyWorkspaceObject(string Id, string Name, string DefaultPolicy, IReadOnlyList<string> AllowedPolicies);

/// <summary>The policies, the installation's defaults, and the caller's workspace.</summary>
/// <param name="Data">Every policy.</param>
/// <param name="Defaults">The installation's defaults.</param>
/// <param name="Workspace">The caller's workspace.</param>
public sealed record PolicyList(IReadOnlyList<PolicyObject> Data, DefaultsConfig Defaults, PolicyWorkspaceObject Workspace);

/// <summary>The body of <c>POST /api/v1/workspaces</c>.</summary>
/// <param name="Name">The workspace's name.</param>
/// <param name="DefaultPolicy">Its default policy; the installation's when absent.</param>
/// <param name="AllowedPolicies">Its allowed policies; the default alone when absent.</param>
public sealed record CreateWorkspaceRequest(string? Name, string? DefaultPolicy, IReadOnlyList<string>? AllowedPolicies);

/// <summary>
/// The platform's own resources under <c>/api/v1</c>: keys, workspaces, locations, policies (the
/// audit log is in <see cref="AuditEndpoints"/>). The operator manages what workspaces share; an
/// admin manages its own workspace's keys; nobody acts in another workspace.
/// </summary>
public static class PlatformEndpoints
{
    /// <summary>Maps <c>/api/v1</c>.</summary>
    public static void MapPlatform(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/v1");

        api.MapGet("/locations", (StorageLocations locations) =>
            Results.Json(new { data = locations.All.ToArray() }, AtelierJson.Options))
            .WithTags("Locations").WithSummary("Where bytes can live, with jurisdiction, site, rack, on-prem and operator.").WithName("listLocations").Produces<DataList<LocationDescriptor>>();

        api.MapPolicies();
        api.MapWorkspaces();
        api.MapKeys();
        api.MapAudit();
    }

    private static void MapKeys(this IEndpointRouteBuilder api)
    {
        var group = api.MapGroup("/keys").WithTags("Keys");
        group.MapPost("", async (HttpContext context, CreateKeyRequest? body, ApiKeyStore keys, AuditLog audit) =>
        {
            var caller = ApiKeyAuthentication.Admin(context);
            var name = string.IsNullOrWhiteSpace(body?.Name) ? "key" : body.Name.Trim();
            var role = body?.Role ?? ApiKeyRoles.Member;
            if (!ApiKeyRoles.IsKnown(role))
            {
                throw new BadRequestException($"Unknown role '{role}'; expected admin or member (or, for the operator, operator).", "invalid_role");
            }

            if (role == ApiKeyRoles.Operator && !caller.Key.IsOperator)
            {
                throw new ForbiddenException("Only the platform operator creates operator keys.");
            }

            var workspaceName = string.IsNullOrWhiteSpace(body?.Workspace) ? caller.Key.WorkspaceName : body.Workspace.Trim();
            Workspace workspace;
            if (workspaceName == caller.Key.WorkspaceName)
            {
                workspace = new Workspace(caller.WorkspaceId, caller.Key.WorkspaceName);
            }
            else if (!caller.Key.IsOperator)
            {
                throw new ForbiddenException($"An admin creates keys only in its own workspace ('{caller.Key.WorkspaceName}'), not in '{workspaceName}'.");
            }
            else
            {
                workspace = await keys.FindWorkspaceAsync(workspaceName, context.RequestAborted).ConfigureAwait(false) ?? await CreateWorkspaceAsync(keys, audit, caller, workspaceName).ConfigureAwait(false);
            }

            var (key, token) = await keys.CreateAsync(workspace, name, role, CancellationToken.None).ConfigureAwait(false);
            try
            {
                await audit.AppendAsync(new AuditEvent { Type = "key_created", Workspace = workspace.Id, Actor = caller.Actor, ArtifactKind = "api_key", ArtifactId = key.Id, Detail = $"role {role}" }, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception)
            {
                // No key without its record: the token was never shown, so the key is simply forgotten.
                await keys.ForgetAsync(key.Id, CancellationToken.None).ConfigureAwait(false);
                throw;
            }

            return Results.Json(new { key.Id, key = token, workspace = workspace.Name, workspace_id = workspace.Id, key.Name, key.Role, key.CreatedAt }, AtelierJson.Options, statusCode: StatusCodes.Status201Created);
        }).WithSummary("Create an API key: an admin in its own workspace, the operator in any. The key is shown once.").WithName("createKey").Produces<CreatedKeyObject>(StatusCodes.Status201Created).ProducesErrors(403, 409, 422);

        group.MapGet("", async (HttpContext context, ApiKeyStore keys) =>
        {
            var caller = ApiKeyAuthentication.Admin(context);
            var visible = await keys.ListAsync(caller.Key.IsOperator ? null : caller.WorkspaceId, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new { data = visible.Select(k => new { k.Id, workspace = k.WorkspaceName, workspace_id = k.WorkspaceId, k.Name, k.Role, k.CreatedAt, k.RevokedAt }) }, AtelierJson.Options);
        }).WithSummary("List API keys: an admin its workspace's, the operator every workspace's. Secrets are never shown.").WithName("listKeys").Produces<DataList<KeyObject>>().ProducesErrors(403);

        group.MapDelete("/{keyId}", async (HttpContext context, string keyId, ApiKeyStore keys, AuditLog audit) =>
        {
            var caller = ApiKeyAuthentication.Admin(context);
            var key = await keys.GetAsync(keyId, context.RequestAborted).ConfigureAwait(false);

            // Another workspace's key is as absent as a key that never existed: an admin learns nothing about it.
            if (key is null || key.RevokedAt is not null || (!caller.Key.IsOperator && key.WorkspaceId != caller.WorkspaceId))
            {
                throw new NotFoundException("api key", keyId);
            }

            if (key.IsOperator && !caller.Key.IsOperator)
            {
                throw new ForbiddenException("Only the platform operator revokes an operator key.");
            }

            if (key.IsOperator && (await keys.ListAsync(null, context.RequestAborted).ConfigureAwait(false)).Count(k => k.IsOperator && k.RevokedAt is null) == 1)
            {
                throw new ConflictException("This is the last live operator key; create another operator key before revoking it, or nobody could govern the installation.");
            }

            if (!await keys.RevokeAsync(keyId, CancellationToken.None).ConfigureAwait(false))
            {
                throw new NotFoundException("api key", keyId);
            }

            await audit.AppendAsync(new AuditEvent { Type = "key_revoked", Workspace = key.WorkspaceId, Actor = caller.Actor, ArtifactKind = "api_key", ArtifactId = keyId }, CancellationToken.None).ConfigureAwait(false);
            return Results.Json(new { id = keyId, revoked = true }, AtelierJson.Options);
        }).WithSummary("Revoke an API key: an admin its workspace's, the operator any.").WithName("revokeKey").Produces<RevokedKeyObject>().ProducesErrors(403);
    }

    private static void MapWorkspaces(this IEndpointRouteBuilder api)
    {
        var workspaces = api.MapGroup("/workspaces").WithTags("Workspaces");
        workspaces.MapGet("", async (HttpContext context, ApiKeyStore keys, PolicyCatalog policies) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var visible = caller.Key.IsOperator ? await keys.ListWorkspacesAsync(context.RequestAborted).ConfigureAwait(false) : [new Workspace(caller.WorkspaceId, caller.Key.WorkspaceName)];
            var described = new List<object>(visible.Count);
            foreach (var workspace in visible)
            {
                described.Add(await DescribeAsync(policies, workspace, context.RequestAborted).ConfigureAwait(false));
            }

            return Results.Json(new { data = described }, AtelierJson.Options);
        }).WithSummary("Workspaces and the policies each may use: the operator sees every one, others their own.").WithName("listWorkspaces").Produces<DataList<WorkspaceObject>>();

        workspaces.MapGet("/{name}", async (HttpContext context, string name, ApiKeyStore keys, PolicyCatalog policies) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var workspace = caller.Key.IsOperator || name == caller.Key.WorkspaceName ? await keys.FindWorkspaceAsync(name, context.RequestAborted).ConfigureAwait(false) : null;
            return Results.Json(await DescribeAsync(policies, workspace ?? throw new NotFoundException("workspace", name), context.RequestAborted).ConfigureAwait(false), AtelierJson.Options);
        }).WithSummary("One workspace and the policies it may use.").WithName("getWorkspace").Produces<WorkspaceObject>();

        workspaces.MapPost("", async (HttpContext context, CreateWorkspaceRequest? body, ApiKeyStore keys, PolicyCatalog policies, AuditLog audit) =>
        {
            var caller = ApiKeyAuthentication.Operator(context);
            var name = body?.Name?.Trim() ?? "";
            if (await keys.FindWorkspaceAsync(name, context.RequestAborted).ConfigureAwait(false) is not null)
            {
                throw new ConflictException($"A workspace named '{name}' exists.");
            }

            var workspace = await CreateWorkspaceAsync(keys, audit, caller, name).ConfigureAwait(false);
            if (body?.DefaultPolicy is not null || body?.AllowedPolicies is not null)
            {
                await GovernAsync(policies, audit, caller, workspace, body.DefaultPolicy, body.AllowedPolicies).ConfigureAwait(false);
            }

            return Results.Json(await DescribeAsync(policies, workspace, CancellationToken.None).ConfigureAwait(false), AtelierJson.Options, statusCode: StatusCodes.Status201Created);
        }).WithSummary("Create a workspace (operator).").WithName("createWorkspace").Produces<WorkspaceObject>(StatusCodes.Status201Created).ProducesErrors(403, 409, 422);

        workspaces.MapPut("/{name}/policies", async (HttpContext context, string name, WorkspacePoliciesRequest? body, ApiKeyStore keys, PolicyCatalog policies, AuditLog audit) =>
        {
            var caller = ApiKeyAuthentication.Operator(context);
            var workspace = await keys.FindWorkspaceAsync(name, context.RequestAborted).ConfigureAwait(false) ?? throw new NotFoundException("workspace", name);
            await GovernAsync(policies, audit, caller, workspace, body?.DefaultPolicy, body?.AllowedPolicies).ConfigureAwait(false);
            return Results.Json(await DescribeAsync(policies, workspace, CancellationToken.None).ConfigureAwait(false), AtelierJson.Options);
        }).WithSummary("Set which residency policies a workspace may use, and its default (operator).").WithName("setWorkspacePolicies").Produces<WorkspaceObject>().ProducesErrors(403, 422);
    }

    private static void MapPolicies(this IEndpointRouteBuilder api)
    {
        var policies = api.MapGroup("/policies").WithTags("Policies");
        policies.MapGet("", async (HttpContext context, PolicyCatalog catalog, AtelierConfig config) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var mine = await catalog.ForWorkspaceAsync(caller.WorkspaceId, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(
                new
                {
                    data = catalog.All.Select(p => Describe(catalog, p, mine)),
                    defaults = config.Defaults,
                    workspace = new { id = caller.WorkspaceId, name = caller.Key.WorkspaceName, default_policy = mine.DefaultPolicy, allowed_policies = mine.AllowedPolicies },
                },
                AtelierJson.Options);
        }).WithSummary("Residency policies, which of them the caller's workspace may use, and its default.").WithName("listPolicies").Produces<PolicyList>();

        policies.MapPost("", async (HttpContext context, CreatePolicyRequest? body, PolicyCatalog catalog, AuditLog audit) =>
        {
            var caller = ApiKeyAuthentication.Operator(context);
            var policy = await catalog.DefineAsync(ToPolicy(body), caller.Actor, CancellationToken.None).ConfigureAwait(false);
            await audit.AppendAsync(
                new AuditEvent
                {
                    Type = "policy_created",
                    Workspace = caller.WorkspaceId,
                    Actor = caller.Actor,
                    ArtifactKind = "policy",
                    ArtifactId = policy.Name,
                    Policy = policy.Name,
                    Detail = $"jurisdictions [{string.Join(", ", policy.AllowedJurisdictions)}], operators [{string.Join(", ", policy.AllowedOperators)}], replicas {policy.MinReplicas}, on-prem {(policy.RequireOnPrem ? "required" : "not required")}",
                },
                CancellationToken.None).ConfigureAwait(false);
            var mine = await catalog.ForWorkspaceAsync(caller.WorkspaceId, CancellationToken.None).ConfigureAwait(false);
            return Results.Json(Describe(catalog, policy, mine), AtelierJson.Options, statusCode: StatusCodes.Status201Created);
        }).WithSummary("Define a new residency policy (operator). A name never changes meaning once defined.").WithName("createPolicy").Produces<PolicyObject>(StatusCodes.Status201Created).ProducesErrors(403, 409, 422);
    }

    private static async Task<Workspace> CreateWorkspaceAsync(ApiKeyStore keys, AuditLog audit, RequestCaller caller, string name)
    {
        if (WorkspaceNames.Problem(name) is { } problem)
        {
            throw new BadRequestException(problem, "invalid_workspace");
        }

        var workspace = await keys.EnsureWorkspaceAsync(name, CancellationToken.None).ConfigureAwait(false);
        await audit.AppendAsync(new AuditEvent { Type = "workspace_created", Workspace = workspace.Id, Actor = caller.Actor, ArtifactKind = "workspace", ArtifactId = workspace.Id, Detail = $"name {workspace.Name}" }, CancellationToken.None).ConfigureAwait(false);
        return workspace;
    }

    private static async Task GovernAsync(PolicyCatalog policies, AuditLog audit, RequestCaller caller, Workspace workspace, string? defaultPolicy, IReadOnlyList<string>? allowed)
    {
        var current = await policies.ForWorkspaceAsync(workspace.Id, CancellationToken.None).ConfigureAwait(false);
        var chosenDefault = defaultPolicy?.Trim() ?? current.DefaultPolicy;
        var governed = await policies.GovernAsync(workspace.Id, chosenDefault, allowed ?? current.AllowedPolicies, CancellationToken.None).ConfigureAwait(false);
        await audit.AppendAsync(
            new AuditEvent
            {
                Type = "workspace_policies_set",
                Workspace = workspace.Id,
                Actor = caller.Actor,
                ArtifactKind = "workspace",
                ArtifactId = workspace.Id,
                Policy = governed.DefaultPolicy,
                Detail = $"default {governed.DefaultPolicy}; allowed [{string.Join(", ", governed.AllowedPolicies)}] (was default {current.DefaultPolicy}; allowed [{string.Join(", ", current.AllowedPolicies)}])",
            },
            CancellationToken.None).ConfigureAwait(false);
    }

    private static ResidencyPolicy ToPolicy(CreatePolicyRequest? body)
    {
        var problems = new List<Problem>();
        var name = body?.Name?.Trim() ?? "";
        if (name.Length is 0 or > 64 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
        {
            problems.Add(new Problem("A policy name is 1 to 64 letters, digits, '-' or '_'.", Field: "name"));
        }

        var jurisdictions = body?.AllowedJurisdictions ?? [];
        if (jurisdictions.Count == 0)
        {
            problems.Add(new Problem("List at least one jurisdiction: a country code such as FR, a bloc such as EU, or * for any.", Field: "allowed_jurisdictions"));
        }

        for (var i = 0; i < jurisdictions.Count; i++)
        {
            var j = jurisdictions[i];
            if (j != "*" && (j is null || j.Length is < 2 or > 8 || !j.All(char.IsAsciiLetterUpper)))
            {
                problems.Add(new Problem($"'{j}' is not a jurisdiction: use an upper-case country code (FR), a bloc (EU, EEA) or *.", Field: $"allowed_jurisdictions[{i}]"));
            }
        }

        var operators = body?.AllowedOperators ?? [];
        for (var i = 0; i < operators.Count; i++)
        {
            if (string.IsNullOrWhiteSpace(operators[i]) || operators[i].Length > 64)
            {
                problems.Add(new Problem("An operator name is 1 to 64 characters.", Field: $"allowed_operators[{i}]"));
            }
        }

        var replicas = body?.MinReplicas ?? 1;
        if (replicas is < 1 or > 16)
        {
            problems.Add(new Problem("min_replicas is between 1 and 16.", Field: "min_replicas"));
        }

        if (problems.Count > 0)
        {
            throw new ValidationFailedException("The policy is not valid.", problems, problems.Count, "invalid_policy");
        }

        return new ResidencyPolicy { Name = name, AllowedJurisdictions = [.. jurisdictions], AllowedOperators = [.. operators], MinReplicas = replicas, RequireOnPrem = body?.RequireOnPrem ?? false };
    }

    private static async Task<object> DescribeAsync(PolicyCatalog policies, Workspace workspace, CancellationToken cancellationToken)
    {
        var governed = await policies.ForWorkspaceAsync(workspace.Id, cancellationToken).ConfigureAwait(false);
        return new { id = workspace.Id, name = workspace.Name, default_policy = governed.DefaultPolicy, allowed_policies = governed.AllowedPolicies, governed = governed.Explicit };
    }

    private static object Describe(PolicyCatalog policies, ResidencyPolicy policy, WorkspacePolicies governed) => new
    {
        name = policy.Name,
        allowed_jurisdictions = policy.AllowedJurisdictions,
        allowed_operators = policy.AllowedOperators,
        min_replicas = policy.MinReplicas,
        require_on_prem = policy.RequireOnPrem,
        source = policies.IsOperatorDefined(policy.Name) ? "operator" : "config",
        usable_here = policies.Refusal(governed, policy.Name) is null,
    };
}
