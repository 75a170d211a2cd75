using System.Text.Json.Serialization;
using Atelier.Server.Errors;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;

namespace Atelier.Server.Hosting;

/// <summary>Endpoint metadata: error statuses an endpoint answers besides those every endpoint of its kind can (see <see cref="OpenApiDocumentation"/>).</summary>
/// <param name="Statuses">The statuses.</param>
public sealed record ErrorResponsesMetadata(IReadOnlyList<int> Statuses);

/// <summary>
/// Endpoint metadata: the body an endpoint reads by hand, for the document only. Unlike
/// <c>Accepts&lt;T&gt;</c>, it adds no content-type matching to routing, so the handler's own
/// error for a missing or wrong body stays what it was.
/// </summary>
/// <param name="Type">The record whose JSON (or form fields) the handler reads.</param>
/// <param name="ContentType">Its media type.</param>
/// <param name="Required">Whether the body must be sent.</param>
public sealed record RequestBodyMetadata(Type Type, string ContentType, bool Required);

/// <summary>Endpoint metadata: a query parameter the handler reads by hand.</summary>
/// <param name="Name">Its name.</param>
/// <param name="Type">Its type (<c>int</c>, <c>string</c>, <c>bool</c>, ...).</param>
/// <param name="Description">What it does.</param>
public sealed record QueryParameterMetadata(string Name, Type Type, string Description);

/// <summary>Endpoint metadata: the endpoint also answers without a key (a signed URL: its query carries the signature).</summary>
public sealed record SignedUrlAccessMetadata;

/// <summary>What endpoints say about themselves for the OpenAPI document, in one-line calls on their <c>Map*</c>.</summary>
public static class OpenApiEndpointExtensions
{
    /// <summary>Declares error statuses the endpoint answers besides the ones its kind implies (401, 404 on a path id, 400 and 413 on a body, ...).</summary>
    public static TBuilder ProducesErrors<TBuilder>(this TBuilder builder, params int[] statuses)
        where TBuilder : IEndpointConventionBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.WithMetadata(new ErrorResponsesMetadata(statuses));
    }

    /// <summary>Declares the JSON body (or, with <paramref name="contentType"/>, the form) the handler reads by hand.</summary>
    public static TBuilder WithRequestBody<TBuilder, TBody>(this TBuilder builder, string contentType = "application/json", bool required = true)
        where TBuilder : IEndpointConventionBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.WithMetadata(new RequestBodyMetadata(typeof(TBody), contentType, required));
    }

    /// <summary>Declares a query parameter the handler reads by hand.</summary>
    public static TBuilder Query<TBuilder>(this TBuilder builder, string name, Type type, string description)
        where TBuilder : IEndpointConventionBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.WithMetadata(new QueryParameterMetadata(name, type, description));
    }

    /// <summary>Declares the JSON body the handler reads by hand.</summary>
    public static RouteHandlerBuilder Reads<TBody>(this RouteHandlerBuilder builder, bool required = true) =>
        builder.WithRequestBody<RouteHandlerBuilder, TBody>("application/json", required);

    /// <summary>Declares a 200 answer of raw bytes (a download) of <paramref name="contentType"/>.</summary>
    public static RouteHandlerBuilder ProducesBytes(this RouteHandlerBuilder builder, string contentType = "application/octet-stream", params string[] more)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.Produces(StatusCodes.Status200OK, typeof(Stream), contentType, more);
    }

    /// <summary>Declares a 200 answer of server-sent events.</summary>
    public static RouteHandlerBuilder ProducesEvents(this RouteHandlerBuilder builder)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.Produces<string>(StatusCodes.Status200OK, "text/event-stream");
    }
}

/// <summary>
/// The OpenAPI document at <c>/openapi/v1.json</c> (decision 0014): schemas with the wire's
/// snake_case names, the error bodies of <see cref="ErrorMapping"/> as two component schemas referenced
/// from every error status, and the bearer API key as the global security scheme.
/// </summary>
public static class OpenApiDocumentation
{
    /// <summary>The component schema of errors on <c>/v1</c>.</summary>
    public const string MistralErrorSchema = "MistralError";

    /// <summary>The component schema of errors elsewhere.</summary>
    public const string ProblemSchema = "Problem";

    /// <summary>The security scheme's name.</summary>
    public const string BearerScheme = "bearer";

