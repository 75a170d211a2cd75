using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Atelier.Server.Errors;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.Routing.Patterns;
using Microsoft.Extensions.DependencyInjection;

namespace Atelier.Server.Tests;

/// <summary>One write endpoint of the running application, as its endpoint data source lists it.</summary>
internal sealed record WriteEndpoint(string Method, RoutePattern Pattern, RequestBodyKind Kind)
{
    public string Template => "/" + string.Join('/', Pattern.PathSegments.Select(s => string.Concat(s.Parts.Select(p => p switch
    {
        RoutePatternLiteralPart l => l.Content,
        RoutePatternParameterPart p2 => "{" + p2.Name + "}",
        _ => "",
    }))));

    /// <summary>A concrete path: each route parameter filled from <paramref name="values"/>, else a value its constraint accepts.</summary>
    public string Path(Func<string, string, string?>? values = null)
    {
        var segments = Pattern.PathSegments.Select(s => string.Concat(s.Parts.Select(part => part switch
        {
            RoutePatternLiteralPart literal => literal.Content,
            RoutePatternParameterPart parameter => values?.Invoke(Template, parameter.Name)
                ?? (parameter.ParameterPolicies.Any(p => p.Content is "long" or "int") ? "1" : "x"),
            RoutePatternSeparatorPart separator => separator.Content,
            _ => "",
        })));
        return "/" + string.Join('/', segments);
    }

    public override string ToString() => $"{Method} {Template}";
}

/// <summary>The probes the security tests replay: the write endpoints, bodies, and answers checked for shape.</summary>
internal static class SecurityProbe
{
    private static readonly HashSet<string> WriteMethods = ["POST", "PUT", "PATCH", "DELETE"];

    /// <summary>Every endpoint that takes a write method, found from the application itself so new ones are covered.</summary>
    public static List<WriteEndpoint> WriteEndpoints(TestServer server)
    {
        var source = server.Services.GetRequiredService<EndpointDataSource>();
        var found = new List<WriteEndpoint>();
        foreach (var endpoint in source.Endpoints.OfType<RouteEndpoint>())
        {
            var kind = endpoint.Metadata.GetMetadata<RequestBodyKindMetadata>()?.Kind ?? RequestBodyKind.Json;
            foreach (var method in endpoint.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? [])
            {
                if (WriteMethods.Contains(method))
                {
                    found.Add(new WriteEndpoint(method, endpoint.RoutePattern, kind));
                }
            }
        }

        return found;
    }

