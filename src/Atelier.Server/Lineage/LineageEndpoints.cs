using System.Text.Json;
using System.Text.Json.Nodes;
using Atelier.Catalog;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Inference.Serving;
using Atelier.Registry;
using Atelier.Server.Auth;
using Atelier.Server.Hosting;
using Atelier.Storage.Audit;
using Atelier.Training.Erasure;
using Atelier.Training.Lineage;

namespace Atelier.Server.Lineage;

/// <summary>A node of a lineage graph.</summary>
/// <param name="Ref">Its key, <c>kind:id</c>.</param>
/// <param name="Kind">Its kind.</param>
/// <param name="Id">Its id.</param>
/// <param name="Name">Its name.</param>
/// <param name="Status">Its status.</param>
/// <param name="CreatedAt">Unix seconds.</param>
/// <param name="ResidencyPolicy">The policy of its bytes.</param>
/// <param name="Locations">Where its bytes are.</param>
/// <param name="Tainted">True when an erasure tainted it.</param>
/// <param name="ErasureId">The erasure that tainted it.</param>
public sealed record LineageNodeObject(
    string Ref, string Kind, string Id, string? Name, string? Status, long? CreatedAt, string? ResidencyPolicy, IReadOnlyList<string> Locations,
    [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] bool? Tainted = null,
    [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] string? ErasureId = null);

/// <summary>An edge of a lineage graph.</summary>
/// <param name="From">The node it comes from.</param>
/// <param name="To">The node it goes to.</param>
/// <param name="Relation">What the relation is.</param>
public sealed record LineageEdgeObject(string From, string To, string Relation);

/// <summary>A lineage graph (built as JSON by <c>ToJson</c>).</summary>
/// <param name="Object">Always <c>lineage</c>.</param>
/// <param name="Root">The artifact's node.</param>
/// <param name="Direction"><c>upstream</c> or <c>downstream</c>.</param>
/// <param name="Depth">How deep it walked.</param>
/// <param name="Nodes">The nodes.</param>
/// <param name="Edges">The edges.</param>
public sealed record LineageGraphObject(string Object, string Root, string Direction, int Depth, IReadOnlyList<LineageNodeObject> Nodes, IReadOnlyList<LineageEdgeObject> Edges);

/// <summary>The artifact to erase.</summary>
/// <param name="Kind">Only <c>file</c> for now.</param>
/// <param name="Id">Its id.</param>
public sealed record ErasureArtifactInput(string Kind, string Id);

/// <summary>The body of <c>POST /api/v1/erasure</c>.</summary>
/// <param name="Artifact">What to erase.</param>
/// <param name="DryRun">Plan only (the default).</param>
public sealed record EraseRequest(ErasureArtifactInput Artifact, bool? DryRun);

/// <summary>The answer to checking an erasure report.</summary>
/// <param name="Valid">Whether its signature verifies.</param>
/// <param name="Reason">Why not.</param>
/// <param name="ErasureId">The report's erasure.</param>
public sealed record ErasureReportCheckObject(bool Valid, string? Reason, string? ErasureId);

/// <summary>The body of a serving override.</summary>
/// <param name="Reason">Why the tainted model may be served anyway (audited).</param>
public sealed record ServingOverrideRequest(string Reason);

/// <summary>The answer to a serving override.</summary>
/// <param name="Model">The model.</param>
/// <param name="Tainted">Always true.</param>
/// <param name="ErasureId">The erasure that tainted it.</param>
/// <param name="ServingOverride">The override.</param>
public sealed record ServingOverrideAnswer(string Model, bool Tainted, string ErasureId, Atelier.Server.Models.ServingOverrideObject ServingOverride);

