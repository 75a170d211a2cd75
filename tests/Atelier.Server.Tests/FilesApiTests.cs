using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Atelier.Core.Residency;

namespace Atelier.Server.Tests;

/// <summary>The Files API over real HTTP on loopback, for what the SDK cannot send.</summary>
public sealed class FilesApiTests
{
    private static readonly byte[] ValidLine = Encoding.UTF8.GetBytes("{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\"}]}\n");

    [Fact]
    public async Task Request_WithoutKey_Returns401InMistralShape()
    {
        await using var server = await TestServer.StartAsync();
        using var client = new HttpClient { BaseAddress = new Uri(server.BaseUrl) };
        using var response = await client.GetAsync("/v1/files");
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("error", body.GetProperty("object").GetString());
        Assert.Contains("Authorization", body.GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task PlatformError_IsRfc9457ProblemDetails()
    {
        await using var server = await TestServer.StartAsync();
        using var member = server.Client(await server.CreateKeyAsync("team-a"));
        using var response = await member.GetAsync("/api/v1/keys");
        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(403, body.GetProperty("status").GetInt32());
        Assert.Equal("/api/v1/keys", body.GetProperty("instance").GetString());
    }

    [Fact]
    public async Task Upload_WithoutFilePart_Returns400AndStoresNothing()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        using var form = new MultipartFormDataContent { { new StringContent("fine-tune"), "purpose" } };
        using var response = await client.PostAsync("/v1/files", form);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("no 'file' part", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        AssertNoBlobs(server);
    }

    [Fact]
    public async Task Upload_CutOffBeforeTheClosingBoundary_Returns400AndStoresNothing()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        var body = "--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"t.jsonl\"\r\n\r\n" + Encoding.UTF8.GetString(ValidLine);
        using var content = new ByteArrayContent(Encoding.UTF8.GetBytes(body));
        content.Headers.TryAddWithoutValidation("Content-Type", "multipart/form-data; boundary=b0undary");
        using var response = await client.PostAsync("/v1/files", content);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("malformed", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        AssertNoBlobs(server);
    }

    [Fact]
    public async Task Upload_NotMultipart_Returns400()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        using var response = await client.PostAsync("/v1/files", new ByteArrayContent(ValidLine));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("multipart/form-data", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Upload_OverTheSizeLimit_Returns413AndStoresNothing()
    {
        await using var server = await TestServer.StartAsync(c => c with { Files = c.Files with { MaxUploadBytes = 1000 } });
        using var client = server.Client();
        var big = string.Concat(Enumerable.Repeat(Encoding.UTF8.GetString(ValidLine), 40));
        using var response = await client.PostAsync("/v1/files", Form(Encoding.UTF8.GetBytes(big), "big.jsonl", chunked: true));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        AssertNoBlobs(server);
    }

    [Fact]
    public async Task Upload_WithTwoFileParts_Returns400AndStoresNothing()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        using var form = new MultipartFormDataContent
        {
            { new ByteArrayContent(ValidLine), "file", "a.jsonl" },
            { new ByteArrayContent(ValidLine), "file", "b.jsonl" },
        };
        using var response = await client.PostAsync("/v1/files", form);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        AssertNoBlobs(server);
    }

    [Fact]
    public async Task Upload_PurposeBeforeFile_ValidatesAsThatPurpose()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        using var form = new MultipartFormDataContent
        {
            { new StringContent("batch"), "purpose" },
            { new ByteArrayContent(Encoding.UTF8.GetBytes("{\"custom_id\":\"r1\",\"body\":{\"max_tokens\":5}}\n")), "file", "batch.jsonl" },
        };
        using var response = await client.PostAsync("/v1/files", form);
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("batch_request", JsonDocument.Parse(body).RootElement.GetProperty("sample_type").GetString());
    }

    [Fact]
    public async Task Upload_ToALocationThePolicyForbids_IsRefusedWritesZeroBytesAndIsAudited()
    {
        // The only location for files is in the US; the default policy allows the EU only.
        await using var server = await TestServer.StartAsync(c => c with
        {
            Locations = [.. c.Locations, new LocationDescriptor { Id = "us-cloud", Uri = "blobs/us-cloud", Country = "US", OnPrem = false, Operator = "hyperscaler" }],
            Defaults = c.Defaults with { FileLocation = "us-cloud" },
        });
        using var client = server.Client();
        using var response = await client.PostAsync("/v1/files", Form(ValidLine, "train.jsonl"));
        var text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Contains("'default'", text, StringComparison.Ordinal);
        Assert.Contains("'us-cloud'", text, StringComparison.Ordinal);

        AssertNoBlobs(server);
        var usTemp = Path.Combine(server.DataDirectory, "blobs", "us-cloud", "tmp");
        Assert.Empty(Directory.EnumerateFiles(usTemp));

        var refusal = server.Audit.Tail(10).Single(e => e.Type == "placement_refused");
        Assert.Equal("us-cloud", refusal.Location);
        Assert.Equal("default", refusal.Policy);
        Assert.Equal("file", refusal.ArtifactKind);
        Assert.True(server.Audit.Verify().Valid);
    }

    [Fact]
    public async Task Upload_IsAuditedWithItsHashAndTheChainVerifies()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        using var response = await client.PostAsync("/v1/files", Form(ValidLine, "train.jsonl"));
        var file = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        var placement = server.Audit.Tail(10).Single(e => e.Type == "placement");
        Assert.Equal(file.GetProperty("id").GetString(), placement.ArtifactId);
        Assert.Equal(file.GetProperty("signature").GetString(), placement.Sha256);
        Assert.Equal(ValidLine.Length, placement.Bytes);

        using var verify = await client.GetAsync("/api/v1/audit/verify");
        var result = JsonDocument.Parse(await verify.Content.ReadAsStringAsync()).RootElement;
        Assert.True(result.GetProperty("valid").GetBoolean());
    }

