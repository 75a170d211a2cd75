using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;

namespace Atelier.Server.Tests;

/// <summary>
/// <c>POST /api/v1/erasure</c>: a file that fed two dataset versions, a job and its model is erased.
/// The dry run lists them all; the run deletes every byte of the file from every location (the data
/// directory is scanned for a marker only the file holds, and for its hash in any blob's name),
/// rebuilds both datasets without it, deletes the job's data and checkpoints, and taints the model,
/// whose chat completions are refused until an admin's audited override; the signed report verifies
/// and a tampered one does not.
/// </summary>
[Trait("Category", "Slow")]
public sealed class ErasureApiTests
{
    private const string Marker = "qzxvmarker7741";

    private static IEnumerable<string> PersonalLines(int count)
    {
        for (var i = 0; i < count; i++)
        {
            yield return ApiRequests.Chat($"Say {Marker} {i}.", $"{Marker} {i} {Marker}.");
        }
    }

    private static async Task<(HttpStatusCode Status, JsonNode Body)> EraseAsync(HttpClient client, string kind, string id, bool dryRun) =>
        await JobsApiTests.PostAsync(client, "/api/v1/erasure", new { artifact = new { kind, id }, dry_run = dryRun });

    private static async Task<string> BuildAsync(HttpClient client, params string[] files)
    {
        var (status, created) = await JobsApiTests.PostAsync(client, "/api/v1/datasets", new { training_files = files, model = "tiny-base", seq_len = 64 });
        Assert.True(status == HttpStatusCode.Accepted, created.ToJsonString());
        var dataset = await ApiRequests.WaitForDatasetAsync(client, created["id"]!.GetValue<string>());
        Assert.True(dataset["status"]!.GetValue<string>() == "succeeded", dataset.ToJsonString());
        return dataset["id"]!.GetValue<string>();
    }