/// <summary>
/// <c>/api/v1/lineage</c> (the lineage graph of an artifact, upstream or downstream),
/// <c>/api/v1/erasure</c> (plan, run, show and verify erasures) and the serving override of a tainted
/// model. Any key of the workspace may read lineage and plan an erasure; running one, and allowing a
/// tainted model to be served, take an admin key (refusals are audited by the error mapping).
/// </summary>
public static class LineageEndpoints
{
    /// <summary>Maps the routes under <paramref name="api"/> (<c>/api/v1</c>).</summary>
    public static void MapLineage(this IEndpointRouteBuilder api)
    {
        api.MapGet("/lineage/{kind}/{id}", async (HttpContext context, string kind, string id, LineageGraphService lineage, ServingRouter router) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            kind = kind == "fine_tuning_job" ? LineageKinds.Job : kind;
            if (!LineageKinds.Queryable.Contains(kind, StringComparer.Ordinal))
            {
                var message = $"Unknown artifact kind '{kind}'; expected one of {string.Join(", ", LineageKinds.Queryable)}.";
                throw new ValidationFailedException(message, [new Problem(message, Field: "kind")], 1, "invalid_request");
            }

            var direction = (string?)context.Request.Query["direction"] switch
            {
                null or "upstream" => LineageDirection.Upstream,
                "downstream" => LineageDirection.Downstream,
                var other => throw new BadRequestException($"'direction' must be 'upstream' or 'downstream', not '{other}'."),
            };
            var depth = (int)QueryParameters.Integer(context.Request, "depth", LineageGraphService.DefaultDepth, 0, LineageGraphService.MaxDepth);
            var replicas = router.Replicas.Select(r => new LineageReplica(r.Id, r.Location)).ToArray();
            var graph = await lineage.WalkAsync(caller.WorkspaceId, kind, id, direction, depth, replicas, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(ToJson(graph, kind, id, direction, depth), AtelierJson.Options);
        }).WithTags("Lineage").WithSummary("The lineage graph of an artifact (file, dataset, job, checkpoint, model, collection, feature_view, training_set): what it was made from (direction=upstream, the default) or what was made from it (downstream), depth edges deep (default 10); each node with its residency policy and locations.").WithName("getLineage").Produces<LineageGraphObject>().ProducesErrors(422).Query("direction", typeof(string), "upstream (the default): what it was made from; downstream: what was made from it.").Query("depth", typeof(int), "How many steps to walk (10, at most 100).");

        var erasure = api.MapGroup("/erasure").WithTags("Erasure");
        erasure.MapPost("", async (HttpContext context, ErasureService erasures) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var (artifact, dryRun) = await ReadErasureRequestAsync(context).ConfigureAwait(false);
            if (dryRun)
            {
                var plan = await erasures.PlanAsync(caller.WorkspaceId, artifact, context.RequestAborted).ConfigureAwait(false);
                var body = JsonSerializer.SerializeToNode(plan, AtelierJson.Options)!.AsObject();
                body["object"] = "erasure_plan";
                body["dry_run"] = true;
                return Results.Json(body, AtelierJson.Options);
            }

            ApiKeyAuthentication.Admin(context);
            var report = await erasures.ExecuteAsync(caller.WorkspaceId, caller.Key.WorkspaceName, artifact, caller.Actor, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(report, AtelierJson.Options);
        }).WithSummary("Plan (dry_run true, the default; any key) or run (dry_run false; an admin key) the erasure of a file and of everything derived from it; a run answers the signed erasure report.").WithName("eraseArtifact").Reads<EraseRequest>().Produces<JsonObject>().ProducesErrors(403, 422);

        erasure.MapGet("/{erasureId}", async (HttpContext context, string erasureId, ErasureService erasures) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            return Results.Json(await erasures.GetAsync(caller.WorkspaceId, erasureId, context.RequestAborted).ConfigureAwait(false), AtelierJson.Options);
        }).WithSummary("An erasure: its signed report once done, else its plan and status.").WithName("getErasure").Produces<JsonObject>();