    private static readonly Dictionary<string, string> TagDescriptions = new(StringComparer.Ordinal)
    {
        ["Files"] = "Mistral-compatible Files API: upload, list, retrieve, download and delete training data.",
        ["Models"] = "Mistral-compatible model cards, fine-tuned model updates, and the platform's model import and downloads.",
        ["Fine-tuning"] = "Mistral-compatible fine-tuning jobs, their data reports and per-step metrics.",
        ["Inference"] = "Mistral-compatible chat, fill-in-the-middle and embeddings.",
        ["Datasets"] = "Curated dataset versions built from files.",
        ["Collections"] = "Vector collections: points and search.",
        ["Features"] = "Feature views, historical and online features, training sets.",
        ["Checkpoints"] = "Checkpoints of fine-tuning jobs, and restoring from them.",
        ["Nodes"] = "Training nodes and their slots.",
        ["Policies"] = "Residency policies.",
        ["Workspaces"] = "Workspaces and the policies they may use.",
        ["Keys"] = "API keys.",
        ["Audit"] = "The signed, append-only audit log.",
        ["Locations"] = "Storage locations and their jurisdictions.",
        ["Registry"] = "Registered model names, versions, aliases and evaluations.",
        ["Lineage"] = "The lineage graph from files to serving replicas.",
        ["Erasure"] = "Erasure of an artifact and of everything derived from it, with a signed report.",
        ["Health"] = "Liveness.",
    };

    /// <summary>Adds the document with Atelier's transformers.</summary>
    public static IServiceCollection AddAtelierOpenApi(this IServiceCollection services) =>
        services.AddOpenApi(options =>
        {
            options.AddSchemaTransformer(TransformSchemaAsync);
            options.AddOperationTransformer(TransformOperationAsync);
            options.AddDocumentTransformer(TransformDocumentAsync);
        });

    /// <summary>
    /// Makes a schema say what <c>AtelierJson.Options</c> writes. Numbers: the web defaults also
    /// <em>read</em> numbers from strings, so the generator declares <c>integer | string</c>; the server
    /// only writes numbers. Required: every member of a response record is written, null included
    /// (no default ignore condition), except the ones marked <c>WhenWritingNull</c>; request records
    /// (named <c>*Request</c>, or declared with <c>WithRequestBody</c>) are checked by their handlers, which name a missing field themselves.
    /// </summary>
    private static Task TransformSchemaAsync(OpenApiSchema schema, OpenApiSchemaTransformerContext context, CancellationToken cancellationToken)
    {
        if (schema.Type is { } type && (type & (JsonSchemaType.Integer | JsonSchemaType.Number)) != 0 && (type & JsonSchemaType.String) != 0)
        {
            schema.Type = type & ~JsonSchemaType.String;
            schema.Pattern = null;
        }

        var info = context.JsonTypeInfo;
        if (GeneratingRequestBody.Value && context.JsonPropertyInfo is null && schema.Required is { Count: > 0 } required && schema.Properties is { } members)
        {
            // A request record's nullable member may be left out: its handler applies the default.
            foreach (var name in required.Where(name => members.TryGetValue(name, out var member) && member.Type is { } t && (t & JsonSchemaType.Null) != 0).ToList())
            {
                required.Remove(name);
            }
        }

        if (Nullable.GetUnderlyingType(info.Type) is var underlying && (underlying ?? info.Type).IsEnum)
        {
            // AtelierJson.Options writes enums as snake_case strings; the framework's options (which
            // bind the few request records) have no enum converter, so the generator says integers.
            var names = Enum.GetNames(underlying ?? info.Type).Select(n => (System.Text.Json.Nodes.JsonNode)System.Text.Json.JsonNamingPolicy.SnakeCaseLower.ConvertName(n)!);
            schema.Type = underlying is null ? JsonSchemaType.String : JsonSchemaType.String | JsonSchemaType.Null;
            schema.Enum = [.. names];
            schema.Format = null;
            return Task.CompletedTask;
        }

        if (context.JsonPropertyInfo is null && info.Kind == System.Text.Json.Serialization.Metadata.JsonTypeInfoKind.Object
            && info.Type.Namespace?.StartsWith("Atelier", StringComparison.Ordinal) == true
            && !GeneratingRequestBody.Value && !info.Type.Name.EndsWith("Request", StringComparison.Ordinal)
            && schema.Properties is { Count: > 0 })
        {
            schema.Required ??= new HashSet<string>(StringComparer.Ordinal);
            foreach (var property in info.Properties)
            {
                var omittedWhenNull = property.AttributeProvider?.GetCustomAttributes(typeof(JsonIgnoreAttribute), inherit: true)
                    .OfType<JsonIgnoreAttribute>().Any(a => a.Condition is JsonIgnoreCondition.WhenWritingNull or JsonIgnoreCondition.WhenWritingDefault) == true;
                if (!omittedWhenNull && property.Get is not null && schema.Properties.ContainsKey(property.Name))
                {
                    schema.Required.Add(property.Name);
                }
            }
        }

        return Task.CompletedTask;
    }

