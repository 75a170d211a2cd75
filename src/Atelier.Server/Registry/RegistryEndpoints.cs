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

/// <summary>An alias of a registered name.</summary>
/// <param name="Alias">Its name.</param>
/// <param name="Version">The version it points at.</param>
/// <param name="UpdatedAt">Unix seconds.</param>
/// <param name="UpdatedBy">Who moved it last.</param>
public sealed record RegisteredAliasObject(string Alias, int Version, long UpdatedAt, string UpdatedBy);

/// <summary>A registered model name (built as JSON by <c>Name</c>; this record is its shape in the OpenAPI document).</summary>
/// <param name="Object">Always <c>registered_model</c>.</param>
/// <param name="Name">The name.</param>
/// <param name="Shared">Whether it is a base model's name, shared by every workspace.</param>
/// <param name="LatestVersion">Its latest version.</param>
/// <param name="LatestModelId">The model of its latest version.</param>
/// <param name="Versions">How many versions it has.</param>
/// <param name="UpdatedAt">Unix seconds.</param>
/// <param name="Aliases">Its aliases.</param>
public sealed record RegisteredModelObject(string Object, string Name, bool Shared, int LatestVersion, string LatestModelId, int Versions, long UpdatedAt, IReadOnlyList<RegisteredAliasObject> Aliases);

/// <summary>A version of a registered name.</summary>
/// <param name="Object">Always <c>model_version</c>.</param>
/// <param name="Name">The name.</param>
/// <param name="Version">The version number.</param>
/// <param name="ModelId">Its model.</param>
/// <param name="JobId">The job that trained it.</param>
/// <param name="CreatedAt">Unix seconds.</param>
/// <param name="CreatedBy">Who created it.</param>
/// <param name="Status"><c>ready</c> or <c>deleted</c>.</param>
/// <param name="Aliases">The aliases pointing at it.</param>
public sealed record ModelVersionObject(string Object, string Name, int Version, string ModelId, string? JobId, long CreatedAt, string CreatedBy, string Status, IReadOnlyList<string> Aliases);

/// <summary>A move of an alias.</summary>
/// <param name="Seq">Its sequence number.</param>
/// <param name="Alias">The alias.</param>
/// <param name="FromVersion">The version it pointed at before.</param>
/// <param name="ToVersion">The version it points at after (none once removed).</param>
/// <param name="Actor">Who moved it.</param>
/// <param name="WorkspaceId">From which workspace.</param>
/// <param name="Reason">Why.</param>
/// <param name="At">Unix seconds.</param>
public sealed record AliasMoveObject(long Seq, string Alias, int? FromVersion, int? ToVersion, string Actor, string WorkspaceId, string? Reason, long At);

/// <summary>The answer to setting or removing an alias.</summary>
/// <param name="Object">Always <c>model_alias</c>.</param>
/// <param name="Name">The registered name.</param>
/// <param name="Alias">The alias.</param>
/// <param name="Version">The version it now points at.</param>
/// <param name="Changed">Whether anything changed.</param>
/// <param name="Move">The move recorded, when it changed.</param>
public sealed record AliasChangeObject(string Object, string Name, string Alias, int? Version, bool Changed, AliasMoveObject? Move);

/// <summary>An evaluation of a version.</summary>
/// <param name="Object">Always <c>model_evaluation</c>.</param>
/// <param name="Id">Its id.</param>
/// <param name="Name">The registered name.</param>
/// <param name="Version">The version.</param>
/// <param name="ModelId">The model evaluated.</param>
/// <param name="FileId">The validation file.</param>
/// <param name="CreatedAt">Unix seconds.</param>
/// <param name="CreatedBy">Who asked.</param>
/// <param name="Result">Loss and token accuracy of the version and of its base model.</param>
public sealed record ModelEvaluationObject(string Object, string Id, string Name, int Version, string ModelId, string FileId, long CreatedAt, string CreatedBy, System.Text.Json.JsonElement Result);

/// <summary>The body of setting an alias.</summary>
/// <param name="Version">The version it points at.</param>
/// <param name="Reason">Why (kept in its history).</param>
public sealed record SetAliasRequest(int Version, string? Reason);

