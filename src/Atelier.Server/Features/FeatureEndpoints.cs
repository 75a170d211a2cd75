using System.Text.Json;
using Atelier.Catalog;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Features;
using Atelier.Features.Api;
using Atelier.Features.Materialization;
using Atelier.Server.Auth;
using Atelier.Server.Errors;
using Atelier.Server.Hosting;

namespace Atelier.Server.Features;

/// <summary>Historical features as JSON (<c>format: json</c>).</summary>
/// <param name="Columns">The column names.</param>
/// <param name="Data">One object per entity row, keyed by column.</param>
public sealed record HistoricalFeaturesObject(IReadOnlyList<string> Columns, IReadOnlyList<Dictionary<string, JsonElement>> Data);

/// <summary>The feature store under <c>/api/v1/features</c>: views, pushes, online lookups, point-in-time retrieval, training sets.</summary>
public static class FeatureEndpoints
{
    /// <summary>The online store's file in the data directory.</summary>
    public const string OnlineStoreFile = "features-online.db";

    /// <summary>Maps <c>/api/v1/features</c> over the <see cref="FeatureStore"/> registered in the services.</summary>
    public static void MapFeatures(this IEndpointRouteBuilder app)
    {
        ArgumentNullException.ThrowIfNull(app);
        var api = app.MapGroup("/api/v1/features").WithTags("Features");

        api.MapPost("/views", async (HttpContext context, FeatureStore store, PolicyCatalog policies) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var body = await FeatureApi.ReadBodyAsync<CreateViewBody>(context.Request.Body, context.RequestAborted).ConfigureAwait(false);
            var spec = FeatureApi.ToSpec(body);
            var policy = await policies.ChooseAsync(caller.WorkspaceId, spec.Policy, context.RequestAborted).ConfigureAwait(false);
            var (view, created) = await store.CreateViewAsync(caller.WorkspaceId, spec with { Policy = policy }, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(FeatureApi.ToResponse(view), AtelierJson.Options, statusCode: created ? StatusCodes.Status201Created : StatusCodes.Status200OK);
        }).WithSummary("Create a feature view, or a new version of it when the schema changed (the same schema again returns the existing version).").WithName("createFeatureView").Reads<CreateViewBody>().Produces<ViewResponse>(StatusCodes.Status201Created).Produces<ViewResponse>().ProducesErrors(403, 409, 422);

        api.MapGet("/views", async (HttpContext context, FeatureStore store) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var views = await store.ListViewsAsync(caller.WorkspaceId, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(new { data = views.Select(v => FeatureApi.ToResponse(v)) }, AtelierJson.Options);
        }).WithSummary("List feature views, every version.").WithName("listFeatureViews").Produces<DataList<ViewResponse>>();

        api.MapGet("/views/{name}", async (HttpContext context, FeatureStore store, string name, int? version) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var view = await store.GetViewAsync(caller.WorkspaceId, name, version, context.RequestAborted).ConfigureAwait(false);
            var segments = await store.SegmentsAsync(view, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(FeatureApi.ToResponse(view, segments), AtelierJson.Options);
        }).WithSummary("A feature view (the latest version unless ?version=).").WithName("getFeatureView").Produces<ViewResponse>();

        api.MapPost("/views/{name}/rows", async (HttpContext context, FeatureStore store, string name) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var body = await FeatureApi.ReadBodyAsync<PushBody>(context.Request.Body, context.RequestAborted).ConfigureAwait(false);
            var result = await store.PushAsync(caller.WorkspaceId, name, body.Version, FeatureApi.ToRows(body), caller.Actor, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(result, AtelierJson.Options, statusCode: StatusCodes.Status201Created);
        }).WithBodyKind(RequestBodyKind.BulkJson).WithSummary("Push rows (entity key, event time, features) to a view's log; a bad row refuses the batch and writes nothing.").WithName("pushFeatureRows").Reads<PushBody>().Produces<PushResult>(StatusCodes.Status201Created).ProducesErrors(403, 422);

        api.MapPost("/views/{name}/parquet", async (HttpContext context, FeatureStore store, string name, int? version, DateTimeOffset? defaultEventTime, string? filename) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var result = await store.IngestParquetAsync(
                caller.WorkspaceId, name, version, context.Request.Body, filename ?? "upload.parquet", defaultEventTime, caller.Actor, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(result, AtelierJson.Options, statusCode: StatusCodes.Status201Created);
        }).WithBodyKind(RequestBodyKind.Upload).WithSummary("Ingest a per-example feature Parquet file (the request body) into a view; columns the view lacks are ignored.").WithName("ingestFeatureParquet").WithRequestBody<RouteHandlerBuilder, Stream>("application/vnd.apache.parquet").Produces<PushResult>(StatusCodes.Status201Created).ProducesErrors(403, 422);

        api.MapPost("/views/{name}/online", async (HttpContext context, FeatureStore store, string name) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var body = await FeatureApi.ReadBodyAsync<OnlineBody>(context.Request.Body, context.RequestAborted).ConfigureAwait(false);
            if (body.Keys is null)
            {
                throw new BadRequestException("The body needs 'keys': an array of entity keys.");
            }

            for (var i = 0; i < body.Keys.Count; i++)
            {
                if (body.Keys[i] is null)
                {
                    throw new ValidationFailedException("An entity key must be a string, not null.", [new Problem("must be a string, not null", Field: $"keys[{i}]")], 1, "invalid_request");
                }
            }

            var view = await store.GetViewAsync(caller.WorkspaceId, name, body.Version, context.RequestAborted).ConfigureAwait(false);
            var values = await store.GetOnlineAsync(view, body.Keys, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(FeatureApi.ToResponse(view, values), AtelierJson.Options);
        }).WithSummary("The latest value of each key (batch online lookup).").WithName("getOnlineFeatures").Reads<OnlineBody>().Produces<OnlineResponse>().ProducesErrors(422);

        api.MapPost("/historical", async (HttpContext context, FeatureStore store) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var body = await FeatureApi.ReadBodyAsync<HistoricalBody>(context.Request.Body, context.RequestAborted).ConfigureAwait(false);
            var table = await store.GetHistoricalAsync(caller.WorkspaceId, FeatureApi.ToEntityRows(body), body.Features ?? [], context.RequestAborted).ConfigureAwait(false);
            if (string.Equals(body.Format, "json", StringComparison.OrdinalIgnoreCase))
            {
                return Results.Json(new { columns = table.Columns.Select(c => c.Name), data = table.ToRecords() }, AtelierJson.Options);
            }

            if (body.Format is not null && !string.Equals(body.Format, "parquet", StringComparison.OrdinalIgnoreCase))
            {
                throw new BadRequestException($"Unknown format '{body.Format}'; use parquet or json.");
            }

            var parquet = new MemoryStream();
            await table.WriteParquetAsync(parquet, context.RequestAborted).ConfigureAwait(false);
            parquet.Position = 0;
            return Results.File(parquet, "application/vnd.apache.parquet", "historical_features.parquet");
        }).WithSummary("Point-in-time correct retrieval: each entity row joined with the latest value at or before its timestamp (Parquet, or JSON with format=json).").WithName("getHistoricalFeatures").Reads<HistoricalBody>().Produces<HistoricalFeaturesObject>(StatusCodes.Status200OK, "application/json").ProducesBytes("application/vnd.apache.parquet").ProducesErrors(422);