    public static async Task<(int Status, string Body)> SendAsync(HttpClient client, string method, string path, HttpContent? content)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), path) { Content = content };
        using var response = await client.SendAsync(request);
        return ((int)response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    /// <summary>Null when the answer is a proper error or success; else what is wrong with it.</summary>
    public static string? Judge(int status, string body)
    {
        if (status >= 500)
        {
            return $"answered {status}: {Truncate(body)}";
        }

        if (status < 400)
        {
            return null;
        }

        if (string.IsNullOrWhiteSpace(body))
        {
            return $"answered {status} with an empty body";
        }

        JsonNode? json;
        try
        {
            json = JsonNode.Parse(body);
        }
        catch (System.Text.Json.JsonException)
        {
            return $"answered {status} with a body that is not JSON: {Truncate(body)}";
        }

        var message = json?["detail"] is JsonValue detail ? detail.ToString() : json?["message"]?.ToString();
        if (string.IsNullOrWhiteSpace(message))
        {
            return $"answered {status} with no message: {Truncate(body)}";
        }

        if (message.Contains("System.", StringComparison.Ordinal) || message.Contains("Microsoft.", StringComparison.Ordinal) || message.Contains("Atelier.", StringComparison.Ordinal))
        {
            return $"answered {status} with a .NET type name in its message: {message}";
        }

        return null;
    }

    public static string Truncate(string s) => s.Length > 300 ? s[..300] + "..." : s;

    public static ByteArrayContent Json(byte[] bytes)
    {
        var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        return content;
    }

    public static ByteArrayContent Json(string text) => Json(Encoding.UTF8.GetBytes(text));

    /// <summary>
    /// Malformed bodies, the same for every run: fixed cases (bad UTF-8, lone surrogates, deep nesting,
    /// numbers that overflow, wrong roots, truncations) and random ones from <paramref name="seed"/>.
    /// </summary>
    public static List<(string Name, byte[] Body)> MalformedBodies(int seed, int randomCases)
    {
        var cases = new List<(string, byte[])>
        {
            ("empty", []),
            ("open brace", "{"u8.ToArray()),
            ("truncated string", "{\"name\": \"abc"u8.ToArray()),
            ("truncated array", "{\"rows\": [{\"a\": 1},"u8.ToArray()),
            ("trailing garbage", "{} xyz"u8.ToArray()),
            ("null root", "null"u8.ToArray()),
            ("array root", "[]"u8.ToArray()),
            ("number root", "1e999"u8.ToArray()),
            ("string root", "\"x\""u8.ToArray()),
            ("bad utf-8", [.. "{\"name\":\""u8, 0xFF, 0xFE, 0xC3, .. "\"}"u8]),
            ("bad utf-8 key", [.. "{\""u8, 0xC0, 0xAF, .. "\":1}"u8]),
            ("overlong utf-8", [.. "{\"name\":\""u8, 0xE0, 0x80, 0xAF, .. "\"}"u8]),
            ("lone high surrogate", Encoding.UTF8.GetBytes(Universal("\"\\ud800\""))),
            ("lone low surrogate", Encoding.UTF8.GetBytes(Universal("\"a\\udc00b\""))),
            ("deep nesting", Encoding.UTF8.GetBytes(new string('[', 5000) + new string(']', 5000))),
            ("deep object nesting", Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat("{\"a\":", 3000)) + "1" + new string('}', 3000))),
            ("huge numbers", Encoding.UTF8.GetBytes(Universal("1e999"))),
            ("negative overflow", Encoding.UTF8.GetBytes(Universal("-1e999"))),
            ("huge integer", Encoding.UTF8.GetBytes(Universal("123456789012345678901234567890"))),
            ("negative numbers", Encoding.UTF8.GetBytes(Universal("-1"))),
            ("objects everywhere", Encoding.UTF8.GetBytes(Universal("{}"))),
            ("nulls everywhere", Encoding.UTF8.GetBytes(Universal("null"))),
            ("feature row overflow", "{\"rows\":[{\"example_id\":\"a\",\"event_time\":\"2026-01-01T00:00:00Z\",\"score\":-1e999}]}"u8.ToArray()),
            ("points overflow", "{\"points\":[{\"id\":1,\"vector\":[1e999,0,0,0]}]}"u8.ToArray()),
            ("nul byte", "{\"name\":\"a\u0000b\"}"u8.ToArray()),
        };

        var random = new Random(seed);
        var valid = Encoding.UTF8.GetBytes(Universal("\"ok\""));
        for (var i = 0; i < randomCases; i++)
        {
            byte[] body;
            switch (i % 3)
            {
                case 0:
                    body = new byte[random.Next(1, 512)];
                    random.NextBytes(body);
                    break;
                case 1:
                    body = valid[..random.Next(1, valid.Length)];
                    break;
                default:
                    body = (byte[])valid.Clone();
                    for (var flips = random.Next(1, 8); flips > 0; flips--)
                    {
                        body[random.Next(body.Length)] = (byte)random.Next(256);
                    }

                    break;
            }

            cases.Add(($"random {i}", body));
        }

        return cases;
    }

    // An object whose every commonly used field holds `value`, so the value reaches the endpoint's binding.
    private static string Universal(string value)
    {
        string[] fields = ["name", "workspace", "role", "model", "path", "description", "policy", "location", "dimension", "metric", "limit", "version", "page_size", "suffix", "operation", "source_dataset", "entity_key", "timestamp_field", "format", "dataset_id", "max_context_length"];
        var body = new StringBuilder("{");
        foreach (var f in fields)
        {
            body.Append('"').Append(f).Append("\":").Append(value).Append(',');
        }

        body.Append("\"keys\":[").Append(value).Append("],");
        body.Append("\"vector\":[").Append(value).Append("],");
        body.Append("\"rows\":[{\"example_id\":").Append(value).Append(",\"event_time\":\"2026-01-01T00:00:00Z\",\"score\":").Append(value).Append("}],");
        body.Append("\"points\":[{\"id\":1,\"vector\":[").Append(value).Append(",0,0,0],\"payload\":{\"k\":").Append(value).Append("}}],");
        body.Append("\"training_files\":[{\"file_id\":").Append(value).Append(",\"weight\":").Append(value).Append("}],");
        body.Append("\"hyperparameters\":{\"training_steps\":").Append(value).Append(",\"learning_rate\":").Append(value).Append(",\"seq_len\":").Append(value).Append("}}");
        return body.ToString();
    }
}

/// <summary>A body sent without Content-Length (chunked), as a streaming client sends one.</summary>
internal sealed class ChunkedContent(byte[] bytes, string contentType) : HttpContent
{
    private readonly byte[] _bytes = bytes;

    public ChunkedContent Typed()
    {
        Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        return this;
    }

    protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
    {
        for (var offset = 0; offset < _bytes.Length; offset += 16 * 1024)
        {
            await stream.WriteAsync(_bytes.AsMemory(offset, Math.Min(16 * 1024, _bytes.Length - offset)));
        }
    }

    protected override bool TryComputeLength(out long length)
    {
        length = -1;
        return false;
    }
}