    private static async Task TransformOperationAsync(OpenApiOperation operation, OpenApiOperationTransformerContext context, CancellationToken cancellationToken)
    {
        var description = context.Description;
        var path = "/" + (description.RelativePath ?? "");
        var metadata = description.ActionDescriptor.EndpointMetadata;
        var mistral = path.StartsWith("/v1/", StringComparison.Ordinal);
        var authenticated = mistral || path.StartsWith("/api/v1/", StringComparison.Ordinal);

        if (metadata.OfType<RequestBodyMetadata>().LastOrDefault() is { } body)
        {
            operation.RequestBody = new OpenApiRequestBody
            {
                Required = body.Required,
                Content = new Dictionary<string, OpenApiMediaType>(StringComparer.Ordinal)
                {
                    [body.ContentType] = new() { Schema = await RequestSchemaAsync(context, body.Type, cancellationToken).ConfigureAwait(false) },
                },
            };
        }

        foreach (var query in metadata.OfType<QueryParameterMetadata>())
        {
            operation.Parameters ??= [];
            operation.Parameters.Add(new OpenApiParameter
            {
                Name = query.Name,
                In = ParameterLocation.Query,
                Description = query.Description,
                Schema = await context.GetOrCreateSchemaAsync(query.Type, null, cancellationToken).ConfigureAwait(false),
            });
        }

        // What every endpoint of a kind can answer, by the middleware and handlers all share:
        // ApiKeyAuthentication (401), a path id not found or not the caller's (404), a body or query
        // that cannot be read (400), a body over its limit (413, RequestBodyLimit), a full disk on a
        // write (507), and anything unexpected (500). An endpoint adds its own with ProducesErrors.
        var statuses = new SortedSet<int> { StatusCodes.Status500InternalServerError };
        if (authenticated)
        {
            statuses.Add(StatusCodes.Status401Unauthorized);
        }

        if (description.ParameterDescriptions.Any(p => p.Source == Microsoft.AspNetCore.Mvc.ModelBinding.BindingSource.Path))
        {
            statuses.Add(StatusCodes.Status404NotFound);
        }

        if (operation.RequestBody is not null || operation.Parameters?.Any(p => p.In == ParameterLocation.Query) == true)
        {
            statuses.Add(StatusCodes.Status400BadRequest);
        }

        if (operation.RequestBody is not null)
        {
            statuses.Add(StatusCodes.Status413PayloadTooLarge);
        }

        if (description.HttpMethod is "POST" or "PUT" or "PATCH")
        {
            statuses.Add(StatusCodes.Status507InsufficientStorage);
        }

        foreach (var declared in metadata.OfType<ErrorResponsesMetadata>())
        {
            statuses.UnionWith(declared.Statuses);
        }

        operation.Responses ??= [];

        // A stream of server-sent events is text; the record a 200 also declares is the JSON answer.
        foreach (var response in operation.Responses.Values)
        {
            if (response.Content?.TryGetValue("text/event-stream", out var events) == true)
            {
                events.Schema = new OpenApiSchema { Type = JsonSchemaType.String, Description = "Server-sent events: `data: <JSON>` lines, each a chunk of the answer (or a step), then the stream's end." };
            }
        }

        var (schemaName, contentType) = mistral ? (MistralErrorSchema, "application/json") : (ProblemSchema, "application/problem+json");
        foreach (var status in statuses)
        {
            var key = status.ToString(System.Globalization.CultureInfo.InvariantCulture);
            if (operation.Responses.ContainsKey(key))
            {
                continue;
            }

            operation.Responses[key] = new OpenApiResponse
            {
                Description = ErrorDescription(status),
                Content = new Dictionary<string, OpenApiMediaType>(StringComparer.Ordinal)
                {
                    [contentType] = new() { Schema = new OpenApiSchemaReference(schemaName, context.Document) },
                },
            };
        }

        // The key is required globally (TransformDocumentAsync); health and the other routes outside
        // /v1 and /api/v1 need none (ApiKeyAuthentication lets them through), and a file's content
        // also answers a signed URL without a key.
        if (!authenticated)
        {
            operation.Security = [new OpenApiSecurityRequirement()];
        }
        else if (metadata.OfType<SignedUrlAccessMetadata>().Any())
        {
            operation.Security =
            [
                new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(BearerScheme, context.Document)] = [] },
                new OpenApiSecurityRequirement(),
            ];
        }
    }

    // Set while a hand-read body's schema is generated: a request record's members are not all
    // required (its handler names a missing one), while a response record's are all written.
    private static readonly AsyncLocal<bool> GeneratingRequestBody = new();

    private static async Task<IOpenApiSchema> RequestSchemaAsync(OpenApiOperationTransformerContext context, Type type, CancellationToken cancellationToken)
    {
        GeneratingRequestBody.Value = true;
        try
        {
            return await context.GetOrCreateSchemaAsync(type, null, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            GeneratingRequestBody.Value = false;
        }
    }

    private static async Task TransformDocumentAsync(OpenApiDocument document, OpenApiDocumentTransformerContext context, CancellationToken cancellationToken)
    {
        document.Info = new OpenApiInfo
        {
            Title = "Atelier",
            Version = "v1",
            Description = "Atelier's HTTP API: the Mistral-compatible API under /v1 (errors in Mistral's shape) and the platform's API under /api/v1 (errors as RFC 9457 problem details). Every call under /v1 and /api/v1 needs 'Authorization: Bearer <API key>'.",
        };

        // The generator names the server by the request's base address, with a trailing slash.
        foreach (var server in document.Servers ?? [])
        {
            server.Url = server.Url?.TrimEnd('/');
        }

        document.Components ??= new OpenApiComponents();
        document.AddComponent(MistralErrorSchema, await context.GetOrCreateSchemaAsync(typeof(MistralErrorBody), null, cancellationToken).ConfigureAwait(false));
        document.AddComponent(ProblemSchema, await context.GetOrCreateSchemaAsync(typeof(ProblemBody), null, cancellationToken).ConfigureAwait(false));
        document.AddComponent<IOpenApiSecurityScheme>(BearerScheme, new OpenApiSecurityScheme
        {
            Type = SecuritySchemeType.Http,
            Scheme = "bearer",
            Description = "An Atelier API key (`atelier keys create`; the operator's key is in the data directory's admin.key).",
        });
        document.Security = [new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(BearerScheme, document)] = [] }];

        var used = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var item in document.Paths.Values)
        {
            foreach (var operation in (IEnumerable<OpenApiOperation>?)item.Operations?.Values ?? [])
            {
                foreach (var tag in (IEnumerable<OpenApiTagReference>?)operation.Tags ?? [])
                {
                    used.Add(tag.Name!);
                }
            }
        }

        document.Tags = new HashSet<OpenApiTag>(used.Select(name => new OpenApiTag
        {
            Name = name,
            Description = TagDescriptions.TryGetValue(name, out var text) ? text : null,
        }));
    }

    private static string ErrorDescription(int status) => status switch
    {
        400 => "The request or its parameters could not be read.",
        401 => "No API key, or one that is not valid or was revoked.",
        403 => "The key's role, or a residency policy, does not allow it.",
        404 => "Not found in the caller's workspace.",
        409 => "It conflicts with the current state (something derives from it, or it exists already).",
        413 => "The body is over its configured limit.",
        422 => "The request was read but its content is not valid; each problem is listed.",
        451 => "The model is tainted by an erasure.",
        500 => "An unexpected error; the server log has the details.",
        503 => "The service cannot answer now (e.g. the node a request was forwarded to died before answering); retry.",
        507 => "The server's storage is full.",
        _ => "An error.",
    };
}
