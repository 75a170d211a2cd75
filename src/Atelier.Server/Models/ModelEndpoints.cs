using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Atelier.Catalog;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Modeling.SafeTensors;
using Atelier.Registry;
using Atelier.Server.Auth;
using Atelier.Server.Errors;
using Atelier.Server.Lineage;
using Atelier.Server.Hosting;

namespace Atelier.Server.Models;

/// <summary>The body of <c>POST /api/v1/models/import</c>.</summary>
/// <param name="Path">An absolute path on the server's machine of a directory in Mistral's consolidated format, under one of the import roots (<c>models.import_roots</c>).</param>
/// <param name="Name">The model id (<c>[a-z0-9._-]</c>); the lower-cased directory name when absent.</param>
/// <param name="Description">A description.</param>
/// <param name="Policy">The residency policy of its bytes; the configured file policy when absent.</param>
/// <param name="Location">Where to place its bytes; the configured file location when absent.</param>
/// <param name="MaxContextLength">Overrides what <c>params.json</c> says.</param>
/// <param name="Aliases">Other names that resolve to it.</param>
public sealed record ImportModelRequest(string? Path, string? Name, string? Description, string? Policy, string? Location, int? MaxContextLength, IReadOnlyList<string>? Aliases);

/// <summary>Who allowed a tainted model to be served again, and why.</summary>
/// <param name="Reason">Why.</param>
/// <param name="Actor">Who.</param>
/// <param name="CreatedAt">Unix seconds.</param>
public sealed record ServingOverrideObject(string Reason, string Actor, long CreatedAt);

/// <summary>
/// Mistral's <c>BaseModelCard</c> or <c>FTModelCard</c> (built as JSON by <c>Card</c>; this record is
/// its shape in the OpenAPI document). <c>job</c>, <c>root</c> and <c>archived</c> are on fine-tuned
/// models only; <c>tainted</c>, <c>erasure_id</c> and <c>serving_override</c> only once an erasure touched it.
/// </summary>
/// <param name="Id">Its id.</param>
/// <param name="Object">Always <c>model</c>.</param>
/// <param name="Created">Unix seconds.</param>
/// <param name="OwnedBy">Its owner.</param>
/// <param name="Capabilities">What it can do.</param>
/// <param name="Name">Its display name.</param>
/// <param name="Description">Its description.</param>
/// <param name="MaxContextLength">Its context length in tokens.</param>
/// <param name="Aliases">Other names that resolve to it.</param>
/// <param name="Deprecation">Always null.</param>
/// <param name="DeprecationReplacementModel">Always null.</param>
/// <param name="DefaultModelTemperature">Always null.</param>
/// <param name="Type"><c>base</c> or <c>fine-tuned</c>.</param>
/// <param name="Job">The job that trained it.</param>
/// <param name="Root">Its base model.</param>
/// <param name="Archived">Whether it is archived.</param>
/// <param name="Tainted">True once an erasure tainted it.</param>
/// <param name="ErasureId">The erasure that tainted it.</param>
/// <param name="ServingOverride">The override that lets it be served again.</param>
public sealed record ModelCardObject(
    string Id, string Object, long Created, string OwnedBy, ModelCapabilities Capabilities, string? Name, string? Description, int MaxContextLength,
    IReadOnlyList<string> Aliases, string? Deprecation, string? DeprecationReplacementModel, double? DefaultModelTemperature, string Type,
    [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] string? Job = null, [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] string? Root = null, [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] bool? Archived = null,
    [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] bool? Tainted = null, [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] string? ErasureId = null, [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] ServingOverrideObject? ServingOverride = null);

