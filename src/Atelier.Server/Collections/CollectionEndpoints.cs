using Atelier.Catalog;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Server.Auth;
using Atelier.Server.Errors;
using Atelier.Server.Hosting;
using Atelier.Storage.Placement;
using Atelier.Vectors.Collections;

namespace Atelier.Server.Collections;

/// <summary>
/// Vector collections under <c>/api/v1/collections</c>, addressed by name within the caller's workspace
/// (another workspace's collection is a 404): create, list, get, delete; upsert, delete and get points;
/// search top-k with payload filters applied during the graph walk.
/// </summary>
public static class CollectionEndpoints
{
    /// <summary>Maps the collection routes over the <see cref="CollectionStore"/> registered in the services.</summary>
    public static void MapCollections(this IEndpointRouteBuilder app)
    {
        ArgumentNullException.ThrowIfNull(app);

        var api = app.MapGroup("/api/v1/collections").WithTags("Collections");

        api.MapPost("", async (HttpContext context, StorageLocations locations, PolicyCatalog policies, AtelierConfig config, CollectionStore store) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            using var body = await CollectionRequests.ReadAsync(context.Request, context.RequestAborted).ConfigureAwait(false);
            var request = await CollectionRequests.ParseCreateAsync(body.RootElement, locations, policies, config, caller.WorkspaceId, context.RequestAborted).ConfigureAwait(false);
            var collection = await store.CreateAsync(caller.WorkspaceId, request.Name, request.Config, request.Policy, caller.Actor, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(Describe(collection), AtelierJson.Options, statusCode: StatusCodes.Status201Created);
        }).WithSummary("Create a collection: name, dimension, metric (cosine, dot, l2), storage (float32, float16, int8), shards, locations, policy, hnsw.");

        api.MapGet("", async (HttpContext context, CollectionStore store) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var records = await store.ListAsync(caller.WorkspaceId, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new { @object = "list", data = records.Select(DescribeRecord) }, AtelierJson.Options);
        }).WithSummary("List the workspace's collections by name.");

        api.MapGet("/{name}", async (HttpContext context, string name, CollectionStore store) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var collection = await store.GetAsync(caller.WorkspaceId, name, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(Describe(collection), AtelierJson.Options);
        }).WithSummary("A collection: status, point count, configuration, shards.");

        api.MapDelete("/{name}", async (HttpContext context, string name, CollectionStore store) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var record = await store.DeleteAsync(caller.WorkspaceId, name, caller.Actor, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new { id = record.Id, name = record.Name, @object = "collection", deleted = true }, AtelierJson.Options);
        }).WithSummary("Delete a collection and every byte of it.");

        api.MapPut("/{name}/points", async (HttpContext context, string name, CollectionStore store) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var collection = await store.GetAsync(caller.WorkspaceId, name, context.RequestAborted).ConfigureAwait(false);
            using var body = await CollectionRequests.ReadAsync(context.Request, context.RequestAborted).ConfigureAwait(false);
            var points = CollectionRequests.ParsePoints(body.RootElement, collection.Config.Dimension);
            int upserted = await collection.UpsertAsync(points, caller.Actor, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new { status = "acknowledged", upserted, points_count = collection.Count }, AtelierJson.Options);
        }).WithBodyKind(RequestBodyKind.BulkJson).WithSummary("Upsert a batch of points (id, vector, payload); durable when acknowledged. One bad point refuses the batch.");

        api.MapPost("/{name}/points/delete", async (HttpContext context, string name, CollectionStore store) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var collection = await store.GetAsync(caller.WorkspaceId, name, context.RequestAborted).ConfigureAwait(false);
            using var body = await CollectionRequests.ReadAsync(context.Request, context.RequestAborted).ConfigureAwait(false);
            var ids = CollectionRequests.ParseIds(body.RootElement);
            int deleted = await collection.DeleteAsync(ids, caller.Actor, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new { status = "acknowledged", deleted, points_count = collection.Count }, AtelierJson.Options);
        }).WithSummary("Delete points by id; durable when acknowledged. Ids that do not exist are ignored.");

        api.MapGet("/{name}/points/{id}", async (HttpContext context, string name, string id, CollectionStore store) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var collection = await store.GetAsync(caller.WorkspaceId, name, context.RequestAborted).ConfigureAwait(false);
            long pointId = CollectionRequests.ParseRouteId(id);
            if (!collection.TryGet(pointId, out var vector, out var payload))
            {
                throw new NotFoundException("point", id);
            }

            return Results.Json(new { id = pointId, vector, payload = payload.ToDictionary() }, AtelierJson.Options);
        }).WithSummary("A point: its stored vector (normalised, for cosine) and payload.");

        api.MapPost("/{name}/points/search", async (HttpContext context, string name, CollectionStore store) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var collection = await store.GetAsync(caller.WorkspaceId, name, context.RequestAborted).ConfigureAwait(false);
            using var body = await CollectionRequests.ReadAsync(context.Request, context.RequestAborted).ConfigureAwait(false);
            var request = CollectionRequests.ParseSearch(body.RootElement, collection.Config.Dimension);
            var hits = collection.Search(request.Vector, request.Limit, request.Filter, request.Ef, request.WithVector);
            return Results.Json(
                new
                {
                    @object = "list",
                    data = hits.Select(h => new
                    {
                        id = h.Id,
                        score = h.Score,
                        payload = request.WithPayload ? h.Payload.ToDictionary() : null,
                        vector = h.Vector,
                    }),
                },
                AtelierJson.Options);
        }).WithSummary("The nearest points to a vector that pass a payload filter (must, must_not, should of match and range conditions).");
    }

    private static Dictionary<string, object?> DescribeRecord(CollectionRecord record) => new()
    {
        ["object"] = "collection",
        ["id"] = record.Id,
        ["name"] = record.Name,
        ["config"] = DescribeConfig(record.Config),
        ["policy"] = record.Policy,
        ["created_at"] = record.CreatedAt,
        ["created_by"] = record.CreatedBy,
    };

    private static Dictionary<string, object?> Describe(VectorCollection collection)
    {
        var description = DescribeRecord(collection.Record);
        description["status"] = "ready";
        description["points_count"] = collection.Count;
        description["shards"] = collection.DescribeShards().Select(s => new
        {
            shard = s.Shard,
            location = s.Location,
            points = s.Points,
            log_blobs = s.LogBlobs,
            log_bytes = s.LogBytes,
            snapshot_bytes = s.SnapshotBytes,
        }).ToArray();
        return description;
    }

    private static object DescribeConfig(CollectionConfig config) => new
    {
        dimension = config.Dimension,
        metric = config.Metric switch
        {
            Atelier.Vectors.DistanceMetric.Cosine => "cosine",
            Atelier.Vectors.DistanceMetric.Dot => "dot",
            _ => "l2",
        },
        storage = config.Storage switch
        {
            VectorStorage.Float16 => "float16",
            VectorStorage.Int8 => "int8",
            _ => "float32",
        },
        shards = config.Shards,
        locations = config.Locations,
        hnsw = new { m = config.M, ef_construction = config.EfConstruction, ef_search = config.EfSearch },
    };
}