    [Fact]
    public async Task RevokedKey_StopsWorkingAtOnce()
    {
        await using var server = await TestServer.StartAsync();
        var key = await server.CreateKeyAsync("team-a");
        using var member = server.Client(key);
        Assert.Equal(HttpStatusCode.OK, (await member.GetAsync("/v1/files")).StatusCode);

        using var admin = server.Client();
        var keys = JsonDocument.Parse(await admin.GetStringAsync("/api/v1/keys")).RootElement.GetProperty("data");
        var id = keys.EnumerateArray().Single(k => k.GetProperty("workspace").GetString() == "team-a").GetProperty("id").GetString();
        Assert.Equal(HttpStatusCode.OK, (await admin.DeleteAsync($"/api/v1/keys/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await member.GetAsync("/v1/files")).StatusCode);
    }

    [Fact]
    public async Task SignedUrl_StopsWorkingWhenTheKeyThatSignedItIsRevoked()
    {
        await using var server = await TestServer.StartAsync();
        using var member = server.Client(await server.CreateKeyAsync("team-a"));
        using var admin = server.Client();
        var keyId = JsonDocument.Parse(await admin.GetStringAsync("/api/v1/keys")).RootElement.GetProperty("data").EnumerateArray()
            .Single(k => k.GetProperty("workspace").GetString() == "team-a").GetProperty("id").GetString()!;
        var fileId = await ApiRequests.UploadAsync(member, "train.jsonl", [ApiRequests.Chat("q", "a")]);
        var url = JsonDocument.Parse(await member.GetStringAsync($"/v1/files/{fileId}/url")).RootElement.GetProperty("url").GetString()!;
        Assert.Equal(keyId, System.Web.HttpUtility.ParseQueryString(new Uri(url).Query)["key_id"]);

        using var anonymous = new HttpClient();
        using (var before = await anonymous.GetAsync(url))
        {
            Assert.Equal(HttpStatusCode.OK, before.StatusCode);
        }

        Assert.Equal(HttpStatusCode.OK, (await admin.DeleteAsync($"/api/v1/keys/{keyId}")).StatusCode);
        using var after = await anonymous.GetAsync(url);
        var error = JsonDocument.Parse(await after.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal(HttpStatusCode.Unauthorized, after.StatusCode);
        Assert.Contains($"'{keyId}' that signed this URL has been revoked", error.GetProperty("message").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task SignedUrl_WithAnotherKeyIdOrNone_FailsItsSignature()
    {
        await using var server = await TestServer.StartAsync();
        using var member = server.Client(await server.CreateKeyAsync("default"));
        using var admin = server.Client();
        var fileId = await ApiRequests.UploadAsync(admin, "train.jsonl", [ApiRequests.Chat("q", "a")]);
        var url = JsonDocument.Parse(await member.GetStringAsync($"/v1/files/{fileId}/url")).RootElement.GetProperty("url").GetString()!;
        var keys = JsonDocument.Parse(await admin.GetStringAsync("/api/v1/keys")).RootElement.GetProperty("data").EnumerateArray()
            .Select(k => k.GetProperty("id").GetString()!).ToArray();
        var signer = System.Web.HttpUtility.ParseQueryString(new Uri(url).Query)["key_id"]!;
        var other = keys.Single(k => k != signer);

        // Another live key of the same workspace: only the signed key id is accepted.
        using var anonymous = new HttpClient();
        using (var tampered = await anonymous.GetAsync(url.Replace($"key_id={signer}", $"key_id={other}", StringComparison.Ordinal)))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, tampered.StatusCode);
            Assert.Contains("signature is not valid", await tampered.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        using (var without = await anonymous.GetAsync(url.Replace($"&key_id={signer}", "", StringComparison.Ordinal)))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, without.StatusCode);
        }

        using var untouched = await anonymous.GetAsync(url);
        Assert.Equal(HttpStatusCode.OK, untouched.StatusCode);
    }

    [Fact]
    public async Task ApiKeys_AreStoredOnlyAsHashes()
    {
        await using var server = await TestServer.StartAsync();
        var key = await server.CreateKeyAsync("team-a");
        // The key ends with its 32-byte secret in base64url: 43 characters, which may themselves hold '_'
        // (splitting at the last '_' once left a one-character "secret" that the database held by chance).
        var secret = key[^43..];
        foreach (var file in Directory.EnumerateFiles(server.DataDirectory, "catalog.db*"))
        {
            using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            using var reader = new StreamReader(stream, Encoding.Latin1);
            Assert.DoesNotContain(secret, await reader.ReadToEndAsync(), StringComparison.Ordinal);
        }
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public async Task AdminKeyFile_IsReadableByItsOwnerOnly()
    {
        await using var server = await TestServer.StartAsync();
        var mode = File.GetUnixFileMode(Path.Combine(server.DataDirectory, "admin.key"));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, mode);
    }

    [Fact]
    public async Task HealthMetricsAndOpenApi_AreServed()
    {
        await using var server = await TestServer.StartAsync();
        using var client = new HttpClient { BaseAddress = new Uri(server.BaseUrl) };
        Assert.Contains("\"status\":\"ok\"", await client.GetStringAsync("/health"), StringComparison.Ordinal);
        using var authed = server.Client();
        await authed.GetAsync("/v1/files");
        Assert.Contains("http_server_request_duration_seconds", await client.GetStringAsync("/metrics"), StringComparison.Ordinal);
        var openapi = JsonDocument.Parse(await client.GetStringAsync("/openapi/v1.json")).RootElement.GetProperty("paths");
        Assert.True(openapi.TryGetProperty("/v1/files", out _));
        Assert.True(openapi.TryGetProperty("/api/v1/audit/verify", out _));
    }

    [Fact]
    public async Task Restart_KeepsFilesAndMigratesNothingTwice()
    {
        // Both servers use this directory: the test owns it, not the first server.
        var data = TempDirectory.Create("atelier-server");
        string id;
        await using (var first = await TestServer.StartAsync(dataDirectory: data))
        {
            using var client = first.Client();
            using var response = await client.PostAsync("/v1/files", Form(ValidLine, "train.jsonl"));
            id = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("id").GetString()!;
        }

        await using var second = await TestServer.StartAsync(dataDirectory: data);
        using var again = second.Client();
        Assert.Equal(ValidLine, await again.GetByteArrayAsync($"/v1/files/{id}/content"));
        Assert.Equal(Atelier.Catalog.Sqlite.CatalogDatabase.LatestSchemaVersion, second.Service<Atelier.Catalog.Sqlite.CatalogDatabase>().SchemaVersion);
        Assert.True(second.Audit.Verify().Valid);
    }

    internal static MultipartFormDataContent Form(byte[] content, string fileName, bool chunked = false)
    {
        HttpContent file = chunked ? new StreamContent(new NonSeekableStream(content)) : new ByteArrayContent(content);
        file.Headers.ContentType = new MediaTypeHeaderValue("application/jsonl");
        return new MultipartFormDataContent { { file, "file", fileName }, { new StringContent("fine-tune"), "purpose" } };
    }

    internal static void AssertNoBlobs(TestServer server)
    {
        var blobs = Path.Combine(server.DataDirectory, "blobs");
        Assert.Empty(Directory.EnumerateFiles(blobs, "*", SearchOption.AllDirectories));
    }

    /// <summary>Makes HttpClient send the body chunked, without a Content-Length the server could check up front.</summary>
    private sealed class NonSeekableStream(byte[] content) : MemoryStream(content)
    {
        public override bool CanSeek => false;
    }
}
