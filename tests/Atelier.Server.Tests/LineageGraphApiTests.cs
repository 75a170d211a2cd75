using System.Net;
using System.Text.Json.Nodes;

namespace Atelier.Server.Tests;

/// <summary>
/// <c>GET /api/v1/lineage/{kind}/{id}</c> over a whole flow (two files, a dataset built from both, a
/// job on the dataset, its checkpoints and its model): upstream from the model reaches every input,
/// downstream from each file reaches everything made from it, each node with its residency policy and
/// locations; another workspace sees none of it.
/// </summary>
[Trait("Category", "Slow")]
public sealed class LineageGraphApiTests
{
    private static async Task<JsonNode> LineageAsync(HttpClient client, string kind, string id, string? direction = null, int? depth = null)
    {
        var query = string.Join("&", new[] { direction is null ? null : "direction=" + direction, depth is null ? null : "depth=" + depth }.OfType<string>());
        using var response = await client.GetAsync($"/api/v1/lineage/{kind}/{Uri.EscapeDataString(id)}" + (query.Length > 0 ? "?" + query : ""));
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, body);
        return JsonNode.Parse(body)!;
    }

    private static HashSet<string> Refs(JsonNode graph) => [.. graph["nodes"]!.AsArray().Select(n => n!["ref"]!.GetValue<string>())];

    private static HashSet<(string From, string To, string Relation)> Edges(JsonNode graph) =>
        [.. graph["edges"]!.AsArray().Select(e => (e!["from"]!.GetValue<string>(), e["to"]!.GetValue<string>(), e["relation"]!.GetValue<string>()))];

    private static JsonNode Node(JsonNode graph, string reference) => graph["nodes"]!.AsArray().Single(n => n!["ref"]!.GetValue<string>() == reference)!;

    [Fact]
    public async Task TwoFilesToDatasetToJobToCheckpointsToModel_WalksUpstreamFromTheModelAndDownstreamFromEachFile()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-base"));
        var first = await ApiRequests.UploadAsync(client, "first.jsonl", TestModels.TrainingLines(24));
        var second = await ApiRequests.UploadAsync(client, "second.jsonl", TestModels.TrainingLines(48).Skip(24));
        var unrelated = await ApiRequests.UploadAsync(client, "unrelated.jsonl", TestModels.TrainingLines(4));

        var (status, created) = await JobsApiTests.PostAsync(client, "/api/v1/datasets", new { training_files = new[] { first, second }, model = "tiny-base", seq_len = 64 });
        Assert.True(status == HttpStatusCode.Accepted, created.ToJsonString());
        var dataset = (await ApiRequests.WaitForDatasetAsync(client, created["id"]!.GetValue<string>()))["id"]!.GetValue<string>();
        var (jobStatus, job) = await JobsApiTests.PostAsync(client, "/v1/fine_tuning/jobs", new { model = "tiny-base", dataset_id = dataset, hyperparameters = new { training_steps = 4, seq_len = 64 }, auto_start = true });
        Assert.True(jobStatus == HttpStatusCode.OK, job.ToJsonString());
        var jobId = job["id"]!.GetValue<string>();
        var done = await JobsApiTests.WaitAsync(client, jobId, "SUCCESS");
        var model = done["fine_tuned_model"]!.GetValue<string>();

        // Upstream from the model: every input down to the two files and the base model.
        var up = await LineageAsync(client, "model", model);
        Assert.Equal("model:" + model, up["root"]!.GetValue<string>());
        var upRefs = Refs(up);
        Assert.Superset(new HashSet<string> { "model:" + model, "job:" + jobId, "dataset:" + dataset, "file:" + first, "file:" + second, "model:tiny-base" }, upRefs);
        Assert.DoesNotContain("file:" + unrelated, upRefs);
        var checkpoints = upRefs.Where(r => r.StartsWith("checkpoint:", StringComparison.Ordinal)).ToList();
        Assert.NotEmpty(checkpoints);
        var edges = Edges(up);
        Assert.Contains(("file:" + first, "dataset:" + dataset, "training_file"), edges);
        Assert.Contains(("file:" + second, "dataset:" + dataset, "training_file"), edges);
        Assert.Contains(("dataset:" + dataset, "job:" + jobId, "dataset"), edges);
        Assert.Contains(("model:tiny-base", "job:" + jobId, "base_model"), edges);
        Assert.Contains(("job:" + jobId, "model:" + model, "trained"), edges);
        Assert.Contains(edges, e => e.From.StartsWith("checkpoint:", StringComparison.Ordinal) && e.To == "model:" + model && e.Relation == "final_checkpoint");
        Assert.All(checkpoints, c => Assert.Contains(("job:" + jobId, c, "checkpoint"), edges));

        // Each node with bytes carries its policy and where the bytes are.
        foreach (var reference in new[] { "file:" + first, "dataset:" + dataset, "job:" + jobId, "model:" + model, "model:tiny-base" })
        {
            var node = Node(up, reference);
            Assert.False(string.IsNullOrEmpty(node["residency_policy"]?.GetValue<string>()), node.ToJsonString());
            Assert.Contains("local", node["locations"]!.AsArray().Select(l => l!.GetValue<string>()));
        }

        var retained = up["nodes"]!.AsArray().Where(n => n!["kind"]!.GetValue<string>() == "checkpoint" && n["status"]!.GetValue<string>() == "retained").ToList();
        Assert.NotEmpty(retained);
        Assert.All(retained, n => Assert.NotEmpty(n!["locations"]!.AsArray()));

        // Downstream from each file: the dataset, the job, its checkpoints, the model and the replica serving it.
        foreach (var file in new[] { first, second })
        {
            var down = await LineageAsync(client, "file", file, "downstream");
            var downRefs = Refs(down);
            Assert.Superset(new HashSet<string> { "file:" + file, "dataset:" + dataset, "job:" + jobId, "model:" + model }, downRefs);
            Assert.Superset(checkpoints.ToHashSet(), downRefs);
            Assert.Contains(downRefs, r => r.StartsWith("replica:", StringComparison.Ordinal));
            Assert.Contains(Edges(down), e => e.From == "model:" + model && e.To.StartsWith("replica:", StringComparison.Ordinal) && e.Relation == "serves");
            Assert.DoesNotContain("model:tiny-base", downRefs);
            Assert.DoesNotContain("file:" + (file == first ? second : first), downRefs);
        }

        // The depth bounds the walk: one edge down from a file reaches only the dataset.
        var shallow = await LineageAsync(client, "file", first, "downstream", depth: 1);
        Assert.Equal(new HashSet<string> { "file:" + first, "dataset:" + dataset }, Refs(shallow));

        // An alias of the job kind, and an unrelated file with no lineage.
        Assert.Contains("model:" + model, Refs(await LineageAsync(client, "fine_tuning_job", jobId, "downstream")));
        Assert.Equal(new HashSet<string> { "file:" + unrelated }, Refs(await LineageAsync(client, "file", unrelated, "downstream")));

        // Bad inputs: an unknown kind is 422, an unknown id 404, another workspace's artifact 404, and
        // the shared base model, seen from another workspace, shows nothing of this one.
        using (var response = await client.GetAsync("/api/v1/lineage/widget/x"))
        {
            Assert.Equal(HttpStatusCode.UnprocessableEntity, response.StatusCode);
        }

        using (var response = await client.GetAsync("/api/v1/lineage/file/no-such-file"))
        {
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        }

        using var other = server.Client(await server.CreateKeyAsync("other-team"));
        foreach (var path in new[] { $"/api/v1/lineage/file/{first}", $"/api/v1/lineage/dataset/{dataset}", $"/api/v1/lineage/model/{Uri.EscapeDataString(model)}" })
        {
            using var response = await other.GetAsync(path);
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        }

        var baseSeenByOther = await LineageAsync(other, "model", "tiny-base", "downstream");
        Assert.Contains("model:tiny-base", Refs(baseSeenByOther));
        Assert.DoesNotContain(Refs(baseSeenByOther), r => r.StartsWith("job:", StringComparison.Ordinal) || r.StartsWith("dataset:", StringComparison.Ordinal) || r == "model:" + model);
    }
}