/// <summary>A model card with what the platform knows besides (<c>/api/v1/models</c>); <c>registered_name</c> and <c>version</c> once it is a registry version.</summary>
/// <param name="Id">Its id.</param>
/// <param name="Object">Always <c>model</c>.</param>
/// <param name="Created">Unix seconds.</param>
/// <param name="OwnedBy">Its owner.</param>
/// <param name="Capabilities">What it can do.</param>
/// <param name="Name">Its display name.</param>
/// <param name="Description">Its description.</param>
/// <param name="MaxContextLength">Its context length in tokens.</param>
/// <param name="Aliases">Other names that resolve to it.</param>
/// <param name="Deprecation">Always null.</param>
/// <param name="DeprecationReplacementModel">Always null.</param>
/// <param name="DefaultModelTemperature">Always null.</param>
/// <param name="Type"><c>base</c> or <c>fine-tuned</c>.</param>
/// <param name="Policy">The residency policy of its bytes.</param>
/// <param name="Artifacts">Its files and where they are.</param>
/// <param name="Lineage">What it was made from.</param>
/// <param name="CreatedBy">Who imported or trained it.</param>
/// <param name="Job">The job that trained it.</param>
/// <param name="Root">Its base model.</param>
/// <param name="Archived">Whether it is archived.</param>
/// <param name="RegisteredName">Its registered name.</param>
/// <param name="Version">Its version of that name.</param>
/// <param name="Tainted">True once an erasure tainted it.</param>
/// <param name="ErasureId">The erasure that tainted it.</param>
/// <param name="ServingOverride">The override that lets it be served again.</param>
public sealed record ModelDetailObject(
    string Id, string Object, long Created, string OwnedBy, ModelCapabilities Capabilities, string? Name, string? Description, int MaxContextLength,
    IReadOnlyList<string> Aliases, string? Deprecation, string? DeprecationReplacementModel, double? DefaultModelTemperature, string Type,
    string Policy, IReadOnlyList<ModelArtifact> Artifacts, ModelLineage Lineage, string CreatedBy,
    [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] string? Job = null, [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] string? Root = null, [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] bool? Archived = null,
    [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] string? RegisteredName = null, [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] int? Version = null,
    [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] bool? Tainted = null, [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] string? ErasureId = null, [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] ServingOverrideObject? ServingOverride = null);

/// <summary>The capabilities of a fine-tuned model as <c>PATCH /v1/fine_tuning/models/{id}</c> answers them.</summary>
/// <param name="CompletionChat">Chat.</param>
/// <param name="CompletionFim">Fill-in-the-middle.</param>
/// <param name="FunctionCalling">Function calling.</param>
/// <param name="FineTuning">Fine-tuning.</param>
/// <param name="Classification">Classification.</param>
public sealed record FineTunedCapabilitiesObject(bool CompletionChat, bool CompletionFim, bool FunctionCalling, bool FineTuning, bool Classification);

/// <summary>Mistral's <c>CompletionFineTunedModel</c> (built as JSON by <c>FineTunedModel</c>).</summary>
/// <param name="Id">Its id.</param>
/// <param name="Object">Always <c>model</c>.</param>
/// <param name="Created">Unix seconds.</param>
/// <param name="OwnedBy">Its owner.</param>
/// <param name="WorkspaceId">Its workspace.</param>
/// <param name="Root">Its base model.</param>
/// <param name="RootVersion">The first 8 characters of its base's version.</param>
/// <param name="Archived">Whether it is archived.</param>
/// <param name="Name">Its display name.</param>
/// <param name="Description">Its description.</param>
/// <param name="Capabilities">What it can do.</param>
/// <param name="MaxContextLength">Its context length in tokens.</param>
/// <param name="Aliases">Other names.</param>
/// <param name="Job">The job that trained it.</param>
/// <param name="ModelType">Always <c>completion</c>.</param>
public sealed record FineTunedModelObject(
    string Id, string Object, long Created, string OwnedBy, string? WorkspaceId, string? Root, string RootVersion, bool Archived, string? Name, string? Description,
    FineTunedCapabilitiesObject Capabilities, int MaxContextLength, IReadOnlyList<string> Aliases, string? Job, string ModelType);

/// <summary>The answer to archiving or unarchiving a model.</summary>
/// <param name="Id">Its id.</param>
/// <param name="Object">Always <c>model</c>.</param>
/// <param name="Archived">Whether it is now archived.</param>
public sealed record ArchivedModelObject(string Id, string Object, bool Archived);

/// <summary>The body of <c>PATCH /v1/fine_tuning/models/{id}</c>: a member absent is left as it is.</summary>
/// <param name="Name">The new display name.</param>
/// <param name="Description">The new description.</param>
public sealed record UpdateFineTunedModelRequest(string? Name, string? Description);