/// <summary>The body of an evaluation.</summary>
/// <param name="FileId">A validation file (purpose <c>fine-tune</c>).</param>
/// <param name="SeqLen">The window length, at least 2.</param>
public sealed record EvaluateVersionRequest(string FileId, int? SeqLen);

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
        }).WithSummary("Registered model names the workspace sees (its fine-tunes' and the base models'), each with its latest version and aliases.").WithName("listRegisteredModels").Produces<ObjectList<RegisteredModelObject>>();

        models.MapGet("/{name}", async (HttpContext context, string name, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            return Results.Json(Name(await registry.GetNameAsync(caller.WorkspaceId, name, context.RequestAborted).ConfigureAwait(false)), AtelierJson.Options);
        }).WithSummary("A registered model name with its latest version and aliases.").WithName("getRegisteredModel").Produces<RegisteredModelObject>();

        models.MapGet("/{name}/versions", async (HttpContext context, string name, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var (found, versions) = await registry.ListVersionsAsync(caller.WorkspaceId, name, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new JsonObject { ["object"] = "list", ["data"] = new JsonArray([.. versions.Select(v => (JsonNode)Version(v, found.Record.Aliases))]) }, AtelierJson.Options);
        }).WithSummary("The versions of a registered name, oldest first, each with its model, job, creation time and status.").WithName("listModelVersions").Produces<ObjectList<ModelVersionObject>>();

        models.MapGet("/{name}/versions/{version:int}", async (HttpContext context, string name, int version, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var found = await registry.GetVersionAsync(caller.WorkspaceId, name, version, context.RequestAborted).ConfigureAwait(false);
            var aliases = (await registry.GetNameAsync(caller.WorkspaceId, name, context.RequestAborted).ConfigureAwait(false)).Record.Aliases;
            return Results.Json(Version(found.Version, aliases), AtelierJson.Options);
        }).WithSummary("One version of a registered name.").WithName("getModelVersion").Produces<ModelVersionObject>();

        models.MapPut("/{name}/aliases/{alias}", async (HttpContext context, string name, string alias, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            RegisteredNames.ValidateAlias(alias);
            var (version, reason) = await ReadAliasBodyAsync(context).ConfigureAwait(false);
            var change = await registry.MoveAliasAsync(caller.WorkspaceId, caller.Actor, caller.Key.IsOperator, name, alias, version, reason, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(Change(name, alias, change), AtelierJson.Options);
        }).WithSummary("Set or move an alias to a version ({\"version\": N, \"reason\": \"...\"}); the move is kept in the alias's history and audited. Base model names: operator only.").WithName("setModelAlias").Reads<SetAliasRequest>().Produces<AliasChangeObject>().ProducesErrors(403, 422);

        models.MapDelete("/{name}/aliases/{alias}", async (HttpContext context, string name, string alias, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            RegisteredNames.ValidateAlias(alias);
            var reason = context.Request.Query["reason"].FirstOrDefault();
            var change = await registry.MoveAliasAsync(caller.WorkspaceId, caller.Actor, caller.Key.IsOperator, name, alias, null, reason, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(Change(name, alias, change), AtelierJson.Options);
        }).WithSummary("Remove an alias (?reason=...); the removal is kept in its history and audited.").WithName("removeModelAlias").Produces<AliasChangeObject>().ProducesErrors(403, 422).Query("reason", typeof(string), "Why (kept in its history).");

        models.MapGet("/{name}/aliases/{alias}/history", async (HttpContext context, string name, string alias, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            RegisteredNames.ValidateAlias(alias);
            var moves = await registry.AliasHistoryAsync(caller.WorkspaceId, name, alias, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new JsonObject { ["object"] = "list", ["data"] = new JsonArray([.. moves.Select(m => (JsonNode)Move(m))]) }, AtelierJson.Options);
        }).WithSummary("Every move of an alias, oldest first: who, when, from which version to which, and why.").WithName("listModelAliasHistory").Produces<ObjectList<AliasMoveObject>>();

        models.MapPost("/{name}/versions/{version:int}/evaluations", async (HttpContext context, string name, int version, ModelEvaluator evaluator) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var (fileId, seqLen) = await ReadEvaluationBodyAsync(context).ConfigureAwait(false);
            var (record, _) = await evaluator.EvaluateAsync(caller.WorkspaceId, caller.Actor, name, version, fileId, seqLen, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(Evaluation(record), AtelierJson.Options, statusCode: StatusCodes.Status201Created);
        }).WithSummary("Evaluate a version on a validation file (loss and token accuracy, and the same for its base model) and store the result with the version. Runs while the request waits; one at a time.").WithName("evaluateModelVersion").Reads<EvaluateVersionRequest>().Produces<ModelEvaluationObject>(StatusCodes.Status201Created).ProducesErrors(403, 409, 422);

        models.MapGet("/{name}/versions/{version:int}/evaluations", async (HttpContext context, string name, int version, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var evaluations = await registry.ListEvaluationsAsync(caller.WorkspaceId, name, version, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new JsonObject { ["object"] = "list", ["data"] = new JsonArray([.. evaluations.Select(e => (JsonNode)Evaluation(e))]) }, AtelierJson.Options);
        }).WithSummary("The workspace's evaluations of a version, oldest first.").WithName("listModelEvaluations").Produces<ObjectList<ModelEvaluationObject>>();
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
