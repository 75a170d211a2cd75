using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Server.Hosting;
using Microsoft.AspNetCore.Http.Features;

namespace Atelier.Server.Errors;

/// <summary>What an endpoint's request body is, and so which configured limit bounds it.</summary>
public enum RequestBodyKind
{
    /// <summary>An ordinary JSON body: <c>limits.max_json_body_bytes</c> (the default for every endpoint).</summary>
    Json,

    /// <summary>A bulk JSON write (vector upserts, feature rows): <c>limits.max_bulk_json_body_bytes</c>.</summary>
    BulkJson,

    /// <summary>A file upload, streamed to storage: <c>files.max_upload_bytes</c>, enforced by its handler.</summary>
    Upload,
}

/// <summary>Endpoint metadata naming the kind of body an endpoint takes, when it is not <see cref="RequestBodyKind.Json"/>.</summary>
/// <param name="Kind">The kind of body.</param>
public sealed record RequestBodyKindMetadata(RequestBodyKind Kind);

/// <summary>Marks endpoints with the kind of body they take.</summary>
public static class RequestBodyKindExtensions
{
    /// <summary>Bounds the endpoint's body by the limit of <paramref name="kind"/> rather than the small JSON limit.</summary>
    public static TBuilder WithBodyKind<TBuilder>(this TBuilder builder, RequestBodyKind kind)
        where TBuilder : IEndpointConventionBuilder
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.WithMetadata(new RequestBodyKindMetadata(kind));
    }
}

/// <summary>
/// Bounds every request body by the limit of its endpoint's kind, before the endpoint reads a byte.
/// Kestrel's own limit is the upload size (the largest body anything accepts), so without this a
/// JSON endpoint would buffer up to 512 MiB into a document. A declared <c>Content-Length</c> over the
/// limit is refused at once; a chunked body is cut off by Kestrel when it passes the limit, and
/// <see cref="ErrorMapping"/> answers that with the same 413.
/// </summary>
public sealed class RequestBodyLimit(RequestDelegate next, AtelierConfig config)
{
    private const string KindItem = "atelier.body-kind";

    /// <summary>Room an upload's body has past <c>files.max_upload_bytes</c> for multipart framing and small fields.</summary>
    public const long UploadFramingBytes = 64 * 1024;

    /// <summary>Sets the limit, then calls the rest of the pipeline.</summary>
    public Task InvokeAsync(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var kind = context.GetEndpoint()?.Metadata.GetMetadata<RequestBodyKindMetadata>()?.Kind ?? RequestBodyKind.Json;
        context.Items[KindItem] = kind;
        if (kind == RequestBodyKind.Upload)
        {
            // The upload handlers set their own limit per request, with room for multipart framing;
            // a declared length past even that is refused before the handler looks anything up.
            if (context.Request.ContentLength > config.Files.MaxUploadBytes + UploadFramingBytes)
            {
                throw TooLarge(config, kind);
            }

            return next(context);
        }

        var limit = Limit(config, kind);
        if (context.Request.ContentLength > limit)
        {
            throw TooLarge(config, kind);
        }

        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } size)
        {
            size.MaxRequestBodySize = limit;
        }

        return next(context);
    }

    /// <summary>The limit of a kind of body, in bytes.</summary>
    public static long Limit(AtelierConfig config, RequestBodyKind kind)
    {
        ArgumentNullException.ThrowIfNull(config);
        return kind switch
        {
            RequestBodyKind.BulkJson => config.Limits.MaxBulkJsonBodyBytes,
            RequestBodyKind.Upload => config.Files.MaxUploadBytes,
            _ => config.Limits.MaxJsonBodyBytes,
        };
    }

    /// <summary>The 413 for a body of <paramref name="kind"/> over its limit, naming the limit and its setting.</summary>
    public static PayloadTooLargeException TooLarge(AtelierConfig config, RequestBodyKind kind)
    {
        var (what, setting) = kind switch
        {
            RequestBodyKind.BulkJson => ("request body", "limits.max_bulk_json_body_bytes"),
            RequestBodyKind.Upload => ("upload", "files.max_upload_bytes"),
            _ => ("request body", "limits.max_json_body_bytes"),
        };
        return new PayloadTooLargeException(Limit(config, kind), what, setting);
    }

    /// <summary>The 413 for the request of <paramref name="context"/>, whose body Kestrel cut off at its limit.</summary>
    public static PayloadTooLargeException TooLarge(HttpContext context, AtelierConfig config)
    {
        ArgumentNullException.ThrowIfNull(context);
        var kind = context.Items.TryGetValue(KindItem, out var k) && k is RequestBodyKind known ? known : RequestBodyKind.Upload;
        return TooLarge(config, kind);
    }
}
