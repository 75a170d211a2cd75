using System.Text;
using System.Text.Json;
using Atelier.Storage.Audit;

namespace Atelier.Server.Tests;

/// <summary>
/// Signed audit heads over real HTTP and the real CLI: a head exported before the log was replaced
/// by a fresh, self-consistent chain tells the replacement apart, which the chain alone cannot.
/// </summary>
public sealed class AuditHeadApiTests
{
    private static Task<(int ExitCode, string Output)> Cli(TestServer server, params string[] args) =>
        Repo.RunAsync(
            "dotnet",
            [Path.Combine(AppContext.BaseDirectory, "atelier.dll"), .. args, "--server", server.BaseUrl, "--api-key", server.AdminKey],
            server.DataDirectory,
            new Dictionary<string, string> { ["NO_COLOR"] = "1" });

    private static async Task<JsonElement> PostVerifyAsync(HttpClient client, string? head)
    {
        using var content = head is null ? null : new StringContent(head, Encoding.UTF8, "application/json");
        using var response = await client.PostAsync("/api/v1/audit/verify", content);
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        return JsonDocument.Parse(body).RootElement.Clone();
    }

    [Fact]
    [Trait("Category", "Slow")]
    public async Task LogRewrittenWhole_PassesTheSelfCheck_ButNotTheExportedHead_OverHttpAndInTheCli()
    {
        // Both servers use this directory: the test owns it.
        var data = TempDirectory.Create("atelier-audit-rewrite");
        var headFile = Path.Combine(TempDirectory.Create("atelier-audit-head"), "head.json");
        try
        {
            long seq;
            string hash;
            await using (var server = await TestServer.StartAsync(dataDirectory: data))
            {
                using var client = server.Client();
                await server.CreateKeyAsync("team-a");
                await ApiRequests.UploadAsync(client, "train.jsonl", [ApiRequests.Chat("q", "a")]);

                var (exit, output) = await Cli(server, "audit", "head", "-o", headFile);
                Assert.True(exit == 0, output);
                var head = AuditHead.Parse(await File.ReadAllBytesAsync(headFile));
                (seq, hash) = (head.Seq, head.Hash);
                Assert.True(seq >= 3, $"the head should cover the bootstrap key, the new key and the upload: seq {seq}");

                // The export itself is the event right after the head.
                var exported = server.Audit.Read(seq, 1)[0];
                Assert.Equal("audit_head_exported", exported.Type);

                // The untouched log verifies both ways, and against the head on the server and here.
                Assert.True(JsonDocument.Parse(await client.GetStringAsync("/api/v1/audit/verify")).RootElement.GetProperty("valid").GetBoolean());
                var untouched = await PostVerifyAsync(client, await File.ReadAllTextAsync(headFile));
                Assert.True(untouched.GetProperty("valid").GetBoolean(), untouched.ToString());
                Assert.True(untouched.GetProperty("against").GetProperty("matches").GetBoolean());
                (exit, output) = await Cli(server, "audit", "verify", "--against", headFile);
                Assert.True(exit == 0, output);
                Assert.Contains($"valid against the head of seq {seq}", output, StringComparison.Ordinal);
            }

            // Replace the audit directory with a valid chain of other events, written by the log itself.
            var forged = TempDirectory.Create("atelier-audit-forged");
            using (var log = new AuditLog(forged, TimeProvider.System))
            {
                for (var i = 0; i < seq + 5; i++)
                {
                    await log.AppendAsync(new AuditEvent { Type = "key_created", Actor = "system:bootstrap", ArtifactKind = "api_key", ArtifactId = $"forged{i}" });
                }
            }

            var audit = Path.Combine(data, "audit");
            Directory.Delete(audit, recursive: true);
            Directory.Move(forged, audit);

            await using (var server = await TestServer.StartAsync(dataDirectory: data))
            {
                using var client = server.Client();
                var self = JsonDocument.Parse(await client.GetStringAsync("/api/v1/audit/verify")).RootElement;
                Assert.True(self.GetProperty("valid").GetBoolean(), self.ToString());
                var selfByPost = await PostVerifyAsync(client, head: null);
                Assert.True(selfByPost.GetProperty("valid").GetBoolean(), selfByPost.ToString());

                var against = await PostVerifyAsync(client, await File.ReadAllTextAsync(headFile));
                Assert.False(against.GetProperty("valid").GetBoolean(), against.ToString());
                Assert.Equal(seq, against.GetProperty("first_bad_seq").GetInt64());
                Assert.Equal(seq, against.GetProperty("against").GetProperty("seq").GetInt64());
                Assert.Equal(hash, against.GetProperty("against").GetProperty("hash").GetString());
                Assert.True(against.GetProperty("against").GetProperty("signature_valid").GetBoolean());
                Assert.False(against.GetProperty("against").GetProperty("matches").GetBoolean());
                Assert.Contains($"event {seq} has hash", against.GetProperty("reason").GetString(), StringComparison.Ordinal);

                // The CLI reaches the same verdict from the downloaded log, not from the server's answer.
                var (exit, output) = await Cli(server, "audit", "verify", "--against", headFile);
                Assert.True(exit == 3, output);
                Assert.Contains($"INVALID against the head of seq {seq} at seq {seq}", output, StringComparison.Ordinal);
                Assert.Contains(hash, output, StringComparison.Ordinal);

                (exit, output) = await Cli(server, "audit", "verify");
                Assert.True(exit == 0, output);
            }
        }
        finally
        {
            Atelier.Testing.TestCleanup.Delete(data);
            Atelier.Testing.TestCleanup.Delete(Path.GetDirectoryName(headFile)!);
        }
    }

