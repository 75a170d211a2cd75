using System.Text.Json;
using Atelier.Catalog;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Server.Auth;
using Atelier.Server.Errors;
using Atelier.Server.Hosting;
using Atelier.Storage.Placement;
using Atelier.Vectors.Collections;

namespace Atelier.Server.Collections;

/// <summary>A collection's HNSW parameters.</summary>
/// <param name="M">Links per node.</param>
/// <param name="EfConstruction">Candidates while building.</param>
/// <param name="EfSearch">Candidates while searching.</param>
public sealed record HnswObject(int M, int EfConstruction, int EfSearch);

/// <summary>A collection's configuration.</summary>
/// <param name="Dimension">Vector dimension.</param>
/// <param name="Metric"><c>cosine</c>, <c>dot</c> or <c>l2</c>.</param>
/// <param name="Storage"><c>float32</c>, <c>float16</c> or <c>int8</c>.</param>
/// <param name="Shards">Shard count.</param>
/// <param name="Locations">Where its shards are.</param>
/// <param name="Hnsw">Index parameters.</param>
/// <param name="ProductQuantization">Bytes of product-quantisation code a vector the graph is walked on (int8 storage only); 0: none.</param>
public sealed record CollectionConfigObject(int Dimension, string Metric, string Storage, int Shards, IReadOnlyList<string> Locations, HnswObject Hnsw, int ProductQuantization);

/// <summary>A shard of a collection.</summary>
/// <param name="Shard">Its number.</param>
/// <param name="Location">Where it is.</param>
/// <param name="Points">Its points.</param>
/// <param name="LogBlobs">Log segments.</param>
/// <param name="LogBytes">Log size.</param>
/// <param name="SnapshotBytes">Snapshot size.</param>
/// <param name="OpenedFromSavedGraph">Whether its graph was mapped from the saved graph when the collection opened (no rebuild).</param>
public sealed record CollectionShardObject(int Shard, string Location, long Points, int LogBlobs, long LogBytes, long SnapshotBytes, bool OpenedFromSavedGraph);

/// <summary>What an open collection keeps in memory.</summary>
/// <param name="ResidentBytes">Bytes of its graphs a search keeps touching (codes walked, links, per-node tables, payload entries).</param>
/// <param name="BudgetBytes">The budget it is held to (<c>collections.memory_budget_bytes</c>); 0: none.</param>
/// <param name="OverMemoryBudget">Whether the graphs alone need more than the budget (the cache of full vectors is then cut to its minimum).</param>
public sealed record CollectionMemoryObject(long ResidentBytes, long BudgetBytes, bool OverMemoryBudget);