/// <summary>
/// The Mistral-compatible Models API (<c>/v1/models</c>, <c>/v1/fine_tuning/models</c>) and the
/// platform's model import, removal and downloads (<c>/api/v1/models</c>: a fine-tuned model's adapter in
/// bf16, any model's files as stored). Base models are imported by an
/// admin and visible to every workspace; fine-tuned models belong to the workspace of the job that
/// trained them, and other workspaces get 404 for them.
/// </summary>
public static class ModelEndpoints
{
    /// <summary>Maps the model routes.</summary>
    public static void MapModels(this IEndpointRouteBuilder app)
    {
        var models = app.MapGroup("/v1/models").WithTags("Models");
        models.MapGet("", async (HttpContext context, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var all = await registry.ListAsync(caller.WorkspaceId, context.RequestAborted).ConfigureAwait(false);
            var data = new JsonArray([.. all.Select(m => (JsonNode)Card(m))]);
            return Results.Json(new JsonObject { ["object"] = "list", ["data"] = data }, AtelierJson.Options);
        }).WithSummary("List the base models and the workspace's fine-tuned models.").WithName("listModels").Produces<ObjectList<ModelCardObject>>();

        models.MapGet("/{modelId}", async (HttpContext context, string modelId, ModelRegistry registry, IErasureRepository erasures) =>
        {
            var model = await FindAsync(context, registry, modelId).ConfigureAwait(false);
            return Results.Json(await LineageEndpoints.WithTaintAsync(Card(model), model.Id, erasures, context.RequestAborted).ConfigureAwait(false), AtelierJson.Options);
        })
            .WithSummary("Retrieve a model card.").WithName("retrieveModel").Produces<ModelCardObject>();

        models.MapDelete("/{modelId}", async (HttpContext context, string modelId, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var deleted = await registry.DeleteFineTunedAsync(caller.WorkspaceId, modelId, caller.Actor, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new JsonObject { ["id"] = deleted.Id, ["object"] = "model", ["deleted"] = true }, AtelierJson.Options);
        }).WithSummary("Delete a fine-tuned model and its adapter bytes.").WithName("deleteModel").Produces<DeletedObject>().ProducesErrors(409);

        var fineTuned = app.MapGroup("/v1/fine_tuning/models").WithTags("Models");
        fineTuned.MapPatch("/{modelId}", async (HttpContext context, string modelId, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var (name, setName, description, setDescription) = await ReadUpdateAsync(context).ConfigureAwait(false);
            var updated = await registry.UpdateAsync(caller.WorkspaceId, modelId, name, setName, description, setDescription, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(FineTunedModel(updated), AtelierJson.Options);
        }).WithSummary("Update a fine-tuned model's name and description.").WithName("updateFineTunedModel").Reads<UpdateFineTunedModelRequest>().Produces<FineTunedModelObject>().ProducesErrors(422);

        fineTuned.MapPost("/{modelId}/archive", async (HttpContext context, string modelId, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var model = await registry.SetArchivedAsync(caller.WorkspaceId, modelId, archived: true, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new JsonObject { ["id"] = model.Id, ["object"] = "model", ["archived"] = true }, AtelierJson.Options);
        }).WithSummary("Archive a fine-tuned model.").WithName("archiveFineTunedModel").Produces<ArchivedModelObject>();

        fineTuned.MapDelete("/{modelId}/archive", async (HttpContext context, string modelId, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var model = await registry.SetArchivedAsync(caller.WorkspaceId, modelId, archived: false, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new JsonObject { ["id"] = model.Id, ["object"] = "model", ["archived"] = false }, AtelierJson.Options);
        }).WithSummary("Unarchive a fine-tuned model.").WithName("unarchiveFineTunedModel").Produces<ArchivedModelObject>();

        var platform = app.MapGroup("/api/v1/models").WithTags("Models");
        platform.MapPost("/import", async (HttpContext context, ImportModelRequest? request, PolicyCatalog policies, AtelierConfig config, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Operator(context);
            if (request is null || string.IsNullOrWhiteSpace(request.Path))
            {
                throw new BadRequestException("The body must be a JSON object with 'path': an absolute directory on the server's machine, under one of the import roots (models.import_roots).");
            }

            var policyName = string.IsNullOrWhiteSpace(request.Policy) ? config.Defaults.FilePolicy : request.Policy.Trim();
            Core.Residency.ResidencyPolicy policy;
            try
            {
                policy = policies.Resolve(policyName);
            }
            catch (InvalidOperationException e)
            {
                throw new BadRequestException(e.Message, "invalid_policy");
            }

            var model = await registry.ImportBaseModelAsync(
                new BaseModelImport
                {
                    SourceDirectory = request.Path,
                    Id = string.IsNullOrWhiteSpace(request.Name) ? null : request.Name.Trim(),
                    Description = request.Description,
                    MaxContextLength = request.MaxContextLength,
                    Aliases = request.Aliases ?? [],
                },
                policy,
                string.IsNullOrWhiteSpace(request.Location) ? config.Defaults.FileLocation : request.Location.Trim(),
                caller.Actor,
                caller.WorkspaceId,
                context.RequestAborted).ConfigureAwait(false);
            return Results.Json(Detail(model), AtelierJson.Options, statusCode: StatusCodes.Status201Created);
        }).WithSummary("Import a base model from a Mistral-format directory under one of the server's import roots (operator). Visible to every workspace.").WithName("importModel").Produces<ModelDetailObject>(StatusCodes.Status201Created).ProducesErrors(403, 409, 422);

        platform.MapGet("/{modelId}", async (HttpContext context, string modelId, ModelRegistry registry, IErasureRepository erasures) =>
        {
            var model = await FindAsync(context, registry, modelId).ConfigureAwait(false);
            var detail = Detail(model);
            if (await registry.VersionOfAsync(model.Id, context.RequestAborted).ConfigureAwait(false) is { } version)
            {
                detail["registered_name"] = version.Name;
                detail["version"] = version.Version;
            }

            return Results.Json(await LineageEndpoints.WithTaintAsync(detail, model.Id, erasures, context.RequestAborted).ConfigureAwait(false), AtelierJson.Options);
        })
            .WithSummary("A model with its residency policy, artifacts and lineage.").WithName("getModel").Produces<ModelDetailObject>();

        platform.MapGet("/{modelId}/adapter", (HttpContext context, string modelId, ModelRegistry registry) => DownloadAdapterAsync(context, registry, modelId))
            .WithSummary("Download a fine-tuned model's LoRA adapter as mistral-finetune's lora.safetensors in bf16, which mistral-inference's load_lora takes for a bf16 base (scale in __metadata__ lora_scaling). 400 for a base model.").WithName("downloadModelAdapter").ProducesBytes().ProducesErrors(400, 507);

        platform.MapGet("/{modelId}/files/{name}", async (HttpContext context, string modelId, string name, ModelRegistry registry) =>
        {
            var model = await FindAsync(context, registry, modelId).ConfigureAwait(false);
            var (artifact, content) = await registry.OpenArtifactAsync(model, name, context.RequestAborted).ConfigureAwait(false);
            SetDigest(context, artifact.Sha256);
            return Results.Stream(
                content,
                name.EndsWith(".json", StringComparison.Ordinal) ? "application/json" : "application/octet-stream",
                artifact.Name,
                entityTag: new Microsoft.Net.Http.Headers.EntityTagHeaderValue($"\"{artifact.Sha256}\""),
                enableRangeProcessing: true);
        }).WithSummary("Download one file of a model as stored (a base model's params.json, consolidated.safetensors and tokeniser; a fine-tuned model's lora.safetensors in its training dtype).").WithName("downloadModelFile").ProducesBytes("application/octet-stream", "application/json").ProducesErrors(507);

        platform.MapDelete("/{modelId}", async (HttpContext context, string modelId, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Operator(context);
            var deleted = await registry.DeleteBaseAsync(modelId, caller.Actor, caller.WorkspaceId, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new JsonObject { ["id"] = deleted.Id, ["object"] = "model", ["deleted"] = true }, AtelierJson.Options);
        }).WithSummary("Delete a base model and its bytes (operator); refused (409, naming them) while fine-tuned models, jobs or dataset versions derive from it.").WithName("deleteBaseModel").Produces<DeletedObject>().ProducesErrors(403, 409);
    }

    /// <summary>
    /// Streams the adapter in bf16. An adapter stored in bf16 (a bf16 base) is sent as stored, with ranges.
    /// Otherwise it is converted while it is sent (round to nearest even), never held whole in memory and
    /// never stored a second time; the sha256 of the converted bytes, which the ETag carries, comes from a
    /// first conversion pass that only hashes: an adapter is small next to its base model, and this keeps
    /// the registry's artifacts exactly what training placed.
    /// </summary>
    private static async Task<IResult> DownloadAdapterAsync(HttpContext context, ModelRegistry registry, string modelId)
    {
        var caller = ApiKeyAuthentication.Caller(context);
        var cancel = context.RequestAborted;
        var (model, adapter) = await registry.FindAdapterAsync(caller.WorkspaceId, modelId, cancel).ConfigureAwait(false);
        var source = $"the adapter of model '{model.Id}'";

        string sha256;
        var (_, first) = await registry.OpenArtifactAsync(model, adapter.Name, cancel).ConfigureAwait(false);
        await using (first.ConfigureAwait(false))
        {
            var plan = await SafeTensorsRecast.ReadAsync(first, adapter.Bytes, SafeTensorDType.BF16, source, cancel).ConfigureAwait(false);
            if (plan.IsIdentity)
            {
                var (_, stored) = await registry.OpenArtifactAsync(model, adapter.Name, cancel).ConfigureAwait(false);
                SetDigest(context, adapter.Sha256);
                return Results.Stream(stored, "application/octet-stream", ModelRegistry.AdapterArtifact,
                    entityTag: new Microsoft.Net.Http.Headers.EntityTagHeaderValue($"\"{adapter.Sha256}\""), enableRangeProcessing: true);
            }

            using var hash = SHA256.Create();
            await using (var sink = new CryptoStream(Stream.Null, hash, CryptoStreamMode.Write))
            {
                await plan.CopyToAsync(sink, cancel).ConfigureAwait(false);
            }

            sha256 = Convert.ToHexStringLower(hash.Hash!);
        }

        var etag = $"\"{sha256}\"";
        if (context.Request.Headers.IfNoneMatch.Any(v => v is not null && (v.Contains(etag, StringComparison.Ordinal) || v.Trim() == "*")))
        {
            context.Response.Headers.ETag = etag;
            return Results.StatusCode(StatusCodes.Status304NotModified);
        }

        var (_, second) = await registry.OpenArtifactAsync(model, adapter.Name, cancel).ConfigureAwait(false);
        await using (second.ConfigureAwait(false))
        {
            var recast = await SafeTensorsRecast.ReadAsync(second, adapter.Bytes, SafeTensorDType.BF16, source, cancel).ConfigureAwait(false);
            var response = context.Response;
            response.ContentType = "application/octet-stream";
            response.ContentLength = recast.Length;
            response.Headers.ETag = etag;
            response.Headers.ContentDisposition = $"attachment; filename={ModelRegistry.AdapterArtifact}";
            SetDigest(context, sha256);
            await recast.CopyToAsync(response.Body, cancel).ConfigureAwait(false);
        }

        return Results.Empty;
    }

    /// <summary>The bytes' sha256 as RFC 9530's <c>Repr-Digest</c>, and as plain hex for scripts.</summary>
    private static void SetDigest(HttpContext context, string sha256Hex)
    {
        context.Response.Headers["Repr-Digest"] = $"sha-256=:{Convert.ToBase64String(Convert.FromHexString(sha256Hex))}:";
        context.Response.Headers["X-Content-Sha256"] = sha256Hex;
    }

    /// <summary>Mistral's <c>BaseModelCard</c> or <c>FTModelCard</c>.</summary>
    public static JsonObject Card(RegisteredModel m)
    {
        ArgumentNullException.ThrowIfNull(m);
        var card = new JsonObject
        {
            ["id"] = m.Id,
            ["object"] = "model",
            ["created"] = m.CreatedAt,
            ["owned_by"] = m.OwnedBy,
            ["capabilities"] = JsonSerializer.SerializeToNode(m.Capabilities, AtelierJson.Options),
            ["name"] = m.Name,
            ["description"] = m.Description,
            ["max_context_length"] = m.MaxContextLength,
            ["aliases"] = new JsonArray([.. m.Aliases.Select(a => (JsonNode)JsonValue.Create(a))]),
            ["deprecation"] = null,
            ["deprecation_replacement_model"] = null,
            ["default_model_temperature"] = null,
            ["type"] = m.Type,
        };
        if (m.Kind == ModelKind.FineTuned)
        {
            card["job"] = m.JobId;
            card["root"] = m.Root;
            card["archived"] = m.Archived;
        }

        return card;
    }

    /// <summary>Mistral's <c>CompletionFineTunedModel</c>, as <c>PATCH /v1/fine_tuning/models/{id}</c> answers.</summary>
    public static JsonObject FineTunedModel(RegisteredModel m)
    {
        ArgumentNullException.ThrowIfNull(m);
        return new JsonObject
        {
            ["id"] = m.Id,
            ["object"] = "model",
            ["created"] = m.CreatedAt,
            ["owned_by"] = m.OwnedBy,
            ["workspace_id"] = m.WorkspaceId,
            ["root"] = m.Root,
            ["root_version"] = m.Lineage.RootVersion is { Length: >= 8 } v ? v[..8] : "0",
            ["archived"] = m.Archived,
            ["name"] = m.Name,
            ["description"] = m.Description,
            ["capabilities"] = new JsonObject
            {
                ["completion_chat"] = m.Capabilities.CompletionChat,
                ["completion_fim"] = m.Capabilities.CompletionFim,
                ["function_calling"] = m.Capabilities.FunctionCalling,
                ["fine_tuning"] = m.Capabilities.FineTuning,
                ["classification"] = m.Capabilities.Classification,
            },
            ["max_context_length"] = m.MaxContextLength,
            ["aliases"] = new JsonArray([.. m.Aliases.Select(a => (JsonNode)JsonValue.Create(a))]),
            ["job"] = m.JobId,
            ["model_type"] = "completion",
        };
    }

    private static JsonObject Detail(RegisteredModel m)
    {
        var detail = Card(m);
        detail["policy"] = m.Policy;
        detail["artifacts"] = JsonSerializer.SerializeToNode(m.Artifacts, AtelierJson.Options);
        detail["lineage"] = JsonSerializer.SerializeToNode(m.Lineage, AtelierJson.Options);
        detail["created_by"] = m.CreatedBy;
        return detail;
    }

    private static async Task<RegisteredModel> FindAsync(HttpContext context, ModelRegistry registry, string modelId)
    {
        var caller = ApiKeyAuthentication.Caller(context);
        return await registry.FindAsync(caller.WorkspaceId, modelId, context.RequestAborted).ConfigureAwait(false)
            ?? throw new NotFoundException("model", modelId);
    }

    private static async Task<(string? Name, bool SetName, string? Description, bool SetDescription)> ReadUpdateAsync(HttpContext context)
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

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new ValidationFailedException("The body must be a JSON object with 'name' and/or 'description'.", [new Problem("must be a JSON object")], 1, "invalid_request");
            }

            var problems = new List<Problem>();
            (string? Value, bool Set) Field(string field, int maxLength)
            {
                if (!root.TryGetProperty(field, out var v))
                {
                    return (null, false);
                }

                if (v.ValueKind == JsonValueKind.Null)
                {
                    return (null, true);
                }

                if (v.ValueKind != JsonValueKind.String)
                {
                    problems.Add(new Problem($"must be a string or null, not {v.ValueKind.ToString().ToLowerInvariant()}", Field: field));
                    return (null, false);
                }

                var s = v.GetString()!;
                if (s.Length > maxLength)
                {
                    problems.Add(new Problem($"must be at most {maxLength} characters", Field: field));
                }

                return (s, true);
            }

            var (name, setName) = Field("name", 256);
            var (description, setDescription) = Field("description", 4096);
            if (problems.Count > 0)
            {
                throw new ValidationFailedException($"Invalid update: {string.Join("; ", problems)}", problems, problems.Count, "invalid_request");
            }

            return (name, setName, description, setDescription);
        }
    }
}
