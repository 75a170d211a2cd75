using System.Text.Json;
using System.Text.Json.Nodes;
using Atelier.Catalog;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Core.Residency;
using Atelier.Features.Semantic;
using Atelier.Registry;
using Atelier.Server.Auth;
using Atelier.Server.Errors;
using Atelier.Server.Hosting;
using Atelier.Storage.Placement;
using Atelier.Training.Datasets;

namespace Atelier.Server.Datasets;

/// <summary>A dataset version as <c>/api/v1/datasets</c> describes it (built as JSON by <c>Describe</c>; this record is its shape in the OpenAPI document).</summary>
/// <param name="Id">Its id (<c>ds-…</c>).</param>
/// <param name="Object">Always <c>dataset</c>.</param>
/// <param name="Name">Its name.</param>
/// <param name="Status"><c>queued</c>, <c>running</c>, <c>succeeded</c> or <c>failed</c>.</param>
/// <param name="CreatedAt">Unix seconds.</param>
/// <param name="StartedAt">Unix seconds.</param>
/// <param name="FinishedAt">Unix seconds.</param>
/// <param name="Policy">The residency policy of its bytes.</param>
/// <param name="Location">Where its bytes are.</param>
/// <param name="Request">The build request as stored.</param>
/// <param name="Progress">The build's progress.</param>
/// <param name="Error">Why it failed.</param>
/// <param name="Summary">The report and manifest, once built (not in lists).</param>
public sealed record DatasetObject(
    string Id, string Object, string Name, string Status, long CreatedAt, long? StartedAt, long? FinishedAt, string Policy, string Location,
    JsonElement Request, JsonElement? Progress, string? Error,
    [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] JsonElement? Summary);

/// <summary>A page of dataset versions.</summary>
/// <param name="Data">The versions, without their summaries.</param>
/// <param name="Object">Always <c>list</c>.</param>
public sealed record DatasetList(IReadOnlyList<DatasetObject> Data, string Object);

/// <summary><c>/api/v1/datasets</c>: build, inspect, download and delete dataset versions.</summary>
public static class DatasetEndpoints
{
    /// <summary>Maps the dataset routes.</summary>
    public static void MapDatasets(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/v1/datasets").WithTags("Datasets");

        api.MapPost("", async (HttpContext context, CreateDatasetRequest? request, IFileRepository files, IDatasetRepository datasets, AtelierConfig config, TimeProvider clock, ModelRegistry registry, DatasetBuildService builder) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            if (request is null)
            {
                throw new BadRequestException("The body must be a JSON object with 'training_files'.");
            }

            var (training, validation) = await DatasetBuildService.ResolveAsync(files, caller.WorkspaceId, request, context.RequestAborted).ConfigureAwait(false);
            _ = await DatasetBuildService.TokenizerAsync(registry, caller.WorkspaceId, request, context.RequestAborted).ConfigureAwait(false);

            // Stored as it will be built: seq_len and options.sequence_length say the same.
            request = request with
            {
                Options = request.SeqLen is { } seqLen ? request.Options with { SequenceLength = seqLen } : request.Options,
                SeqLen = request.SeqLen ?? request.Options.SequenceLength,
            };

            // Residency follows lineage: the dataset is at least as restricted as every source file.
            var policy = ResidencyPolicy.DeriveName(training.Concat(validation).Select(f => f.Policy));
            var record = new DatasetRecord
            {
                Id = "ds-" + ResourceIds.NewUuid(clock),
                WorkspaceId = caller.WorkspaceId,
                Name = string.IsNullOrWhiteSpace(request.Name) ? training[0].Filename : request.Name.Trim(),
                Status = "queued",
                RequestJson = JsonSerializer.Serialize(request, AtelierJson.Options),
                Policy = policy,
                LocationId = config.Defaults.FileLocation,
                CreatedAt = clock.GetUtcNow().ToUnixTimeSeconds(),
                CreatedBy = caller.Actor,
            };
            await datasets.InsertAsync(record, CancellationToken.None).ConfigureAwait(false);
            builder.Enqueue(record.Id);
            return Results.Json(Describe(record, null), AtelierJson.Options, statusCode: StatusCodes.Status202Accepted);
        }).WithSummary("Start building a dataset version from uploaded fine-tune files.").WithName("createDataset").Produces<DatasetObject>(StatusCodes.Status202Accepted).ProducesErrors(403, 422);

