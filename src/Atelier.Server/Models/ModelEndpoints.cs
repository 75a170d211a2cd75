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
        }).WithSummary("List the base models and the workspace's fine-tuned models.");

        models.MapGet("/{modelId}", async (HttpContext context, string modelId, ModelRegistry registry, IErasureRepository erasures) =>
        {
            var model = await FindAsync(context, registry, modelId).ConfigureAwait(false);
            return Results.Json(await LineageEndpoints.WithTaintAsync(Card(model), model.Id, erasures, context.RequestAborted).ConfigureAwait(false), AtelierJson.Options);
        })
            .WithSummary("Retrieve a model card.");

        models.MapDelete("/{modelId}", async (HttpContext context, string modelId, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var deleted = await registry.DeleteFineTunedAsync(caller.WorkspaceId, modelId, caller.Actor, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new JsonObject { ["id"] = deleted.Id, ["object"] = "model", ["deleted"] = true }, AtelierJson.Options);
        }).WithSummary("Delete a fine-tuned model and its adapter bytes.");

        var fineTuned = app.MapGroup("/v1/fine_tuning/models").WithTags("Models");
        fineTuned.MapPatch("/{modelId}", async (HttpContext context, string modelId, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var (name, setName, description, setDescription) = await ReadUpdateAsync(context).ConfigureAwait(false);
            var updated = await registry.UpdateAsync(caller.WorkspaceId, modelId, name, setName, description, setDescription, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(FineTunedModel(updated), AtelierJson.Options);
        }).WithSummary("Update a fine-tuned model's name and description.");

        fineTuned.MapPost("/{modelId}/archive", async (HttpContext context, string modelId, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var model = await registry.SetArchivedAsync(caller.WorkspaceId, modelId, archived: true, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new JsonObject { ["id"] = model.Id, ["object"] = "model", ["archived"] = true }, AtelierJson.Options);
        }).WithSummary("Archive a fine-tuned model.");

        fineTuned.MapDelete("/{modelId}/archive", async (HttpContext context, string modelId, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var model = await registry.SetArchivedAsync(caller.WorkspaceId, modelId, archived: false, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new JsonObject { ["id"] = model.Id, ["object"] = "model", ["archived"] = false }, AtelierJson.Options);
        }).WithSummary("Unarchive a fine-tuned model.");

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
        }).WithSummary("Import a base model from a Mistral-format directory under one of the server's import roots (operator). Visible to every workspace.");

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
            .WithSummary("A model with its residency policy, artifacts and lineage.");

        platform.MapGet("/{modelId}/adapter", (HttpContext context, string modelId, ModelRegistry registry) => DownloadAdapterAsync(context, registry, modelId))
            .WithSummary("Download a fine-tuned model's LoRA adapter as mistral-finetune's lora.safetensors in bf16, which mistral-inference's load_lora takes for a bf16 base (scale in __metadata__ lora_scaling). 400 for a base model.");

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
        }).WithSummary("Download one file of a model as stored (a base model's params.json, consolidated.safetensors and tokeniser; a fine-tuned model's lora.safetensors in its training dtype).");

        platform.MapDelete("/{modelId}", async (HttpContext context, string modelId, ModelRegistry registry) =>
        {
            var caller = ApiKeyAuthentication.Operator(context);
            var deleted = await registry.DeleteBaseAsync(modelId, caller.Actor, caller.WorkspaceId, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new JsonObject { ["id"] = deleted.Id, ["object"] = "model", ["deleted"] = true }, AtelierJson.Options);
        }).WithSummary("Delete a base model and its bytes (operator); refused (409, naming them) while fine-tuned models, jobs or dataset versions derive from it.");
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