    private static async Task<(HttpStatusCode Status, string Body)> ChatAsync(HttpClient client, string model)
    {
        var request = new JsonObject { ["model"] = model, ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hello" }), ["max_tokens"] = 2, ["temperature"] = 0 };
        using var response = await client.PostAsync("/v1/chat/completions", new StringContent(request.ToJsonString(), Encoding.UTF8, "application/json"));
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task EraseAFile_RemovesItsBytesEverywhere_RebuildsItsDatasets_TaintsTheModel_AndSignsAReport()
    {
        // A second location, so the check asks more than the one the file is in.
        await using var server = await TestServer.StartAsync(config => config with
        {
            Locations = [.. config.Locations, new Atelier.Core.Residency.LocationDescriptor { Id = "archive", Uri = "blobs/archive", Country = "FR", Site = "local-site", Rack = "rack-1" }],
        });
        using var client = server.Client();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-base"));
        var personalBytes = Encoding.UTF8.GetBytes(string.Join("\n", PersonalLines(16)) + "\n");
        var personalHash = Convert.ToHexStringLower(SHA256.HashData(personalBytes));
        var personal = await ApiRequests.UploadAsync(client, "personal.jsonl", PersonalLines(16));
        var other = await ApiRequests.UploadAsync(client, "other.jsonl", TestModels.TrainingLines(32));
        var third = await ApiRequests.UploadAsync(client, "third.jsonl", TestModels.TrainingLines(48).Skip(32));
        var first = await BuildAsync(client, personal, other);
        var second = await BuildAsync(client, personal, third);
        var (jobStatus, job) = await JobsApiTests.PostAsync(client, "/v1/fine_tuning/jobs", new { model = "tiny-base", dataset_id = first, hyperparameters = new { training_steps = 4, seq_len = 64 }, auto_start = true });
        Assert.True(jobStatus == HttpStatusCode.OK, job.ToJsonString());
        var jobId = job["id"]!.GetValue<string>();
        var model = (await JobsApiTests.WaitAsync(client, jobId, "SUCCESS"))["fine_tuned_model"]!.GetValue<string>();
        Assert.Equal(HttpStatusCode.OK, (await ChatAsync(client, model)).Status);
        Assert.True(ContainsMarker(server.DataDirectory), "the marker should be stored before the erasure, or the scan below proves nothing");

        // A member may plan: every downstream artifact with its action.
        using var member = server.Client(await server.CreateKeyAsync("default", "member"));
        var (planStatus, plan) = await EraseAsync(member, "file", personal, dryRun: true);
        Assert.True(planStatus == HttpStatusCode.OK, plan.ToJsonString());
        Assert.Equal(personalHash, plan["content_sha256"]!.GetValue<string>());
        var steps = plan["steps"]!.AsArray().Select(s => (Kind: s!["kind"]!.GetValue<string>(), Id: s["id"]!.GetValue<string>(), Action: s["action"]!.GetValue<string>())).ToList();
        Assert.Contains(("file", personal, "delete"), steps);
        Assert.Contains(("dataset", first, "rebuild"), steps);
        Assert.Contains(("dataset", second, "rebuild"), steps);
        Assert.Contains(("job", jobId, "delete"), steps);
        Assert.Contains(("model", model, "taint"), steps);
        Assert.Contains(steps, s => s is { Kind: "checkpoint", Action: "delete" });
        Assert.DoesNotContain(steps, s => s.Id == other || s.Id == third);

        // A member may not run it (403, audited); nothing was touched by the dry run or the refusal.
        var (refused, refusal) = await EraseAsync(member, "file", personal, dryRun: false);
        Assert.True(refused == HttpStatusCode.Forbidden, refusal.ToJsonString());
        Assert.Contains(server.Audit.Tail(20), e => e.Type == "access_refused" && e.Detail!.Contains("/api/v1/erasure", StringComparison.Ordinal));
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/v1/files/{personal}/content")).StatusCode);

        // Bad inputs: an unknown file 404, an unknown kind or a kind erasures do not start from 422, another workspace's file 404.
        Assert.Equal(HttpStatusCode.NotFound, (await EraseAsync(client, "file", "no-such-file", dryRun: true)).Status);
        Assert.Equal(HttpStatusCode.UnprocessableEntity, (await EraseAsync(client, "widget", personal, dryRun: true)).Status);
        Assert.Equal(HttpStatusCode.UnprocessableEntity, (await EraseAsync(client, "dataset", first, dryRun: true)).Status);
        using var rival = server.Client(await server.CreateKeyAsync("rivals", "admin"));
        Assert.Equal(HttpStatusCode.NotFound, (await EraseAsync(rival, "file", personal, dryRun: true)).Status);
        Assert.Equal(HttpStatusCode.NotFound, (await EraseAsync(rival, "file", personal, dryRun: false)).Status);

        // The admin runs it.
        var (ranStatus, report) = await EraseAsync(client, "file", personal, dryRun: false);
        Assert.True(ranStatus == HttpStatusCode.OK, report.ToJsonString());
        var erasureId = report["erasure_id"]!.GetValue<string>();
        Assert.Equal(personalHash, report["content_sha256"]!.GetValue<string>());
        var checks = report["verification"]!.AsArray();
        Assert.All(checks, c => Assert.Equal("absent", c!["status"]!.GetValue<string>()));
        Assert.Equal(new HashSet<string> { "local", "archive" }, checks.Where(c => c!["kind"]!.GetValue<string>() == "file").Select(c => c!["location"]!.GetValue<string>()).ToHashSet());

        // No byte of the file is left anywhere in the data directory, and no blob is named by its hash.
        Assert.False(ContainsMarker(server.DataDirectory), "the erased file's content is still in the data directory: " + string.Join(", ", FilesWithMarker(server.DataDirectory)));
        Assert.DoesNotContain(Directory.EnumerateFileSystemEntries(server.DataDirectory, "*", SearchOption.AllDirectories), p => p.Contains(personalHash, StringComparison.Ordinal));
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync($"/v1/files/{personal}")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/v1/files/{other}/content")).StatusCode);

        // Both datasets were rebuilt without the file as new versions; the old versions hold no bytes.
        foreach (var old in new[] { first, second })
        {
            var rebuiltAs = report["plan"]!.AsArray().Single(s => s!["id"]!.GetValue<string>() == old)!["rebuilt_as"]!.GetValue<string>();
            var rebuilt = JsonNode.Parse(await client.GetStringAsync($"/api/v1/datasets/{rebuiltAs}"))!;
            Assert.Equal("succeeded", rebuilt["status"]!.GetValue<string>());
            Assert.DoesNotContain(personal, rebuilt.ToJsonString(), StringComparison.Ordinal);
            var gone = JsonNode.Parse(await client.GetStringAsync($"/api/v1/datasets/{old}"))!;
            Assert.Contains(erasureId, gone.ToJsonString(), StringComparison.Ordinal);
            Assert.Empty(await server.Locations.ListKeysAsync("local", $"dataset/{old}/", CancellationToken.None).ToListAsync());
        }

        Assert.Empty(await server.Locations.ListKeysAsync("local", $"checkpoints/{jobId}/", CancellationToken.None).ToListAsync());

        // The model is tainted on its card, and not served.
        var card = JsonNode.Parse(await client.GetStringAsync($"/v1/models/{Uri.EscapeDataString(model)}"))!;
        Assert.True(card["tainted"]!.GetValue<bool>());
        Assert.Equal(erasureId, card["erasure_id"]!.GetValue<string>());
        var (chatStatus, chatBody) = await ChatAsync(client, model);
        Assert.Equal((HttpStatusCode)451, chatStatus);
        Assert.Contains(erasureId, chatBody, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, (await ChatAsync(client, "tiny-base")).Status);

        // An override takes an admin and a reason, is audited, and lets it be served.
        var overridePath = $"/api/v1/models/{Uri.EscapeDataString(model)}/serving-override";
        Assert.Equal(HttpStatusCode.Forbidden, (await JobsApiTests.PostAsync(member, overridePath, new { reason = "please" })).Status);
        Assert.Equal(HttpStatusCode.BadRequest, (await JobsApiTests.PostAsync(client, overridePath, new { reason = "" })).Status);
        var (overrideStatus, overridden) = await JobsApiTests.PostAsync(client, overridePath, new { reason = "legal hold: kept for the regulator's review" });
        Assert.True(overrideStatus == HttpStatusCode.OK, overridden.ToJsonString());
        Assert.Contains(server.Audit.Tail(20), e => e.Type == "serving_override" && e.ArtifactId == model && e.Detail!.Contains(erasureId, StringComparison.Ordinal));
        Assert.Equal(HttpStatusCode.OK, (await ChatAsync(client, model)).Status);

        // The erasure is audited with ids and the hash only.
        var audited = server.Audit.Tail(400).Where(e => e.Type == "erasure").ToList();
        Assert.Single(audited);
        Assert.Equal(personal, audited[0].ArtifactId);
        Assert.Equal(personalHash, audited[0].Sha256);

        // The stored report is the one returned, and it verifies; a tampered copy does not.
        var stored = JsonNode.Parse(await client.GetStringAsync($"/api/v1/erasure/{erasureId}"))!;
        Assert.True(JsonNode.DeepEquals(report, stored));
        var (verifyStatus, verified) = await JobsApiTests.PostAsync(client, "/api/v1/erasure/verify", stored);
        Assert.True(verifyStatus == HttpStatusCode.OK && verified["valid"]!.GetValue<bool>(), verified.ToJsonString());
        var tampered = stored.DeepClone();
        tampered["content_sha256"] = new string('0', 64);
        var (_, rejected) = await JobsApiTests.PostAsync(client, "/api/v1/erasure/verify", tampered);
        Assert.False(rejected["valid"]!.GetValue<bool>());
        Assert.Contains("signature", rejected["reason"]!.GetValue<string>(), StringComparison.Ordinal);

        // Another workspace cannot read it; the file is gone, so asking again is 404.
        Assert.Equal(HttpStatusCode.NotFound, (await rival.GetAsync($"/api/v1/erasure/{erasureId}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await EraseAsync(client, "file", personal, dryRun: false)).Status);
    }

    private static bool ContainsMarker(string directory) => FilesWithMarker(directory).Any();

    private static IEnumerable<string> FilesWithMarker(string directory)
    {
        var marker = Encoding.UTF8.GetBytes(Marker);
        foreach (var path in Directory.EnumerateFiles(directory, "*", SearchOption.AllDirectories))
        {
            byte[] bytes;
            try
            {
                bytes = File.ReadAllBytes(path);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                continue;
            }

            if (bytes.AsSpan().IndexOf(marker) >= 0)
            {
                yield return path;
            }
        }
    }
}