        api.MapPost("/training-sets", async (HttpContext context, FeatureStore store) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var body = await FeatureApi.ReadBodyAsync<TrainingSetBody>(context.Request.Body, context.RequestAborted).ConfigureAwait(false);
            var manifest = await store.MaterializeAsync(caller.WorkspaceId, FeatureApi.ToRequest(body), caller.Actor, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(manifest, AtelierJson.Options, statusCode: StatusCodes.Status201Created);
        }).WithSummary("Materialise a filtered, point-in-time training set into a new dataset version with lineage.").WithName("createTrainingSet").Reads<TrainingSetBody>().Produces<TrainingSetManifest>(StatusCodes.Status201Created).ProducesErrors(403, 409, 422);

        api.MapGet("/training-sets", async (HttpContext context, FeatureStore store) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            return Results.Json(new { data = await store.ListTrainingSetsAsync(caller.WorkspaceId, context.RequestAborted).ConfigureAwait(false) }, AtelierJson.Options);
        }).WithSummary("List training sets, newest first.").WithName("listTrainingSets").Produces<DataList<TrainingSetManifest>>();

        api.MapGet("/training-sets/{id}", async (HttpContext context, FeatureStore store, string id) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            return Results.Json(await store.GetTrainingSetAsync(caller.WorkspaceId, id, context.RequestAborted).ConfigureAwait(false), AtelierJson.Options);
        }).WithSummary("A training set's manifest.").WithName("getTrainingSet").Produces<TrainingSetManifest>();

        api.MapGet("/training-sets/{id}/examples", async (HttpContext context, FeatureStore store, string id) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            var manifest = await store.GetTrainingSetAsync(caller.WorkspaceId, id, context.RequestAborted).ConfigureAwait(false);
            var examples = await store.OpenTrainingSetBlobAsync(manifest, manifest.Examples.Key, context.RequestAborted).ConfigureAwait(false);
            return Results.File(examples, "application/vnd.apache.parquet", $"{manifest.Name}-v{manifest.Version}.parquet");
        }).WithSummary("A training set's Parquet of example ids and features.").WithName("downloadTrainingSetExamples").ProducesBytes("application/vnd.apache.parquet").ProducesErrors(507);
    }
}