        erasure.MapPost("/verify", async (HttpContext context) =>
        {
            ApiKeyAuthentication.Caller(context);
            var report = await JsonNode.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted).ConfigureAwait(false) as JsonObject
                ?? throw new BadRequestException("The body must be an erasure report (a JSON object).");
            var problem = ErasureReport.Verify(report);
            return Results.Json(new JsonObject { ["valid"] = problem is null, ["reason"] = problem, ["erasure_id"] = report["erasure_id"]?.DeepClone() }, AtelierJson.Options);
        }).WithSummary("Check an erasure report's signature (the body is the report).").WithName("verifyErasureReport").WithRequestBody<RouteHandlerBuilder, JsonObject>().Produces<ErasureReportCheckObject>();

        api.MapPost("/models/{modelId}/serving-override", async (HttpContext context, string modelId, ModelRegistry registry, IErasureRepository erasures, AuditLog audit, TimeProvider clock) =>
        {
            var caller = ApiKeyAuthentication.Admin(context);
            var body = await JsonNode.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted).ConfigureAwait(false) as JsonObject;
            var reason = body?["reason"]?.GetValueKind() == JsonValueKind.String ? ((string?)body["reason"])?.Trim() : null;
            if (string.IsNullOrEmpty(reason))
            {
                throw new BadRequestException("'reason' is required: say why the tainted model may be served anyway (it is audited).");
            }

            var model = await registry.FindAsync(caller.WorkspaceId, modelId, context.RequestAborted).ConfigureAwait(false) ?? throw new NotFoundException("model", modelId);
            var taint = await erasures.TaintOfAsync(model.Id, context.RequestAborted).ConfigureAwait(false)
                ?? throw new ConflictException($"Model '{model.Id}' is not tainted; it needs no serving override.");
            var now = clock.GetUtcNow().ToUnixTimeSeconds();
            await erasures.SetServingOverrideAsync(new ServingOverride(model.Id, reason, caller.Actor, now), context.RequestAborted).ConfigureAwait(false);
            await audit.AppendAsync(
                new AuditEvent
                {
                    Type = "serving_override",
                    Workspace = caller.WorkspaceId,
                    Actor = caller.Actor,
                    ArtifactKind = "model",
                    ArtifactId = model.Id,
                    Detail = $"tainted by erasure {taint.ErasureId}; served anyway because: {reason}",
                },
                CancellationToken.None).ConfigureAwait(false);
            return Results.Json(new JsonObject { ["model"] = model.Id, ["tainted"] = true, ["erasure_id"] = taint.ErasureId, ["serving_override"] = new JsonObject { ["reason"] = reason, ["actor"] = caller.Actor, ["created_at"] = now } }, AtelierJson.Options);
        }).WithTags("Erasure").WithSummary("Allow a model tainted by an erasure to be served anyway (an admin key; audited with the reason).").WithName("setServingOverride").Reads<ServingOverrideRequest>().Produces<ServingOverrideAnswer>().ProducesErrors(403, 409);
    }

    /// <summary>Adds <c>tainted</c>, <c>erasure_id</c> and any serving override to a model's card, when an erasure tainted it.</summary>
    public static async Task<JsonObject> WithTaintAsync(JsonObject card, string modelId, IErasureRepository erasures, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(card);
        ArgumentNullException.ThrowIfNull(erasures);
        if (await erasures.TaintOfAsync(modelId, cancellationToken).ConfigureAwait(false) is { } taint)
        {
            card["tainted"] = true;
            card["erasure_id"] = taint.ErasureId;
            if (await erasures.ServingOverrideOfAsync(modelId, cancellationToken).ConfigureAwait(false) is { } serving)
            {
                card["serving_override"] = new JsonObject { ["reason"] = serving.Reason, ["actor"] = serving.Actor, ["created_at"] = serving.CreatedAt };
            }
        }

        return card;
    }

    private static async Task<(ErasureArtifact Artifact, bool DryRun)> ReadErasureRequestAsync(HttpContext context)
    {
        var body = await JsonNode.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted).ConfigureAwait(false) as JsonObject
            ?? throw new BadRequestException("The body must be a JSON object: {\"artifact\": {\"kind\": \"file\", \"id\": \"...\"}, \"dry_run\": true}.");
        var artifact = body["artifact"] as JsonObject;
        string? Text(JsonObject? o, string name) => o?[name]?.GetValueKind() == JsonValueKind.String ? (string?)o[name] : null;
        var kind = Text(artifact, "kind");
        var id = Text(artifact, "id");
        if (kind is null || string.IsNullOrEmpty(id))
        {
            const string Message = "'artifact' must be an object with a string 'kind' and 'id'.";
            throw new ValidationFailedException(Message, [new Problem(Message, Field: "artifact")], 1, "invalid_request");
        }

        var dryRun = body["dry_run"] switch
        {
            null => true,
            JsonValue v when v.GetValueKind() is JsonValueKind.True or JsonValueKind.False => v.GetValue<bool>(),
            _ => throw new BadRequestException("'dry_run' must be true or false."),
        };
        return (new ErasureArtifact(kind, id), dryRun);
    }

    private static JsonObject ToJson(LineageGraph graph, string kind, string id, LineageDirection direction, int depth)
    {
        var nodes = new JsonArray();
        foreach (var n in graph.Nodes)
        {
            var node = new JsonObject
            {
                ["ref"] = n.Ref,
                ["kind"] = n.Kind,
                ["id"] = n.Id,
                ["name"] = n.Name,
                ["status"] = n.Status,
                ["created_at"] = n.CreatedAt,
                ["residency_policy"] = n.ResidencyPolicy,
                ["locations"] = new JsonArray([.. n.Locations.Select(l => (JsonNode)l)]),
            };
            if (n.TaintedBy is not null)
            {
                node["tainted"] = true;
                node["erasure_id"] = n.TaintedBy;
            }

            nodes.Add(node);
        }

        var edges = new JsonArray([.. graph.Edges.Select(e => (JsonNode)new JsonObject { ["from"] = e.From, ["to"] = e.To, ["relation"] = e.Relation })]);
        return new JsonObject
        {
            ["object"] = "lineage",
            ["root"] = graph.Nodes.Count > 0 ? graph.Nodes[0].Ref : LineageNode.Key(kind, id),
            ["direction"] = direction == LineageDirection.Upstream ? "upstream" : "downstream",
            ["depth"] = depth,
            ["nodes"] = nodes,
            ["edges"] = edges,
        };
    }
}