    [Fact]
    public async Task Head_IsSignedByTheServersKey_AndATamperedHeadFailsItsSignature()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        var json = await client.GetStringAsync("/api/v1/audit/head");
        var head = AuditHead.Parse(Encoding.UTF8.GetBytes(json));
        Assert.Equal(server.Service<AuditHeadSigner>().KeyId, head.KeyId);
        Assert.Equal(Convert.ToBase64String(server.Service<AuditHeadSigner>().PublicKey), head.PublicKey);
        Assert.Equal(head.Seq + 1, server.Audit.LastSeq);
        Assert.Null(AuditHeadVerifier.CheckSignature(head, server.Service<AuditHeadSigner>().PublicKey));

        var valid = await PostVerifyAsync(client, json);
        Assert.True(valid.GetProperty("valid").GetBoolean(), valid.ToString());

        // Moving the head forward in time breaks its signature although the log is untouched.
        var tampered = Encoding.UTF8.GetString((head with { SignedAt = head.SignedAt.AddDays(1) }).ToJson());
        var result = await PostVerifyAsync(client, tampered);
        Assert.False(result.GetProperty("valid").GetBoolean());
        Assert.False(result.GetProperty("against").GetProperty("signature_valid").GetBoolean());
        Assert.True(result.GetProperty("against").GetProperty("matches").GetBoolean());
        Assert.Contains("signature does not verify", result.GetProperty("reason").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task HeadAndVerify_AreForTheOperatorOnly_AndAMalformedHeadIs400()
    {
        await using var server = await TestServer.StartAsync();
        foreach (var role in new[] { "member", "admin" })
        {
            using var workspaceKey = server.Client(await server.CreateKeyAsync("team-a", role));
            using (var response = await workspaceKey.GetAsync("/api/v1/audit/head"))
            {
                Assert.Equal(System.Net.HttpStatusCode.Forbidden, response.StatusCode);
            }

            using (var response = await workspaceKey.PostAsync("/api/v1/audit/verify", null))
            {
                Assert.Equal(System.Net.HttpStatusCode.Forbidden, response.StatusCode);
            }
        }

        using var admin = server.Client();
        using (var response = await admin.PostAsync("/api/v1/audit/verify", new StringContent("{\"seq\":1}", Encoding.UTF8, "application/json")))
        {
            Assert.Equal(System.Net.HttpStatusCode.BadRequest, response.StatusCode);
        }
    }
}
