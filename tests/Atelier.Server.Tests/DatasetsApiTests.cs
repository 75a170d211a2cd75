using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Atelier.Catalog;

namespace Atelier.Server.Tests;

/// <summary><c>/api/v1/datasets</c> over real HTTP: from uploaded files to placed, audited shards.</summary>
public sealed class DatasetsApiTests
{
    private static IEnumerable<string> TrainingLines()
    {
        for (var i = 0; i < 60; i++)
        {
            yield return ApiRequests.Chat($"Question {i}: what is {i} squared, in words please?", $"The square of {i} is {i * i}, which I spell out for you.");
        }

        // Planted: three exact duplicates and one example that copies the eval item.
        yield return ApiRequests.Chat("Question 1: what is 1 squared, in words please?", "The square of 1 is 1, which I spell out for you.");
        yield return ApiRequests.Chat("Question 2: what is 2 squared, in words please?", "The square of 2 is 4, which I spell out for you.");
        yield return ApiRequests.Chat("Question 3: what is 3 squared, in words please?", "The square of 3 is 9, which I spell out for you.");
        yield return ApiRequests.Chat("Name the capital city of France and describe its famous iron tower built for the world fair", "Paris; the Eiffel Tower.");
    }

    private static async Task<JsonNode> CreateAndWaitAsync(HttpClient client, object request)
    {
        using var response = await client.PostAsJsonAsync("/api/v1/datasets", request);
        var created = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, created.ToJsonString());
        return await ApiRequests.WaitForDatasetAsync(client, created["id"]!.GetValue<string>());
    }

    [Fact]
    public async Task Build_FromUploadedFiles_DropsPlantedDuplicatesAndContaminationAndPlacesAuditedShards()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", TrainingLines());
        var eval = await ApiRequests.UploadAsync(client, "eval.jsonl", [ApiRequests.Chat("Name the capital city of France and describe its famous iron tower built for the world fair", "Paris.")]);

        var done = await CreateAndWaitAsync(client, new { training_files = new[] { train }, validation_files = new[] { eval }, seq_len = 128, name = "squares" });
        Assert.True(done["status"]!.GetValue<string>() == "succeeded", done.ToJsonString());
        var counters = done["summary"]!["manifest"]!["counters"]!;
        Assert.Equal(64, counters["examples_read"]!.GetValue<long>());
        Assert.Equal(3, counters["exact_duplicates"]!.GetValue<long>());
        Assert.Equal(1, counters["contaminated"]!.GetValue<long>());
        Assert.Equal(60, counters["examples_kept"]!.GetValue<long>());
        Assert.Equal("default", done["policy"]!.GetValue<string>());

        var id = done["id"]!.GetValue<string>();
        var manifest = JsonNode.Parse(await client.GetStringAsync($"/api/v1/datasets/{id}/files/manifest.json"))!;
        var shards = manifest["shards"]!.AsArray();
        Assert.NotEmpty(shards);
        var shard = shards[0]!;
        var bytes = await client.GetByteArrayAsync($"/api/v1/datasets/{id}/files/{shard["path"]}");
        Assert.Equal(shard["sha256"]!.GetValue<string>(), Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes)));

        var placements = server.Audit.Read(0, 1000).Where(e => e.Type == "placement" && e.ArtifactKind == "dataset" && e.ArtifactId == id).ToArray();
        Assert.Contains(placements, e => e.Sha256 == shard["sha256"]!.GetValue<string>());
        Assert.Contains(placements, e => e.Detail is null && e.Bytes > 0);

        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync($"/api/v1/datasets/{id}/files/..%2F..%2Fcatalog.db")).StatusCode);
        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(server.DataDirectory, "staging", "datasets")));

        using var delete = await client.DeleteAsync($"/api/v1/datasets/{id}");
        Assert.Equal(HttpStatusCode.OK, delete.StatusCode);
        Assert.Empty(await server.Locations.ListKeysAsync("local", $"dataset/{id}/", CancellationToken.None).ToListAsync());
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync($"/api/v1/datasets/{id}")).StatusCode);
    }

    [Fact]
    public async Task SameInputsAndOptions_GiveByteIdenticalShards()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", TrainingLines());
        var first = await CreateAndWaitAsync(client, new { training_files = new[] { train }, seq_len = 64 });
        var second = await CreateAndWaitAsync(client, new { training_files = new[] { train }, seq_len = 64 });
        string Hashes(JsonNode d) => string.Join(",", d["summary"]!["manifest"]!["shards"]!.AsArray().Select(s => s!["sha256"]!.GetValue<string>()));
        Assert.Equal(Hashes(first), Hashes(second));
        Assert.NotEqual(first["id"]!.GetValue<string>(), second["id"]!.GetValue<string>());
    }

    [Fact]
    public async Task BadRequests_AreRefusedClearlyAndCreateNothing()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        var batch = await ApiRequests.UploadAsync(client, "batch.jsonl", ["{\"custom_id\":\"1\",\"body\":{}}"], "batch");
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", TrainingLines());

        async Task Expect(object body, HttpStatusCode status, string fragment)
        {
            using var response = await client.PostAsJsonAsync("/api/v1/datasets", body);
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == status, $"{(int)response.StatusCode}: {text}");
            Assert.Contains(fragment, text, StringComparison.Ordinal);
        }

        await Expect(new { training_files = Array.Empty<string>() }, HttpStatusCode.BadRequest, "training_files");
        await Expect(new { training_files = new[] { "00000000-0000-0000-0000-000000000000" } }, HttpStatusCode.NotFound, "00000000-0000-0000-0000-000000000000");
        await Expect(new { training_files = new[] { batch } }, HttpStatusCode.BadRequest, "purpose 'batch'");
        await Expect(new { training_files = new[] { train }, tokenizer = "gpt-17" }, HttpStatusCode.BadRequest, "Unknown tokenizer");
        await Expect(new { training_files = new[] { train }, seq_len = 2 }, HttpStatusCode.BadRequest, "seq_len");

        var other = server.Client(await server.CreateKeyAsync("other-team"));
        using var foreign = await other.PostAsJsonAsync("/api/v1/datasets", new { training_files = new[] { train } });
        Assert.Equal(HttpStatusCode.NotFound, foreign.StatusCode);

        var list = JsonNode.Parse(await client.GetStringAsync("/api/v1/datasets"))!;
        Assert.Empty(list["data"]!.AsArray());
    }

    [Fact]
    public async Task BuildLeftRunningByAStoppedServer_IsFinishedAfterRestart()
    {
        // Both servers use this directory: the test owns it, not the first server.
        var data = TempDirectory.Create("atelier-server");
        string train;
        await using (var first = await TestServer.StartAsync(dataDirectory: data))
        {
            using var client = first.Client();
            train = await ApiRequests.UploadAsync(client, "train.jsonl", TrainingLines());
        }

        // As if the server had died while building: the row says 'running'.
        var catalog = Atelier.Catalog.Sqlite.SqliteCatalog.Open(Path.Combine(data, "catalog.db"));
        var files = catalog.Files;
        var workspace = await new ApiKeyStore(catalog.Keys, TimeProvider.System).EnsureWorkspaceAsync("default");
        var id = "ds-" + Guid.NewGuid().ToString("D");
        var datasets = catalog.Datasets;
        await datasets.InsertAsync(new DatasetRecord
        {
            Id = id,
            WorkspaceId = workspace.Id,
            Name = "interrupted",
            Status = "queued",
            RequestJson = JsonSerializer.Serialize(new { training_files = new[] { train }, seq_len = 64 }),
            Policy = "default",
            LocationId = "local",
            CreatedAt = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
            CreatedBy = "test",
        });
        await datasets.MarkRunningAsync(id);
        Assert.NotNull(await files.GetAsync(workspace.Id, train));

        await using var second = await TestServer.StartAsync(dataDirectory: data);
        using var again = second.Client();
        var done = await ApiRequests.WaitForDatasetAsync(again, id);
        Assert.True(done["status"]!.GetValue<string>() == "succeeded", done.ToJsonString());
    }
}
