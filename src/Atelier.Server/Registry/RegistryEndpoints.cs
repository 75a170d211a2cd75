using System.Text.Json;
using System.Text.Json.Nodes;
using Atelier.Catalog;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Registry;
using Atelier.Server.Auth;
using Atelier.Server.Errors;
using Atelier.Server.Hosting;
using Atelier.Training.Evaluation;

namespace Atelier.Server.Registry;

/// <summary>
/// <c>/api/v1/registry/models</c>: registered model names, their versions in order, aliases with the
/// history of every move, and evaluations of a version. A workspace sees its own names (its
/// fine-tunes') and the base models' names, which are shared; another workspace's names answer 404.
/// Only the operator may alias a base model's name.
/// </summary>
public static class RegistryEndpoints
{
    /// <summary>Maps the registry routes.</summary>
    public static void MapRegistry(this IEndpointRouteBuilder app)
    {
        var models = app.MapGroup("/api/v1/registry/models").WithTags("Registry");
        models.MapGet("", async (HttpContext context, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var names = await registry.ListNamesAsync(caller.WorkspaceId, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new JsonObject { ["object"] = "list", ["data"] = new JsonArray([.. names.Select(n => (JsonNode)Name(n))]) }, AtelierJson.Options);
        }).WithSummary("Registered model names the workspace sees (its fine-tunes' and the base models'), each with its latest version and aliases.");

        models.MapGet("/{name}", async (HttpContext context, string name, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            return Results.Json(Name(await registry.GetNameAsync(caller.WorkspaceId, name, context.RequestAborted).ConfigureAwait(false)), AtelierJson.Options);
        }).WithSummary("A registered model name with its latest version and aliases.");

        models.MapGet("/{name}/versions", async (HttpContext context, string name, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var (found, versions) = await registry.ListVersionsAsync(caller.WorkspaceId, name, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new JsonObject { ["object"] = "list", ["data"] = new JsonArray([.. versions.Select(v => (JsonNode)Version(v, found.Record.Aliases))]) }, AtelierJson.Options);
        }).WithSummary("The versions of a registered name, oldest first, each with its model, job, creation time and status.");

        models.MapGet("/{name}/versions/{version:int}", async (HttpContext context, string name, int version, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var found = await registry.GetVersionAsync(caller.WorkspaceId, name, version, context.RequestAborted).ConfigureAwait(false);
            var aliases = (await registry.GetNameAsync(caller.WorkspaceId, name, context.RequestAborted).ConfigureAwait(false)).Record.Aliases;
            return Results.Json(Version(found.Version, aliases), AtelierJson.Options);
        }).WithSummary("One version of a registered name.");

        models.MapPut("/{name}/aliases/{alias}", async (HttpContext context, string name, string alias, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            RegisteredNames.ValidateAlias(alias);
            var (version, reason) = await ReadAliasBodyAsync(context).ConfigureAwait(false);
            var change = await registry.MoveAliasAsync(caller.WorkspaceId, caller.Actor, caller.Key.IsOperator, name, alias, version, reason, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(Change(name, alias, change), AtelierJson.Options);
        }).WithSummary("Set or move an alias to a version ({\"version\": N, \"reason\": \"...\"}); the move is kept in the alias's history and audited. Base model names: operator only.");

        models.MapDelete("/{name}/aliases/{alias}", async (HttpContext context, string name, string alias, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            RegisteredNames.ValidateAlias(alias);
            var reason = context.Request.Query["reason"].FirstOrDefault();
            var change = await registry.MoveAliasAsync(caller.WorkspaceId, caller.Actor, caller.Key.IsOperator, name, alias, null, reason, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(Change(name, alias, change), AtelierJson.Options);
        }).WithSummary("Remove an alias (?reason=...); the removal is kept in its history and audited.");

        models.MapGet("/{name}/aliases/{alias}/history", async (HttpContext context, string name, string alias, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            RegisteredNames.ValidateAlias(alias);
            var moves = await registry.AliasHistoryAsync(caller.WorkspaceId, name, alias, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new JsonObject { ["object"] = "list", ["data"] = new JsonArray([.. moves.Select(m => (JsonNode)Move(m))]) }, AtelierJson.Options);
        }).WithSummary("Every move of an alias, oldest first: who, when, from which version to which, and why.");

        models.MapPost("/{name}/versions/{version:int}/evaluations", async (HttpContext context, string name, int version, ModelEvaluator evaluator) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var (fileId, seqLen) = await ReadEvaluationBodyAsync(context).ConfigureAwait(false);
            var (record, _) = await evaluator.EvaluateAsync(caller.WorkspaceId, caller.Actor, name, version, fileId, seqLen, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(Evaluation(record), AtelierJson.Options, statusCode: StatusCodes.Status201Created);
        }).WithSummary("Evaluate a version on a validation file (loss and token accuracy, and the same for its base model) and store the result with the version. Runs while the request waits; one at a time.");

        models.MapGet("/{name}/versions/{version:int}/evaluations", async (HttpContext context, string name, int version, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var evaluations = await registry.ListEvaluationsAsync(caller.WorkspaceId, name, version, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new JsonObject { ["object"] = "list", ["data"] = new JsonArray([.. evaluations.Select(e => (JsonNode)Evaluation(e))]) }, AtelierJson.Options);
        }).WithSummary("The workspace's evaluations of a version, oldest first.");
    }

    private static JsonObject Name(RegisteredName name)
    {
        var r = name.Record;
        return new JsonObject
        {
            ["object"] = "registered_model",
            ["name"] = r.Name,
            ["shared"] = name.Shared,
            ["latest_version"] = r.LatestVersion,
            ["latest_model_id"] = r.LatestModelId,
            ["versions"] = r.Versions,
            ["updated_at"] = r.UpdatedAt,
            ["aliases"] = new JsonArray([.. r.Aliases.Select(a => (JsonNode)new JsonObject
            {
                ["alias"] = a.Alias,
                ["version"] = a.Version,
                ["updated_at"] = a.UpdatedAt,
                ["updated_by"] = a.UpdatedBy,
            })]),
        };
    }

    private static JsonObject Version(ModelVersionRecord v, IReadOnlyList<ModelAliasRecord> aliases) => new()
    {
        ["object"] = "model_version",
        ["name"] = v.Name,
        ["version"] = v.Version,
        ["model_id"] = v.ModelId,
        ["job_id"] = v.JobId,
        ["created_at"] = v.CreatedAt,
        ["created_by"] = v.CreatedBy,
        ["status"] = v.Status,
        ["aliases"] = new JsonArray([.. aliases.Where(a => a.Version == v.Version).Select(a => (JsonNode)JsonValue.Create(a.Alias))]),
    };

    private static JsonObject Change(string name, string alias, AliasChange change) => new()
    {
        ["object"] = "model_alias",
        ["name"] = name,
        ["alias"] = alias,
        ["version"] = change.Version,
        ["changed"] = change.Changed,
        ["move"] = change.Move is { } m ? Move(m) : null,
    };

    private static JsonObject Move(ModelAliasMove m) => new()
    {
        ["seq"] = m.Sequence,
        ["alias"] = m.Alias,
        ["from_version"] = m.FromVersion,
        ["to_version"] = m.ToVersion,
        ["actor"] = m.Actor,
        ["workspace_id"] = m.WorkspaceId,
        ["reason"] = m.Reason,
        ["at"] = m.At,
    };

    private static JsonObject Evaluation(ModelEvaluationRecord e) => new()
    {
        ["object"] = "model_evaluation",
        ["id"] = e.Id,
        ["name"] = e.Name,
        ["version"] = e.Version,
        ["model_id"] = e.ModelId,
        ["file_id"] = e.FileId,
        ["created_at"] = e.CreatedAt,
        ["created_by"] = e.CreatedBy,
        ["result"] = JsonNode.Parse(e.ResultJson),
    };

    private static async Task<(int Version, string? Reason)> ReadAliasBodyAsync(HttpContext context)
    {
        using var document = await ReadObjectAsync(context, "'version' (a version number) and optionally 'reason'").ConfigureAwait(false);
        var root = document.RootElement;
        var problems = new List<Problem>();
        var version = 0;
        if (!root.TryGetProperty("version", out var v) || v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out version) || version < 1)
        {
            problems.Add(new Problem("'version' is required: a version number (1, 2, ...) of the registered name.", Field: "version"));
        }

        string? reason = null;
        if (root.TryGetProperty("reason", out var r) && r.ValueKind != JsonValueKind.Null)
        {
            if (r.ValueKind != JsonValueKind.String || r.GetString()!.Length > 1024)
            {
                problems.Add(new Problem("'reason' must be a string of at most 1024 characters.", Field: "reason"));
            }
            else
            {
                reason = r.GetString();
            }
        }

        return problems.Count > 0 ? throw new ValidationFailedException(problems[0].Message, problems, problems.Count, "invalid_request") : (version, reason);
    }

    private static async Task<(string FileId, int? SeqLen)> ReadEvaluationBodyAsync(HttpContext context)
    {
        using var document = await ReadObjectAsync(context, "'file_id' (a validation file) and optionally 'seq_len'").ConfigureAwait(false);
        var root = document.RootElement;
        var problems = new List<Problem>();
        string? fileId = null;
        if (root.TryGetProperty("file_id", out var f) && f.ValueKind == JsonValueKind.String && !string.IsNullOrWhiteSpace(f.GetString()))
        {
            fileId = f.GetString();
        }
        else
        {
            problems.Add(new Problem("'file_id' is required: a file uploaded with purpose 'fine-tune'.", Field: "file_id"));
        }

        int? seqLen = null;
        if (root.TryGetProperty("seq_len", out var s) && s.ValueKind != JsonValueKind.Null)
        {
            if (s.ValueKind == JsonValueKind.Number && s.TryGetInt32(out var n) && n >= 2)
            {
                seqLen = n;
            }
            else
            {
                problems.Add(new Problem("'seq_len' must be an integer of at least 2.", Field: "seq_len"));
            }
        }

        return problems.Count > 0 ? throw new ValidationFailedException(problems[0].Message, problems, problems.Count, "invalid_request") : (fileId!, seqLen);
    }

    private static async Task<JsonDocument> ReadObjectAsync(HttpContext context, string expected)
    {
        JsonDocument document;
        try
        {
            document = await JsonDocument.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted).ConfigureAwait(false);
        }
        catch (JsonException e)
        {
            throw ErrorMapping.Malformed(e);
        }

        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            document.Dispose();
            var message = $"The body must be a JSON object with {expected}.";
            throw new ValidationFailedException(message, [new Problem(message)], 1, "invalid_request");
        }

        return document;
    }
}
