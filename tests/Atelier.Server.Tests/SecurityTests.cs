using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Atelier.Core.IO;
using Atelier.Server.Errors;
using Atelier.Server.Hosting;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace Atelier.Server.Tests;

/// <summary>
/// The attacker-and-careless-user probe of issue 11, replayed against a real server: oversized and
/// malformed bodies on every write endpoint, non-finite numbers, page bounds, job limits, file modes,
/// logs, and what <c>/health</c> tells a caller without a key.
/// </summary>
public sealed class SecurityTests(ITestOutputHelper output)
{
    private const long JsonLimit = 16 * 1024;
    private const long BulkLimit = 64 * 1024;
    private const long UploadLimit = 128 * 1024;

    private static Task<TestServer> StartSmallLimitsAsync() => TestServer.StartAsync(config => config with
    {
        Limits = new() { MaxJsonBodyBytes = JsonLimit, MaxBulkJsonBodyBytes = BulkLimit },
        Files = config.Files with { MaxUploadBytes = UploadLimit },
    });

    [Fact]
    public async Task BodyJustOverItsLimit_OnEveryWriteEndpoint_Returns413NamingTheLimit()
    {
        await using var server = await StartSmallLimitsAsync();
        using var client = server.Client();
        var endpoints = SecurityProbe.WriteEndpoints(server);
        Assert.True(endpoints.Count >= 25, $"only {endpoints.Count} write endpoints were found: {string.Join(", ", endpoints)}");

        var failures = new List<string>();
        foreach (var endpoint in endpoints)
        {
            var (limit, setting, size) = endpoint.Kind switch
            {
                RequestBodyKind.BulkJson => (BulkLimit, "limits.max_bulk_json_body_bytes", BulkLimit + 1),
                RequestBodyKind.Upload => (UploadLimit, "files.max_upload_bytes", UploadLimit + RequestBodyLimit.UploadFramingBytes + 1),
                _ => (JsonLimit, "limits.max_json_body_bytes", JsonLimit + 1),
            };
            var content = new ByteArrayContent(new byte[size]);
            content.Headers.ContentType = new(endpoint.Kind == RequestBodyKind.Upload ? "application/octet-stream" : "application/json");
            var (status, body) = await SecurityProbe.SendAsync(client, endpoint.Method, endpoint.Path(), content);
            if (status != 413 || !body.Contains(limit.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal) || !body.Contains(setting, StringComparison.Ordinal))
            {
                failures.Add($"{endpoint}: {status} {SecurityProbe.Truncate(body)}");
            }
        }

        output.WriteLine($"{endpoints.Count} write endpoints probed with a body one byte over their limit");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    [Fact]
    public async Task ChunkedBodyOverTheLimit_Returns413_ForJsonAndForUploads()
    {
        await using var server = await StartSmallLimitsAsync();
        using var client = server.Client();

        var json = Encoding.UTF8.GetBytes("{\"name\":\"" + new string('a', (int)JsonLimit) + "\"}");
        var (status, body) = await SendOverLimitAsync(client, "/api/v1/keys", () => new ChunkedContent(json, "application/json").Typed());
        Assert.True(status == 413, body);
        Assert.Contains("limits.max_json_body_bytes", body, StringComparison.Ordinal);

        var boundary = "probe-boundary";
        var multipart = new MemoryStream();
        multipart.Write(Encoding.ASCII.GetBytes($"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n"));
        var line = Encoding.UTF8.GetBytes(ApiRequests.Chat("q", "a") + "\n");
        while (multipart.Length < UploadLimit + RequestBodyLimit.UploadFramingBytes + (64 * 1024))
        {
            multipart.Write(line);
        }

        multipart.Write(Encoding.ASCII.GetBytes($"\r\n--{boundary}--\r\n"));
        (status, body) = await SendOverLimitAsync(client, "/v1/files", () => new ChunkedContent(multipart.ToArray(), $"multipart/form-data; boundary={boundary}").Typed());
        Assert.True(status == 413, body);
        Assert.Contains("files.max_upload_bytes", body, StringComparison.Ordinal);
    }

    /// <summary>
    /// Sends a body larger than the limit. The server answers 413 as soon as the limit is crossed and
    /// stops reading; when the machine is slow, the connection can be closed while the client is still
    /// writing the rest, and the client fails with a broken pipe before it reads the answer. That is
    /// the transport racing, not an answer: such a send is tried again (at most 3 times), and whatever
    /// answer arrives is what the test checks.
    /// </summary>
    private static async Task<(int Status, string Body)> SendOverLimitAsync(HttpClient client, string path, Func<HttpContent> content)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await SecurityProbe.SendAsync(client, "POST", path, content());
            }
            catch (HttpRequestException e) when (attempt < 3 && e.InnerException is IOException)
            {
            }
        }
    }

    [Fact]
    public async Task MalformedBodies_OnEveryJsonWriteEndpoint_NeverAnswer5xx_AndEvery4xxSaysWhy()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();

        // Real resources behind the routes, so bodies reach the parsers instead of stopping at a 404.
        var fileId = await ApiRequests.UploadAsync(client, "train.jsonl", [ApiRequests.Chat("q", "a")]);
        Assert.True((await client.PostAsJsonAsync("/api/v1/collections", new { name = "fuzz", dimension = 4, metric = "l2" })).IsSuccessStatusCode);
        Assert.True((await client.PostAsJsonAsync("/api/v1/features/views", new { name = "fuzz", entity_key = "example_id", timestamp_field = "event_time", fields = new[] { new { name = "score", type = "float64" } } })).IsSuccessStatusCode);
        string? Values(string template, string parameter) => parameter switch
        {
            "name" => "fuzz",
            "fileId" => fileId,
            _ => null,
        };

        var endpoints = SecurityProbe.WriteEndpoints(server).Where(e => e.Kind != RequestBodyKind.Upload && e.Method != "DELETE").ToList();
        var bodies = SecurityProbe.MalformedBodies(seed: 11, randomCases: 30);
        var failures = new List<string>();
        var cases = 0;
        foreach (var endpoint in endpoints)
        {
            var path = endpoint.Path(Values);
            foreach (var (name, bytes) in bodies)
            {
                cases++;
                var (status, body) = await SecurityProbe.SendAsync(client, endpoint.Method, path, SecurityProbe.Json(bytes));
                if (SecurityProbe.Judge(status, body) is { } problem)
                {
                    failures.Add($"{endpoint} [{name}]: {problem}");
                }
            }
        }

        output.WriteLine($"{cases} malformed bodies ({bodies.Count} per endpoint) sent to {endpoints.Count} JSON write endpoints; {failures.Count} failures");
        Assert.True(endpoints.Count >= 15, $"only {endpoints.Count} JSON write endpoints were found");
        Assert.True(failures.Count == 0, $"{failures.Count} of {cases} cases failed:\n" + string.Join("\n", failures.Take(40)));
    }

    [Fact]
    public async Task MalformedJson_Returns400NamingThePosition_InTheUsersWords()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();

        var (status, body) = await SecurityProbe.SendAsync(client, "POST", "/api/v1/keys", SecurityProbe.Json("{\"name\": 5}"));
        Assert.Equal(400, status);
        var detail = JsonNode.Parse(body)!["detail"]!.GetValue<string>();
        Assert.Contains("$.name", detail, StringComparison.Ordinal);
        Assert.DoesNotContain("System.", detail, StringComparison.Ordinal);

        (status, body) = await SecurityProbe.SendAsync(client, "POST", "/api/v1/keys", SecurityProbe.Json("{\"name\": \"a\",\n  \"role\": tru"));
        Assert.Equal(400, status);
        Assert.Contains("line 2", JsonNode.Parse(body)!["detail"]!.GetValue<string>(), StringComparison.Ordinal);

        // On /v1 the same mistake comes back in Mistral's error shape.
        (status, body) = await SecurityProbe.SendAsync(client, "PATCH", "/v1/fine_tuning/models/x", SecurityProbe.Json([.. "{\"name\":\""u8, 0xFF, .. "\"}"u8]));
        Assert.Equal(400, status);
        Assert.Equal("error", JsonNode.Parse(body)!["object"]!.GetValue<string>());

        // A query parameter the framework binds is named, not its .NET type.
        (status, body) = await SecurityProbe.SendAsync(client, "GET", "/api/v1/features/views/x?version=abc", null);
        Assert.Equal(400, status);
        Assert.Contains("'version'", body, StringComparison.Ordinal);
        Assert.DoesNotContain("Int32", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task NonFiniteFeatureValue_Returns422NamingTheField_AndTheViewStaysReadable()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        Assert.True((await client.PostAsJsonAsync("/api/v1/features/views", new { name = "quality", entity_key = "example_id", timestamp_field = "event_time", fields = new[] { new { name = "score", type = "float64" } } })).IsSuccessStatusCode);

        foreach (var number in new[] { "-1e999", "1e999", "1.8e308" })
        {
            var (status, body) = await SecurityProbe.SendAsync(client, "POST", "/api/v1/features/views/quality/rows", SecurityProbe.Json($"{{\"rows\":[{{\"example_id\":\"a\",\"event_time\":\"2026-01-01T00:00:00Z\",\"score\":{number}}}]}}"));
            Assert.True(status == 422, $"{number}: {status} {body}");
            Assert.Contains("score", body, StringComparison.Ordinal);
            Assert.Contains("finite", body, StringComparison.Ordinal);
        }

        using var view = await client.GetAsync("/api/v1/features/views/quality");
        Assert.Equal(HttpStatusCode.OK, view.StatusCode);
        using var online = await client.PostAsJsonAsync("/api/v1/features/views/quality/online", new { keys = new[] { "a" } });
        Assert.Equal(HttpStatusCode.OK, online.StatusCode);
    }

    [Theory]
    [InlineData("/api/v1/datasets?page_size=-1", "page_size")]
    [InlineData("/api/v1/datasets?page_size=1e9", "page_size")]
    [InlineData("/api/v1/datasets?page_size=1000000000", "page_size")]
    [InlineData("/api/v1/datasets?page=-1", "page")]
    [InlineData("/api/v1/audit?limit=-1", "limit")]
    [InlineData("/api/v1/audit?limit=1e9", "limit")]
    [InlineData("/api/v1/audit?limit=1000000000", "limit")]
    [InlineData("/api/v1/audit?tail=0", "tail")]
    [InlineData("/api/v1/audit?after=-5", "after")]
    [InlineData("/v1/files?page_size=-1", "page_size")]
    [InlineData("/v1/files?page_size=1000000000", "page_size")]
    [InlineData("/v1/fine_tuning/jobs?page_size=-1", "page_size")]
    [InlineData("/v1/fine_tuning/jobs?page_size=1000000000", "page_size")]
    public async Task PageParameterOutOfRange_Returns400NamingTheParameterAndItsRange(string path, string parameter)
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        var (status, body) = await SecurityProbe.SendAsync(client, "GET", path, null);
        Assert.True(status is 400 or 422, $"{status} {body}");
        Assert.Contains($"'{parameter}'", body, StringComparison.Ordinal);
        Assert.Contains("between", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task JobRequests_ThatWouldRunAway_AreRefusedNamingTheField()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-base"));
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", JobsApiTestsLines());

        var (status, body) = await JobsApiTests.PostAsync(client, "/v1/fine_tuning/jobs", new
        {
            model = "tiny-base",
            training_files = new[] { new { file_id = train, weight = 1 } },
            hyperparameters = new { training_steps = 10, epochs = 1.0, learning_rate = 1e-3 },
        });
        Assert.Equal(HttpStatusCode.UnprocessableEntity, status);
        Assert.Contains("training_steps", body.ToJsonString(), StringComparison.Ordinal);
        Assert.Contains("epochs", body.ToJsonString(), StringComparison.Ordinal);

        (status, body) = await JobsApiTests.PostAsync(client, "/v1/fine_tuning/jobs", new
        {
            model = "tiny-base",
            training_files = Enumerable.Repeat(new { file_id = train, weight = 1 }, 1001).ToArray(),
            hyperparameters = new { training_steps = 10, learning_rate = 1e-3 },
        });
        Assert.Equal(HttpStatusCode.UnprocessableEntity, status);
        Assert.Contains("training_files[1].file_id", body.ToJsonString(), StringComparison.Ordinal);

        (status, body) = await JobsApiTests.PostAsync(client, "/v1/fine_tuning/jobs", new
        {
            model = "tiny-base",
            training_files = new[] { new { file_id = train, weight = 1 } },
            validation_files = new[] { train, train },
            hyperparameters = new { training_steps = 10, learning_rate = 1e-3 },
        });
        Assert.Equal(HttpStatusCode.UnprocessableEntity, status);
        Assert.Contains("validation_files[1]", body.ToJsonString(), StringComparison.Ordinal);

        (status, body) = await JobsApiTests.PostAsync(client, "/v1/fine_tuning/jobs", new
        {
            model = "tiny-base",
            training_files = new[] { new { file_id = train, weight = 1 } },
            hyperparameters = new { training_steps = 10, learning_rate = 1e-3, seq_len = 1_048_576 },
        });
        Assert.Equal(HttpStatusCode.UnprocessableEntity, status);
        Assert.Contains("seq_len", body.ToJsonString(), StringComparison.Ordinal);
        Assert.Contains("tiny-base", body.ToJsonString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Upload_WithRepeatedPurpose_IsRefusedNamingIt()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        var form = new MultipartFormDataContent
        {
            { new StringContent("fine-tune"), "purpose" },
            { new ByteArrayContent(Encoding.UTF8.GetBytes(ApiRequests.Chat("q", "a") + "\n")), "file", "a.jsonl" },
            { new StringContent("batch"), "purpose" },
        };
        var (status, body) = await SecurityProbe.SendAsync(client, "POST", "/v1/files", form);
        Assert.True(status is 400 or 422, $"{status} {body}");
        Assert.Contains("'purpose'", body, StringComparison.Ordinal);
        var (_, list) = await SecurityProbe.SendAsync(client, "GET", "/v1/files", null);
        Assert.Empty(JsonNode.Parse(list)!["data"]!.AsArray());
    }

    [Fact]
    public async Task Health_NeedsNoKey_AndSaysOnlyThatTheServerIsUp()
    {
        await using var server = await TestServer.StartAsync();
        using var anonymous = new HttpClient { BaseAddress = new Uri(server.BaseUrl) };
        var body = await anonymous.GetStringAsync("/health");
        Assert.Equal("{\"status\":\"ok\"}", body);
    }

    [Fact]
    public async Task DataDirectory_IsPrivate_AndAnOpenOneIsTightenedAtStart()
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        var directory = TempDirectory.Create("atelier-modes");
        await using (var server = await TestServer.StartAsync(dataDirectory: directory))
        {
            using var client = server.Client();
            await ApiRequests.UploadAsync(client, "train.jsonl", [ApiRequests.Chat("q", "a")]);
            AssertPrivate(directory, expectFiles: ["catalog.db", Path.Combine("audit", "audit.jsonl"), "url-signing.key", Atelier.Storage.Audit.AuditHeadSigner.FileName, DataDirectoryStartup.AdminKeyFile]);
        }

        // As an older version or a careless copy leaves it: everything readable by everyone.
        foreach (var entry in Directory.EnumerateFileSystemEntries(directory, "*", SearchOption.AllDirectories).Append(directory))
        {
            File.SetUnixFileMode(entry, Directory.Exists(entry) ? (UnixFileMode)0b111_101_101 : (UnixFileMode)0b110_100_100);
        }

        await using (var server = await TestServer.StartAsync(dataDirectory: directory))
        {
            AssertPrivate(directory, expectFiles: ["catalog.db"]);
        }
    }

    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    private static void AssertPrivate(string directory, string[] expectFiles)
    {
        var blobs = 0;
        var wrong = new List<string>();
        foreach (var entry in Directory.EnumerateFileSystemEntries(directory, "*", SearchOption.AllDirectories).Append(directory))
        {
            var mode = File.GetUnixFileMode(entry);
            var open = mode & (UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute);
            if (open != 0)
            {
                wrong.Add($"{Path.GetRelativePath(directory, entry)} is {Convert.ToString((int)mode, 8)}");
            }

            if (File.Exists(entry) && entry.Contains($"{Path.DirectorySeparatorChar}file{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            {
                blobs++;
            }
        }

        Assert.True(wrong.Count == 0, string.Join("\n", wrong));
        Assert.Equal(DataDirectoryPermissions.DirectoryMode, File.GetUnixFileMode(directory));
        foreach (var file in expectFiles)
        {
            Assert.Equal(DataDirectoryPermissions.FileMode, File.GetUnixFileMode(Path.Combine(directory, file)));
        }

        Assert.True(blobs > 0, "no file blob was found to check");
    }

    [Fact]
    public async Task SignedUrl_UsesThePublicUrlNotTheHostHeader_AndItsQueryNeverReachesTheLog()
    {
        var log = new CapturingLoggerProvider();
        await using var server = await TestServer.StartAsync(logging: builder => builder.SetMinimumLevel(LogLevel.Information).AddFilter(typeof(Atelier.Server.Hosting.RequestLog).FullName, LogLevel.Debug).AddProvider(log));
        using var client = server.Client();
        var id = await ApiRequests.UploadAsync(client, "train.jsonl", [ApiRequests.Chat("q", "a")]);

        using var request = new HttpRequestMessage(HttpMethod.Get, $"/v1/files/{id}/url");
        request.Headers.Host = "attacker.example";
        using var response = await client.SendAsync(request);
        var url = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["url"]!.GetValue<string>();
        Assert.StartsWith($"http://127.0.0.1:{new Uri(server.BaseUrl).Port}/v1/files/{id}/content?", url, StringComparison.Ordinal);

        using var anonymous = new HttpClient();
        using var download = await anonymous.GetAsync(url);
        Assert.Equal(HttpStatusCode.OK, download.StatusCode);

        var signature = System.Web.HttpUtility.ParseQueryString(new Uri(url).Query)["signature"]!;

        // The request log writes its line once the response has completed, which can be just after
        // the client has the response: wait for it (bounded) rather than race it.
        var logged = System.Diagnostics.Stopwatch.StartNew();
        while (!log.Lines().Any(l => l.Contains($"/v1/files/{id}/content", StringComparison.Ordinal)) && logged.Elapsed < TimeSpan.FromSeconds(30))
        {
            await Task.Delay(20);
        }

        var lines = log.Lines();
        Assert.Contains(lines, l => l.Contains($"/v1/files/{id}/content", StringComparison.Ordinal));
        Assert.DoesNotContain(lines, l => l.Contains(signature, StringComparison.Ordinal) || l.Contains("signature=", StringComparison.Ordinal));
    }

    private static IEnumerable<string> JobsApiTestsLines() =>
        Enumerable.Range(0, 16).Select(i => ApiRequests.Chat($"Say word {i}.", $"word {i} word."));
}

/// <summary>Keeps every formatted log line, with its exception, for tests that check what is logged.</summary>
internal sealed class CapturingLoggerProvider : ILoggerProvider
{
    private readonly System.Collections.Concurrent.ConcurrentQueue<string> _lines = new();

    public List<string> Lines() => [.. _lines];

    public ILogger CreateLogger(string categoryName) => new Logger(categoryName, _lines);

    public void Dispose()
    {
    }

    private sealed class Logger(string category, System.Collections.Concurrent.ConcurrentQueue<string> lines) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            lines.Enqueue($"{category}: {formatter(state, exception)} {exception}");
    }
}