/// <summary>A collection (built as a dictionary by <c>Describe</c>); <c>status</c>, <c>points_count</c> and <c>shards</c> only on a single collection, not in lists.</summary>
/// <param name="Object">Always <c>collection</c>.</param>
/// <param name="Id">Its id.</param>
/// <param name="Name">Its name.</param>
/// <param name="Config">Its configuration.</param>
/// <param name="Policy">Its residency policy.</param>
/// <param name="CreatedAt">Unix seconds.</param>
/// <param name="CreatedBy">Who created it.</param>
/// <param name="Status">Always <c>ready</c>.</param>
/// <param name="PointsCount">Its points.</param>
/// <param name="Shards">Its shards.</param>
/// <param name="Memory">What it keeps in memory.</param>
public sealed record CollectionObject(
    string Object, string Id, string Name, CollectionConfigObject Config, string Policy, long CreatedAt, string CreatedBy,
    [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] string? Status = null,
    [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] long? PointsCount = null,
    [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<CollectionShardObject>? Shards = null,
    [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] CollectionMemoryObject? Memory = null);

/// <summary>The answer to deleting a collection.</summary>
/// <param name="Id">Its id.</param>
/// <param name="Name">Its name.</param>
/// <param name="Object">Always <c>collection</c>.</param>
/// <param name="Deleted">Always true.</param>
public sealed record DeletedCollectionObject(string Id, string Name, string Object, bool Deleted);

/// <summary>The answer to an upsert.</summary>
/// <param name="Status">Always <c>acknowledged</c> (durable).</param>
/// <param name="Upserted">Points written.</param>
/// <param name="PointsCount">Points in the collection now.</param>
public sealed record UpsertedPointsObject(string Status, int Upserted, long PointsCount);

/// <summary>The answer to a delete of points.</summary>
/// <param name="Status">Always <c>acknowledged</c> (durable).</param>
/// <param name="Deleted">Points deleted.</param>
/// <param name="PointsCount">Points in the collection now.</param>
public sealed record DeletedPointsObject(string Status, int Deleted, long PointsCount);

/// <summary>A point.</summary>
/// <param name="Id">Its id.</param>
/// <param name="Vector">Its stored vector (normalised, for cosine).</param>
/// <param name="Payload">Its payload.</param>
public sealed record PointObject(long Id, IReadOnlyList<float> Vector, Dictionary<string, JsonElement> Payload);

/// <summary>A search hit.</summary>
/// <param name="Id">The point.</param>
/// <param name="Score">Its score.</param>
/// <param name="Payload">Its payload (with <c>with_payload</c>).</param>
/// <param name="Vector">Its vector (with <c>with_vector</c>).</param>
public sealed record SearchHitObject(long Id, float Score, Dictionary<string, JsonElement>? Payload, IReadOnlyList<float>? Vector);

/// <summary>The body of <c>POST /api/v1/collections</c>.</summary>
/// <param name="Name">Its name.</param>
/// <param name="Dimension">Vector dimension.</param>
/// <param name="Metric"><c>cosine</c> (default), <c>dot</c> or <c>l2</c>.</param>
/// <param name="Storage"><c>float32</c> (default), <c>float16</c> or <c>int8</c>.</param>
/// <param name="Shards">Shard count.</param>
/// <param name="Locations">Where its shards go.</param>
/// <param name="Policy">Its residency policy.</param>
/// <param name="Hnsw">Index parameters (<c>m</c>, <c>ef_construction</c>, <c>ef_search</c>).</param>
/// <param name="ProductQuantization">For int8 storage: bytes of product-quantisation code a vector (a divisor of the dimension) the graph is walked on.</param>
public sealed record CreateCollectionBody(string Name, int Dimension, string? Metric, string? Storage, int? Shards, IReadOnlyList<string>? Locations, string? Policy, HnswObject? Hnsw, int? ProductQuantization);

/// <summary>A point to upsert.</summary>
/// <param name="Id">Its id (a whole number).</param>
/// <param name="Vector">Its vector.</param>
/// <param name="Payload">Its payload.</param>
public sealed record PointInput(long Id, IReadOnlyList<float> Vector, Dictionary<string, JsonElement>? Payload);

/// <summary>The body of an upsert.</summary>
/// <param name="Points">The points.</param>
public sealed record UpsertPointsBody(IReadOnlyList<PointInput> Points);

/// <summary>The body of a delete of points.</summary>
/// <param name="Points">The ids.</param>
public sealed record DeletePointsBody(IReadOnlyList<long> Points);

/// <summary>The body of a search.</summary>
/// <param name="Vector">The query vector.</param>
/// <param name="Limit">Hits to return.</param>
/// <param name="Filter">A payload filter: <c>must</c>, <c>must_not</c>, <c>should</c> of match and range conditions.</param>
/// <param name="Ef">Candidates to consider.</param>
/// <param name="WithPayload">Return payloads.</param>
/// <param name="WithVector">Return vectors.</param>
public sealed record SearchPointsBody(IReadOnlyList<float> Vector, int? Limit, JsonElement? Filter, int? Ef, bool? WithPayload, bool? WithVector);

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
        }).WithSummary("Create a collection: name, dimension, metric (cosine, dot, l2), storage (float32, float16, int8), shards, locations, policy, hnsw, product_quantization (int8 only).").WithName("createCollection").Reads<CreateCollectionBody>().Produces<CollectionObject>(StatusCodes.Status201Created).ProducesErrors(403, 409, 422);

        api.MapGet("", async (HttpContext context, CollectionStore store) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var records = await store.ListAsync(caller.WorkspaceId, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new { @object = "list", data = records.Select(DescribeRecord) }, AtelierJson.Options);
        }).WithSummary("List the workspace's collections by name.").WithName("listCollections").Produces<ObjectList<CollectionObject>>();

        api.MapGet("/{name}", async (HttpContext context, string name, CollectionStore store) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var collection = await store.GetAsync(caller.WorkspaceId, name, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(Describe(collection), AtelierJson.Options);
        }).WithSummary("A collection: status, point count, configuration, shards, memory (resident bytes, budget, over_memory_budget).").WithName("getCollection").Produces<CollectionObject>();

        api.MapDelete("/{name}", async (HttpContext context, string name, CollectionStore store) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var record = await store.DeleteAsync(caller.WorkspaceId, name, caller.Actor, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new { id = record.Id, name = record.Name, @object = "collection", deleted = true }, AtelierJson.Options);
        }).WithSummary("Delete a collection and every byte of it.").WithName("deleteCollection").Produces<DeletedCollectionObject>().ProducesErrors(409);

        api.MapPut("/{name}/points", async (HttpContext context, string name, CollectionStore store) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var collection = await store.GetAsync(caller.WorkspaceId, name, context.RequestAborted).ConfigureAwait(false);
            using var body = await CollectionRequests.ReadAsync(context.Request, context.RequestAborted).ConfigureAwait(false);
            var points = CollectionRequests.ParsePoints(body.RootElement, collection.Config.Dimension);
            int upserted = await collection.UpsertAsync(points, caller.Actor, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new { status = "acknowledged", upserted, points_count = collection.Count }, AtelierJson.Options);
        }).WithBodyKind(RequestBodyKind.BulkJson).WithSummary("Upsert a batch of points (id, vector, payload); durable when acknowledged. One bad point refuses the batch.").WithName("upsertPoints").Reads<UpsertPointsBody>().Produces<UpsertedPointsObject>().ProducesErrors(403, 422);

        api.MapPost("/{name}/points/delete", async (HttpContext context, string name, CollectionStore store) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var collection = await store.GetAsync(caller.WorkspaceId, name, context.RequestAborted).ConfigureAwait(false);
            using var body = await CollectionRequests.ReadAsync(context.Request, context.RequestAborted).ConfigureAwait(false);
            var ids = CollectionRequests.ParseIds(body.RootElement);
            int deleted = await collection.DeleteAsync(ids, caller.Actor, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new { status = "acknowledged", deleted, points_count = collection.Count }, AtelierJson.Options);
        }).WithSummary("Delete points by id; durable when acknowledged. Ids that do not exist are ignored.").WithName("deletePoints").Reads<DeletePointsBody>().Produces<DeletedPointsObject>().ProducesErrors(422);

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
        }).WithSummary("A point: its stored vector (normalised, for cosine) and payload.").WithName("getPoint").Produces<PointObject>().ProducesErrors(400);

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
        }).WithSummary("The nearest points to a vector that pass a payload filter (must, must_not, should of match and range conditions).").WithName("searchPoints").Reads<SearchPointsBody>().Produces<ObjectList<SearchHitObject>>().ProducesErrors(422);
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
            opened_from_saved_graph = s.OpenedFromSavedGraph,
        }).ToArray();
        description["memory"] = new
        {
            resident_bytes = collection.ResidentIndexBytes,
            budget_bytes = collection.MemoryBudgetBytes,
            over_memory_budget = collection.OverMemoryBudget,
        };
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
        product_quantization = config.ProductQuantization,
    };
}