        api.MapPost("/{datasetId}/semantic-dedup", async (HttpContext context, string datasetId, SemanticDedupRequest? request, IFileRepository files, IDatasetRepository datasets, TimeProvider clock, ModelRegistry registry, DatasetBuildService builder) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            request = (request ?? new SemanticDedupRequest()) with { Operation = SemanticDedupRequest.OperationName, SourceDataset = datasetId };
            var resolved = await ResolvedSemanticDedup.ResolveAsync(datasets, files, registry, caller.WorkspaceId, request, context.RequestAborted).ConfigureAwait(false);

            // Residency follows lineage: the source's policy, intersected with every eval source's.
            var policy = ResidencyPolicy.DeriveName(resolved.EvalFiles.Select(f => f.Policy).Append(resolved.Source.Policy).Append(resolved.EvalDataset?.Policy));
            var record = new DatasetRecord
            {
                Id = "ds-" + ResourceIds.NewUuid(clock),
                WorkspaceId = caller.WorkspaceId,
                Name = string.IsNullOrWhiteSpace(request.Name) ? resolved.Source.Name + " (semantic dedup)" : request.Name.Trim(),
                Status = "queued",
                RequestJson = JsonSerializer.Serialize(request, AtelierJson.Options),
                Policy = policy,
                LocationId = resolved.Source.LocationId,
                CreatedAt = clock.GetUtcNow().ToUnixTimeSeconds(),
                CreatedBy = caller.Actor,
            };
            await datasets.InsertAsync(record, CancellationToken.None).ConfigureAwait(false);
            builder.Enqueue(record.Id);
            return Results.Json(Describe(record, null), AtelierJson.Options, statusCode: StatusCodes.Status202Accepted);
        }).WithSummary("Derive a dataset version by semantic dedup and decontamination over a base model's embeddings.").WithName("semanticDedupDataset").Produces<DatasetObject>(StatusCodes.Status202Accepted).ProducesErrors(403, 409, 422);

        api.MapGet("", async (HttpContext context, IDatasetRepository datasets, DatasetBuildService builder) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var page = (int)QueryParameters.Integer(context.Request, "page", 0, 0, int.MaxValue / 1000);
            var pageSize = (int)QueryParameters.Integer(context.Request, "page_size", 100, 1, 1000);
            var rows = await datasets.ListAsync(caller.WorkspaceId, page, pageSize, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new { data = rows.Select(r => Describe(r, builder.LiveProgress(r.Id), withSummary: false)), @object = "list" }, AtelierJson.Options);
        }).WithSummary("List dataset versions, newest first.").WithName("listDatasets").Produces<DatasetList>()
            .Query("page", typeof(int), "Page number, from 0.").Query("page_size", typeof(int), "Versions per page, 1 to 1000 (100).");

        api.MapGet("/{datasetId}", async (HttpContext context, string datasetId, IDatasetRepository datasets, DatasetBuildService builder) =>
        {
            var record = await FindAsync(context, datasets, datasetId).ConfigureAwait(false);
            return Results.Json(Describe(record, builder.LiveProgress(record.Id)), AtelierJson.Options);
        }).WithSummary("A dataset: status, progress, counters, shards and report.").WithName("getDataset").Produces<DatasetObject>();

        api.MapGet("/{datasetId}/files/{**path}", async (HttpContext context, string datasetId, string path, IDatasetRepository datasets, PlacementGuard guard) =>
        {
            var record = await FindAsync(context, datasets, datasetId).ConfigureAwait(false);
            if (record.Status != "succeeded")
            {
                throw new ConflictException($"Dataset '{datasetId}' is {record.Status}; its files exist once it has succeeded.");
            }

            // Only names the manifest lists are served: the path never reaches the filesystem as given.
            var listed = ListedFiles(record);
            if (!listed.Contains(path))
            {
                throw new NotFoundException("dataset file", path);
            }

            var stream = await guard.OpenReadAsync(record.LocationId, $"dataset/{record.Id}/{path}", context.RequestAborted).ConfigureAwait(false)
                ?? throw new StorageUnavailableException($"The bytes of '{path}' of dataset '{record.Id}' are missing from location '{record.LocationId}'.");

            var contentType = path.EndsWith(".json", StringComparison.Ordinal) ? "application/json"
                : path.EndsWith(".jsonl", StringComparison.Ordinal) ? "application/jsonl"
                : path.EndsWith(".arrow", StringComparison.Ordinal) ? "application/vnd.apache.arrow.file"
                : "application/octet-stream";
            return Results.Stream(stream, contentType, Path.GetFileName(path), enableRangeProcessing: true);
        }).WithSummary("Download a file of a built dataset: manifest.json, report.json, shards/*.arrow, features/*.parquet, ...").WithName("downloadDatasetFile")
            .ProducesBytes("application/octet-stream", "application/json", "application/jsonl", "application/vnd.apache.arrow.file").ProducesErrors(409, 507);

        api.MapDelete("/{datasetId}", async (HttpContext context, string datasetId, IDatasetRepository datasets, StorageLocations locations, PlacementGuard guard, FreeingSpace freeing) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var existing = await FindAsync(context, datasets, datasetId).ConfigureAwait(false);
            if (existing.Status is "queued" or "running")
            {
                throw new ConflictException($"Dataset '{datasetId}' is still {existing.Status}; delete it once it has finished.");
            }

            var record = await freeing.RunAsync(() => datasets.DeleteAsync(caller.WorkspaceId, datasetId, context.RequestAborted)).ConfigureAwait(false)
                ?? throw new NotFoundException("dataset", datasetId);
            var artifact = new ArtifactRef("dataset", record.Id, caller.WorkspaceId);
            // Listed whole before deleting: a store need not keep a listing stable under deletions.
            var keys = new List<string>();
            await foreach (var key in locations.ListKeysAsync(record.LocationId, $"dataset/{record.Id}/", context.RequestAborted).ConfigureAwait(false))
            {
                keys.Add(key);
            }

            foreach (var key in keys)
            {
                await guard.DeleteAsync(artifact, record.LocationId, caller.Actor, key, context.RequestAborted).ConfigureAwait(false);
            }

            return Results.Json(new { id = record.Id, @object = "dataset", deleted = true }, AtelierJson.Options);
        }).WithSummary("Delete a finished dataset version and its bytes.").WithName("deleteDataset").Produces<DeletedObject>().ProducesErrors(409);
    }

    private static async Task<DatasetRecord> FindAsync(HttpContext context, IDatasetRepository datasets, string id)
    {
        var caller = ApiKeyAuthentication.Caller(context);
        return await datasets.GetAsync(caller.WorkspaceId, id, context.RequestAborted).ConfigureAwait(false) ?? throw new NotFoundException("dataset", id);
    }

    private static HashSet<string> ListedFiles(DatasetRecord record)
    {
        var files = new HashSet<string>(StringComparer.Ordinal) { "manifest.json" };
        var manifest = JsonNode.Parse(record.SummaryJson ?? "{}")?["manifest"];
        foreach (var list in new[] { "shards", "features", "reports" })
        {
            foreach (var f in manifest?[list]?.AsArray() ?? [])
            {
                if (f?["path"]?.GetValue<string>() is { } p)
                {
                    files.Add(p);
                }
            }
        }

        return files;
    }

    private static JsonObject Describe(DatasetRecord r, Data.Building.DatasetBuildProgress? live, bool withSummary = true)
    {
        var body = new JsonObject
        {
            ["id"] = r.Id,
            ["object"] = "dataset",
            ["name"] = r.Name,
            ["status"] = r.Status,
            ["created_at"] = r.CreatedAt,
            ["started_at"] = r.StartedAt,
            ["finished_at"] = r.FinishedAt,
            ["policy"] = r.Policy,
            ["location"] = r.LocationId,
            ["request"] = JsonNode.Parse(r.RequestJson),
            ["progress"] = live is not null ? JsonSerializer.SerializeToNode(live, AtelierJson.Options) : r.ProgressJson is null ? null : JsonNode.Parse(r.ProgressJson),
            ["error"] = r.Error,
        };
        if (withSummary && r.SummaryJson is not null)
        {
            body["summary"] = JsonNode.Parse(r.SummaryJson);
        }

        return body;
    }
}
