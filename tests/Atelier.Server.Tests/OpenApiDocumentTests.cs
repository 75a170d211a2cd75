using System.Text.Json;
using System.Text.RegularExpressions;

namespace Atelier.Server.Tests;

/// <summary>
/// The OpenAPI document at <c>/openapi/v1.json</c> of a real server (decision 0014): complete for
/// every operation, linted by Redocly, true to the bodies the server sends, and good enough for a
/// generated client to drive the Files API.
/// </summary>
[Trait("Category", "E2E")]
public sealed partial class OpenApiDocumentTests
{
    /// <summary>Where the served document is saved for a reader of the test results.</summary>
    private static readonly string ArtifactDirectory = Path.Combine(Repo.Root, "artifacts", "test-results", "openapi");

    [Fact]
    public async Task Document_EveryOperation_HasIdTagSummaryParametersAndSchemas()
    {
        await using var server = await TestServer.StartAsync();
        var document = await FetchAsync(server);
        var root = document.RootElement;
        var problems = new List<string>();
        var ids = new HashSet<string>(StringComparer.Ordinal);
        var count = 0;
        foreach (var path in root.GetProperty("paths").EnumerateObject())
        {
            foreach (var operation in path.Value.EnumerateObject())
            {
                if (operation.Name is "parameters" or "summary" or "description")
                {
                    continue;
                }

                count++;
                var where = $"{operation.Name.ToUpperInvariant()} {path.Name}";
                var op = operation.Value;
                var id = op.TryGetProperty("operationId", out var idElement) ? idElement.GetString() : null;
                if (id is null || !CamelCase().IsMatch(id))
                {
                    problems.Add($"{where}: operationId '{id}' is missing or not camelCase");
                }
                else if (!ids.Add(id))
                {
                    problems.Add($"{where}: operationId '{id}' is used twice");
                }

                if (!op.TryGetProperty("tags", out var tags) || tags.GetArrayLength() == 0)
                {
                    problems.Add($"{where}: no tag");
                }

                if (!op.TryGetProperty("summary", out var summary) || string.IsNullOrWhiteSpace(summary.GetString()))
                {
                    problems.Add($"{where}: no summary");
                }

                foreach (Match parameter in PathParameter().Matches(path.Name))
                {
                    var declared = op.TryGetProperty("parameters", out var parameters)
                        && parameters.EnumerateArray().Any(p => p.GetProperty("in").GetString() == "path" && p.GetProperty("name").GetString() == parameter.Groups[1].Value && p.TryGetProperty("schema", out var s) && s.TryGetProperty("type", out _));
                    if (!declared)
                    {
                        problems.Add($"{where}: path parameter {parameter.Value} is not declared with a type");
                    }
                }

                var responses = op.GetProperty("responses");
                var success = responses.EnumerateObject().Where(r => r.Name.StartsWith('2')).ToList();
                if (success.Count == 0)
                {
                    problems.Add($"{where}: no success response");
                }

                foreach (var response in success.Where(r => r.Name != "204"))
                {
                    if (!response.Value.TryGetProperty("content", out var content) || !content.EnumerateObject().Any())
                    {
                        problems.Add($"{where}: {response.Name} has no content");
                        continue;
                    }

                    foreach (var media in content.EnumerateObject())
                    {
                        if (!media.Value.TryGetProperty("schema", out var schema) || IsEmptySchema(schema))
                        {
                            problems.Add($"{where}: {response.Name} {media.Name} has no schema");
                        }
                    }
                }

                var mistral = path.Name.StartsWith("/v1/", StringComparison.Ordinal);
                var errorRef = mistral ? "#/components/schemas/MistralError" : "#/components/schemas/Problem";
                foreach (var response in responses.EnumerateObject().Where(r => r.Name[0] is '4' or '5'))
                {
                    var refs = response.Value.TryGetProperty("content", out var content)
                        ? content.EnumerateObject().Select(m => m.Value.TryGetProperty("schema", out var s) && s.TryGetProperty("$ref", out var r) ? r.GetString() : null).ToList()
                        : [];
                    if (refs.Count == 0 || refs.Any(r => r != errorRef))
                    {
                        problems.Add($"{where}: {response.Name} does not reference {errorRef}");
                    }
                }

                var authenticated = mistral || path.Name.StartsWith("/api/v1/", StringComparison.Ordinal);
                if (authenticated != responses.TryGetProperty("401", out _))
                {
                    problems.Add($"{where}: 401 is {(authenticated ? "missing" : "declared on an endpoint that needs no key")}");
                }

                if (!authenticated && !(op.TryGetProperty("security", out var security) && security.EnumerateArray().Any(s => !s.EnumerateObject().Any())))
                {
                    problems.Add($"{where}: needs no key but does not say so (security: [{{}}])");
                }
            }
        }

        // Property names are the wire's: snake_case, as AtelierJson.Options writes them.
        foreach (var schema in root.GetProperty("components").GetProperty("schemas").EnumerateObject())
        {
            if (schema.Value.TryGetProperty("properties", out var properties))
            {
                problems.AddRange(properties.EnumerateObject().Where(p => !SnakeCase().IsMatch(p.Name)).Select(p => $"schema {schema.Name}: property '{p.Name}' is not snake_case"));
            }
        }

        Assert.True(count > 80, $"only {count} operations in the document");
        Assert.True(problems.Count == 0, $"{problems.Count} problems in the OpenAPI document:\n{string.Join('\n', problems)}");
        Assert.Contains("bearer", root.GetProperty("components").GetProperty("securitySchemes").EnumerateObject().Select(s => s.Name));
    }

