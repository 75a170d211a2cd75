using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Xunit.Abstractions;

namespace Atelier.Server.Tests;

/// <summary>
/// A server whose data directory is a small tmpfs that fills up: writes answer 507, reads and
/// deletions keep working (so space can be freed), the deletion is still audited, and writes work
/// again once there is room. Needs root to mount the tmpfs; without it the test says so and stops.
/// </summary>
public sealed class DiskFullTests(ITestOutputHelper output)
{
    [Fact]
    public async Task FullDisk_WritesAnswer507_ReadsAndDeletesWork_AndWritesResumeOnceSpaceIsFreed()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        var mount = TempDirectory.Create("atelier-full");
        int rc;
        string text;
        try
        {
            (rc, text) = await Repo.RunAsync("mount", ["-t", "tmpfs", "-o", "size=32m,mode=0700", "tmpfs", mount], mount);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            (rc, text) = (-1, e.Message);
        }

        if (rc != 0)
        {
            output.WriteLine($"The disk-full probe did not run: mounting a tmpfs failed ({text.Trim()}); it needs root.");
            return;
        }

        try
        {
            await using var server = await TestServer.StartAsync(dataDirectory: Path.Combine(mount, "data"));
            using var client = server.Client();
            var fileId = await ApiRequests.UploadAsync(client, "train.jsonl", Enumerable.Range(0, 200).Select(i => ApiRequests.Chat($"question {i}", $"answer {i}")));
            Assert.True((await client.PostAsJsonAsync("/api/v1/collections", new { name = "docs", dimension = 4, metric = "l2" })).IsSuccessStatusCode);
            Assert.True((await client.PostAsJsonAsync("/api/v1/features/views", new { name = "quality", entity_key = "example_id", timestamp_field = "event_time", fields = new[] { new { name = "score", type = "float64" } } })).IsSuccessStatusCode);

            var filler = Path.Combine(mount, "filler");
            Fill(filler);

            var writes = new (string Method, string Path, HttpContent Body)[]
            {
                ("POST", "/api/v1/keys", JsonContent.Create(new { name = "k", workspace = "full" })),
                ("POST", "/v1/files", Upload()),
                ("POST", "/api/v1/collections", JsonContent.Create(new { name = "more", dimension = 4, metric = "l2" })),
                ("PUT", "/api/v1/collections/docs/points", JsonContent.Create(new { points = Enumerable.Range(0, 2000).Select(i => new { id = i, vector = new[] { i, 1f, 2f, 3f }, payload = new { text = new string('x', 200) } }) })),
                ("POST", "/api/v1/features/views", JsonContent.Create(new { name = "more", entity_key = "example_id", timestamp_field = "event_time", fields = new[] { new { name = "score", type = "float64" } } })),
                ("POST", "/api/v1/features/views/quality/rows", JsonContent.Create(new { rows = Enumerable.Range(0, 2000).Select(i => new { example_id = $"e{i}", event_time = "2026-01-01T00:00:00Z", score = i * 0.5 }) })),
            };
            var failures = new List<string>();
            foreach (var (method, path, body) in writes)
            {
                var (status, answer) = await SecurityProbe.SendAsync(client, method, path, body);
                output.WriteLine($"full disk: {method} {path} -> {status} {SecurityProbe.Truncate(answer)}");
                if (status != 507 || !answer.Contains("insufficient_storage", StringComparison.Ordinal))
                {
                    failures.Add($"{method} {path}: {status} {SecurityProbe.Truncate(answer)}");
                }
            }

            Assert.True(failures.Count == 0, "writes on a full disk:\n" + string.Join("\n", failures));

            // Reads work on a full disk.
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/v1/files")).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/v1/files/{fileId}/content")).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/api/v1/collections/docs")).StatusCode);

            // Deleting works on a full disk, and is audited.
            var (deleted, deleteBody) = await SecurityProbe.SendAsync(client, "DELETE", $"/v1/files/{fileId}", null);
            Assert.True(deleted == 200, $"DELETE on a full disk: {deleted} {deleteBody}");
            var audit = JsonNode.Parse(await client.GetStringAsync("/api/v1/audit?tail=20"))!["data"]!.AsArray();
            Assert.Contains(audit, e => e!["type"]!.GetValue<string>() == "deletion" && e["artifact_id"]?.GetValue<string>() == fileId);
            var (collectionDeleted, collectionBody) = await SecurityProbe.SendAsync(client, "DELETE", "/api/v1/collections/docs", null);
            Assert.True(collectionDeleted == 200, $"DELETE collection on a full disk: {collectionDeleted} {collectionBody}");

            // With room again, writes work again.
            File.Delete(filler);

            // Nothing the full disk refused stayed half-done: every key and every file has its audit event.
            var events = JsonNode.Parse(await client.GetStringAsync("/api/v1/audit?limit=10000"))!["data"]!.AsArray();
            var keys = JsonNode.Parse(await client.GetStringAsync("/api/v1/keys"))!["data"]!.AsArray();
            Assert.All(keys, k => Assert.Contains(events, e => e!["type"]!.GetValue<string>() == "key_created" && e["artifact_id"]?.GetValue<string>() == k!["id"]!.GetValue<string>()));
            var files = JsonNode.Parse(await client.GetStringAsync("/v1/files"))!["data"]!.AsArray();
            Assert.All(files, f => Assert.Contains(events, e => e!["type"]!.GetValue<string>() == "placement" && e["artifact_id"]?.GetValue<string>() == f!["id"]!.GetValue<string>()));
            var (created, createdBody) = await SecurityProbe.SendAsync(client, "POST", "/api/v1/keys", JsonContent.Create(new { name = "k", workspace = "full" }));
            Assert.True(created == 201, $"after freeing space: {created} {createdBody}");
            var (uploaded, uploadBody) = await SecurityProbe.SendAsync(client, "POST", "/v1/files", Upload());
            Assert.True(uploaded == 200, $"after freeing space: {uploaded} {uploadBody}");
            var verify = JsonNode.Parse(await client.GetStringAsync("/api/v1/audit/verify"))!;
            Assert.True(verify["valid"]?.GetValue<bool>() ?? verify["ok"]?.GetValue<bool>(), verify.ToJsonString());
        }
        finally
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            if ((await Repo.RunAsync("umount", [mount], "/")).ExitCode != 0)
            {
                // Something still holds a file open (a pooled connection); detach it now, freed when closed.
                await Repo.RunAsync("umount", ["-l", mount], "/");
            }
        }
    }

    // Writes until the filesystem refuses, in ever smaller pieces, so not even a page is left.
    private static void Fill(string path)
    {
        using var stream = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 0);
        foreach (var size in new[] { 1 << 20, 64 << 10, 4 << 10, 512, 1 })
        {
            var chunk = new byte[size];
            try
            {
                while (true)
                {
                    stream.Write(chunk);
                }
            }
            catch (IOException)
            {
            }
        }
    }

    private static MultipartFormDataContent Upload() => new()
    {
        { new ByteArrayContent(Encoding.UTF8.GetBytes(string.Concat(Enumerable.Range(0, 2000).Select(i => ApiRequests.Chat($"q{i}", $"a{i}") + "\n")))), "file", "more.jsonl" },
        { new StringContent("fine-tune"), "purpose" },
    };
}