    [Fact]
    public async Task Document_PassesRedoclyLintWithTheRecommendedRules()
    {
        await using var server = await TestServer.StartAsync();
        (await FetchAsync(server)).Dispose();
        await RunAsync(server, "lint");
    }

    [Fact]
    public async Task RealAnswers_MatchTheSchemasTheDocumentDeclaresForThem()
    {
        await using var server = await TestServer.StartAsync();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-base"));
        await RunAsync(server, "conformance", new Dictionary<string, string> { ["ATELIER_BASE_MODEL"] = "tiny-base" });
    }

    [Fact]
    public async Task GeneratedClient_UploadsListsRetrievesDownloadsAndDeletesAFile()
    {
        await using var server = await TestServer.StartAsync();
        await RunAsync(server, "client");
    }

    private static async Task RunAsync(TestServer server, string scenario, IReadOnlyDictionary<string, string>? environment = null)
    {
        var e2e = Path.Combine(Repo.Root, "tests", "e2e");
        Assert.True(
            Directory.Exists(Path.Combine(e2e, "node_modules", "@redocly", "cli")) && Directory.Exists(Path.Combine(e2e, "node_modules", "openapi-typescript")),
            "The OpenAPI tools are not installed: run the README's test command (eng/test.sh), which runs npm ci in tests/e2e.");
        var variables = new Dictionary<string, string>(environment ?? new Dictionary<string, string>())
        {
            ["ATELIER_URL"] = server.BaseUrl,
            ["ATELIER_API_KEY"] = server.AdminKey,
        };
        var (exit, output) = await Repo.RunAsync("node", ["openapi.e2e.mjs", scenario], e2e, variables, TimeSpan.FromMinutes(5));
        Assert.True(exit == 0, $"node openapi.e2e.mjs {scenario} exited {exit}:\n{output}");
        Assert.Contains($"scenario {scenario} passed", output, StringComparison.Ordinal);
    }

    /// <summary>Fetches the document, saves it among the test results, and parses it.</summary>
    internal static async Task<JsonDocument> FetchAsync(TestServer server)
    {
        using var client = new HttpClient { BaseAddress = new Uri(server.BaseUrl) };
        var text = await client.GetStringAsync("/openapi/v1.json");
        Directory.CreateDirectory(ArtifactDirectory);
        await File.WriteAllTextAsync(Path.Combine(ArtifactDirectory, "v1.json"), text);
        return JsonDocument.Parse(text);
    }

    private static bool IsEmptySchema(JsonElement schema) =>
        !schema.EnumerateObject().Any(p => p.Name is "$ref" or "type" or "oneOf" or "anyOf" or "allOf" or "properties" or "items");

    [GeneratedRegex("^[a-z][A-Za-z0-9]*$")]
    private static partial Regex CamelCase();

    [GeneratedRegex("^[a-z][a-z0-9]*(_[a-z0-9]+)*$")]
    private static partial Regex SnakeCase();

    [GeneratedRegex(@"\{([^}]+)\}")]
    private static partial Regex PathParameter();
}
