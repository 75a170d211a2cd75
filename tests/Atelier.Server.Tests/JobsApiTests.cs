using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Atelier.Server.Tests;

/// <summary><c>/v1/fine_tuning/jobs</c> and <c>/api/v1/checkpoints</c> over real HTTP, training a tiny model for real.</summary>
public sealed class JobsApiTests
{
    internal static async Task<(HttpStatusCode Status, JsonNode Body)> PostAsync(HttpClient client, string path, object? body)
    {
        using var response = body is null ? await client.PostAsync(path, null) : await client.PostAsJsonAsync(path, body);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonNode.Parse(text.Length == 0 ? "{}" : text)!);
    }

    internal static async Task<JsonNode> WaitAsync(HttpClient client, string id, params string[] until)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var body = JsonNode.Parse(await client.GetStringAsync($"/v1/fine_tuning/jobs/{id}"))!;
            var status = body["status"]!.GetValue<string>();
            if (until.Contains(status))
            {
                return body;
            }

            Assert.True(status is not ("FAILED" or "FAILED_VALIDATION" or "CANCELLED" or "SUCCESS"), $"job ended {status}, waiting for {string.Join("/", until)}: {body.ToJsonString()}");
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(240), $"job not {string.Join("/", until)} within 240 s: {body.ToJsonString()}");
            await Task.Delay(100);
        }
    }

    internal static object Request(string model, string trainingFile, string? validationFile = null, int steps = 12, bool autoStart = true, double learningRate = 3e-3, string? suffix = null) => new
    {
        model,
        training_files = new[] { new { file_id = trainingFile, weight = 1 } },
        validation_files = validationFile is null ? Array.Empty<string>() : [validationFile],
        hyperparameters = new { training_steps = steps, learning_rate = learningRate, seq_len = 64 },
        auto_start = autoStart,
        suffix,
    };

    [Fact]
    public async Task Job_TrainsToSuccess_WithCheckpointsAndModel()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-base"));
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", TestModels.TrainingLines());
        var valid = await ApiRequests.UploadAsync(client, "valid.jsonl", TestModels.TrainingLines(12).Select(l => l.Replace("Say", "Please say", StringComparison.Ordinal)));

        var (status, created) = await PostAsync(client, "/v1/fine_tuning/jobs", Request("tiny-base", train, valid, steps: 20, suffix: "echo"));
        Assert.True(status == HttpStatusCode.OK, created.ToJsonString());
        Assert.Equal("QUEUED", created["status"]!.GetValue<string>());
        Assert.Equal("completion", created["job_type"]!.GetValue<string>());
        var id = created["id"]!.GetValue<string>();

        var done = await WaitAsync(client, id, "SUCCESS");
        var statuses = done["events"]!.AsArray().Where(e => e!["name"]!.GetValue<string>() == "status-updated").Select(e => e!["data"]!["status"]!.GetValue<string>()).ToArray();
        Assert.Equal(["QUEUED", "VALIDATING", "VALIDATED", "QUEUED", "RUNNING", "SUCCESS"], statuses);

        var metadata = done["metadata"]!;
        Assert.Equal(64, metadata["train_tokens_per_step"]!.GetValue<long>());
        Assert.Equal(20 * 64, metadata["train_tokens"]!.GetValue<long>());
        Assert.True(metadata["data_tokens"]!.GetValue<long>() > 0);
        Assert.Equal(20 * 64, done["trained_tokens"]!.GetValue<long>());

        // A checkpoint every 2 steps (a tenth of 20), each with metrics; train loss falls.
        var checkpoints = done["checkpoints"]!.AsArray().Select(c => c!).OrderBy(c => c["step_number"]!.GetValue<long>()).ToArray();
        Assert.Equal(Enumerable.Range(1, 10).Select(i => (long)i * 2), checkpoints.Select(c => c["step_number"]!.GetValue<long>()));
        Assert.All(checkpoints, c =>
        {
            Assert.NotNull(c["metrics"]!["valid_loss"]);
            Assert.InRange(c["metrics"]!["valid_mean_token_accuracy"]!.GetValue<double>(), 0, 1);
        });
        var firstLoss = checkpoints[0]["metrics"]!["train_loss"]!.GetValue<double>();
        var lastLoss = checkpoints[^1]["metrics"]!["train_loss"]!.GetValue<double>();
        Assert.True(lastLoss < firstLoss, $"train loss did not fall: {firstLoss} -> {lastLoss}");

        // The model is registered and listed; retention kept the last two and the best.
        var model = done["fine_tuned_model"]!.GetValue<string>();
        Assert.StartsWith("ft:tiny-base:", model, StringComparison.Ordinal);
        var card = JsonNode.Parse(await client.GetStringAsync($"/v1/models/{model}"))!;
        Assert.Equal(id, card["job"]!.GetValue<string>());
        Assert.Equal("tiny-base", card["root"]!.GetValue<string>());
        // The adapter placed for it is in the base model's dtype (bf16), which mistral-inference requires.
        using (var adapter = Atelier.Modeling.SafeTensors.SafeTensorsFile.Open(Path.Combine(server.DataDirectory, "blobs", "local", "objects", "job", id, "adapter", "lora.safetensors")))
        {
            Assert.All(adapter.Tensors.Values, t => Assert.Equal(Atelier.Modeling.SafeTensors.SafeTensorDType.BF16, t.DType));
        }

        var retained = JsonNode.Parse(await client.GetStringAsync($"/api/v1/checkpoints?job_id={id}"))!["data"]!.AsArray();
        Assert.InRange(retained.Count, 2, 3);
        Assert.Contains(retained, c => c!["step_number"]!.GetValue<long>() == 20);

        // The job's history keeps every checkpoint's metrics and says which ones retention pruned.
        var pruned = checkpoints.Where(c => c["pruned"]!.GetValue<bool>()).Select(c => c["step_number"]!.GetValue<long>()).ToHashSet();
        Assert.Equal(10 - retained.Count, pruned.Count);
        Assert.All(retained, c => Assert.DoesNotContain(c!["step_number"]!.GetValue<long>(), pruned));

        // Refreshing the expected duration from the measured steps keeps the rest of the plan intact
        // (the estimate itself is checked against a manual clock in FineTuningPreparationTests).
        Assert.True(metadata["expected_duration_seconds"]!.GetValue<long>() >= 1, metadata.ToJsonString());
        Assert.Equal(48, metadata["data_curation"]!["examples_read"]!.GetValue<long>());

        // Each durable checkpoint is an event with its stall, and the training shows in /metrics.
        var checkpointEvents = done["events"]!.AsArray().Where(e => e!["name"]!.GetValue<string>() == "checkpoint").ToArray();
        Assert.Equal(10, checkpointEvents.Length);
        Assert.All(checkpointEvents, e => Assert.True(e!["data"]!["stall_ms"]!.GetValue<double>() >= 0));
        var metrics = await client.GetStringAsync("/metrics");
        Assert.Contains("atelier_training_steps", metrics, StringComparison.Ordinal);
        Assert.Contains("atelier_checkpoint_stall", metrics, StringComparison.Ordinal);

        // Neither an admin nor a member of another workspace can see, steer or restore any of it.
        foreach (var role in new[] { "admin", "member" })
        {
            using var stranger = server.Client(await server.CreateKeyAsync("other-team", role));
            var probes = new (HttpMethod Method, string Path)[]
            {
                (HttpMethod.Get, $"/v1/fine_tuning/jobs/{id}"),
                (HttpMethod.Post, $"/v1/fine_tuning/jobs/{id}/cancel"),
                (HttpMethod.Post, $"/v1/fine_tuning/jobs/{id}/start"),
                (HttpMethod.Get, $"/api/v1/jobs/{id}/data-report"),
                (HttpMethod.Get, $"/api/v1/jobs/{id}/data-report/dropped"),
                (HttpMethod.Get, $"/api/v1/checkpoints/{id}/20"),
                (HttpMethod.Post, $"/api/v1/checkpoints/{id}/20/restore"),
                (HttpMethod.Delete, $"/api/v1/checkpoints/{id}/20"),
                (HttpMethod.Get, $"/v1/models/{model}"),
                (HttpMethod.Delete, $"/v1/models/{model}"),
            };
            foreach (var (method, path) in probes)
            {
                using var response = await stranger.SendAsync(new HttpRequestMessage(method, path));
                Assert.True(response.StatusCode == HttpStatusCode.NotFound, $"{role}: {method} {path} -> {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
            }

            using (var listed = await stranger.GetAsync($"/api/v1/checkpoints?job_id={id}"))
            {
                Assert.Equal(HttpStatusCode.NotFound, listed.StatusCode);
            }

            Assert.DoesNotContain(id, await stranger.GetStringAsync("/api/v1/checkpoints"), StringComparison.Ordinal);
            Assert.DoesNotContain(id, await stranger.GetStringAsync("/v1/fine_tuning/jobs"), StringComparison.Ordinal);
        }

        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/api/v1/checkpoints/{id}/20")).StatusCode);
    }

    [Fact]
    public async Task Job_WithoutAutoStart_WaitsValidated_ThenCancelIsImmediate()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-base"));
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", TestModels.TrainingLines());
        var (_, created) = await PostAsync(client, "/v1/fine_tuning/jobs", Request("tiny-base", train, autoStart: false));
        var id = created["id"]!.GetValue<string>();
        var validated = await WaitAsync(client, id, "VALIDATED");
        Assert.Equal(12, validated["hyperparameters"]!["training_steps"]!.GetValue<int>());

        var (status, cancelled) = await PostAsync(client, $"/v1/fine_tuning/jobs/{id}/cancel", null);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("CANCELLED", cancelled["status"]!.GetValue<string>());

        // A cancelled job cannot be started.
        var (startStatus, problem) = await PostAsync(client, $"/v1/fine_tuning/jobs/{id}/start", null);
        Assert.True(startStatus == HttpStatusCode.Conflict, problem.ToJsonString());
    }

    [Fact]
    public async Task BadRequests_GetClear4xx_AndCreateNoJob()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-base"));
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", TestModels.TrainingLines());
        var batch = await ApiRequests.UploadAsync(client, "batch.jsonl", ["{\"custom_id\":\"1\",\"body\":{}}"], "batch");

        var (s1, b1) = await PostAsync(client, "/v1/fine_tuning/jobs", Request("no-such-model", train));
        Assert.Equal(HttpStatusCode.NotFound, s1);
        Assert.Contains("no-such-model", b1["message"]!.GetValue<string>(), StringComparison.Ordinal);

        var (s2, b2) = await PostAsync(client, "/v1/fine_tuning/jobs", Request("tiny-base", "00000000-0000-0000-0000-000000000000"));
        Assert.Equal(HttpStatusCode.NotFound, s2);
        Assert.Contains("00000000-0000-0000-0000-000000000000", b2["message"]!.GetValue<string>(), StringComparison.Ordinal);

        var (s3, b3) = await PostAsync(client, "/v1/fine_tuning/jobs", Request("tiny-base", batch));
        Assert.Equal(HttpStatusCode.UnprocessableEntity, s3);
        Assert.Contains("training_files[0].file_id", b3.ToJsonString(), StringComparison.Ordinal);
        Assert.Contains("purpose 'batch'", b3["message"]!.GetValue<string>(), StringComparison.Ordinal);

        var (s4, b4) = await PostAsync(client, "/v1/fine_tuning/jobs", new
        {
            model = "tiny-base",
            training_files = new[] { new { file_id = train, weight = 1 } },
            hyperparameters = new { training_steps = 0, learning_rate = 5.0, warmup_fraction = 1.5 },
        });
        Assert.Equal(HttpStatusCode.UnprocessableEntity, s4);
        var fields = b4["problems"]!.AsArray().Select(p => p!["field"]!.GetValue<string>()).ToArray();
        Assert.Equal(["hyperparameters.training_steps", "hyperparameters.learning_rate", "hyperparameters.warmup_fraction"], fields);

        using var malformed = await client.PostAsync("/v1/fine_tuning/jobs", new StringContent("{\"model\": ", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, malformed.StatusCode);

        var list = JsonNode.Parse(await client.GetStringAsync("/v1/fine_tuning/jobs"))!;
        Assert.Equal(0, list["total"]!.GetValue<long>());
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/v1/fine_tuning/jobs/nope")).StatusCode);
    }

    [Fact]
    public async Task EuOnlyJob_NeverWritesACheckpointByteToAUsReplica_AndTheRefusalIsAudited()
    {
        // Checkpoints go to the local on-prem EU location first, then to a US cloud replica;
        // the job's data is EU-only, so every US placement must be refused.
        await using var server = await TestServer.StartAsync(c => c with
        {
            Locations = [.. c.Locations, new Atelier.Core.Residency.LocationDescriptor { Id = "us-cloud", Uri = "blobs/us-cloud", Country = "US", OnPrem = false, Operator = "hyperscaler" }],
            Defaults = c.Defaults with { CheckpointLocations = ["local", "us-cloud"] },
        });
        using var client = server.Client();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-base"));
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", TestModels.TrainingLines());
        var (_, created) = await PostAsync(client, "/v1/fine_tuning/jobs", Request("tiny-base", train, steps: 6));
        var id = created["id"]!.GetValue<string>();
        var done = await WaitAsync(client, id, "SUCCESS");
        Assert.Equal(6, done["checkpoints"]!.AsArray().Count);

        var us = Path.Combine(server.DataDirectory, "blobs", "us-cloud");
        Assert.Empty(Directory.Exists(us) ? Directory.EnumerateFiles(us, "*", SearchOption.AllDirectories) : []);
        var checkpoint = JsonNode.Parse(await client.GetStringAsync($"/api/v1/checkpoints/{id}/6"))!;
        Assert.Equal(["local"], checkpoint["locations"]!.AsArray().Select(l => l!.GetValue<string>()));
        Assert.Contains("checkpoints", checkpoint["policy"]!.GetValue<string>(), StringComparison.Ordinal);

        var refusals = server.Audit.Tail(10_000).Where(e => e.Type == "placement_refused").ToArray();
        Assert.NotEmpty(refusals);
        Assert.All(refusals, r => Assert.Equal("us-cloud", r.Location));
        Assert.Contains(refusals, r => r.ArtifactId?.Contains(id, StringComparison.Ordinal) == true);
        Assert.DoesNotContain(server.Audit.Tail(10_000), e => e.Type == "placement" && e.Location == "us-cloud");
        Assert.True(server.Audit.Verify().Valid);
    }

    [Fact]
    public async Task SecondJob_WaitsQueuedForTheOnlySlot_ThenRuns()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-base"));
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", TestModels.TrainingLines());
        var (_, first) = await PostAsync(client, "/v1/fine_tuning/jobs", Request("tiny-base", train, steps: 100_000));
        var firstId = first["id"]!.GetValue<string>();
        await WaitAsync(client, firstId, "RUNNING");
        var (_, second) = await PostAsync(client, "/v1/fine_tuning/jobs", Request("tiny-base", train, steps: 4));
        var secondId = second["id"]!.GetValue<string>();

        // Validated and started, it waits for the slot the first job holds.
        var deadline = Stopwatch.StartNew();
        JsonNode waiting;
        do
        {
            waiting = JsonNode.Parse(await client.GetStringAsync($"/v1/fine_tuning/jobs/{secondId}"))!;
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(120), waiting.ToJsonString());
            await Task.Delay(50);
        }
        while (waiting["metadata"] is null || waiting["status"]!.GetValue<string>() != "QUEUED");

        await Task.Delay(500);
        Assert.Equal("QUEUED", JsonNode.Parse(await client.GetStringAsync($"/v1/fine_tuning/jobs/{secondId}"))!["status"]!.GetValue<string>());

        await PostAsync(client, $"/v1/fine_tuning/jobs/{firstId}/cancel", null);
        await WaitAsync(client, firstId, "CANCELLED");
        var done = await WaitAsync(client, secondId, "SUCCESS");
        Assert.Contains(done["events"]!.AsArray(), e => e!["name"]!.GetValue<string>() == "placed");
    }

    [Fact]
    public async Task RestoreCheckpoint_IntoANewJob_ContinuesFromItsStep()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-base"));
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", TestModels.TrainingLines());
        var (_, created) = await PostAsync(client, "/v1/fine_tuning/jobs", Request("tiny-base", train, steps: 10));
        var source = created["id"]!.GetValue<string>();
        await WaitAsync(client, source, "SUCCESS");

        // The training file is the job's lineage: deleting it is refused, so the restore below can read it.
        using (var refused = await client.DeleteAsync($"/v1/files/{train}"))
        {
            Assert.Equal(HttpStatusCode.Conflict, refused.StatusCode);
        }

        var (status, restored) = await PostAsync(client, $"/api/v1/checkpoints/{source}/10/restore", new { training_steps = 14 });
        Assert.True(status == HttpStatusCode.Created, restored.ToJsonString());
        var id = restored["id"]!.GetValue<string>();
        var done = await WaitAsync(client, id, "SUCCESS");
        var resumed = done["events"]!.AsArray().Single(e => e!["name"]!.GetValue<string>() == "resumed");
        Assert.Equal(10, resumed!["data"]!["from_step"]!.GetValue<long>());
        Assert.Equal([14L, 12L], done["checkpoints"]!.AsArray().Select(c => c!["step_number"]!.GetValue<long>()));

        var (missing, _) = await PostAsync(client, $"/api/v1/checkpoints/{source}/3/restore", null);
        Assert.Equal(HttpStatusCode.NotFound, missing);
        using var deleted = await client.DeleteAsync($"/api/v1/checkpoints/{source}/10");
        Assert.Equal(HttpStatusCode.OK, deleted.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync($"/api/v1/checkpoints/{source}/10")).StatusCode);
    }

    [Fact]
    public async Task Scheduler_PlacesTheJobOnTheNodeHoldingItsData()
    {
        // Two racks; the job's data lives on a drive of node-b, which offers a slot as well.
        await using var server = await TestServer.StartAsync(c => c with
        {
            Sites = [new Atelier.Core.Topology.Site("local-site", "FR", [new Atelier.Core.Topology.Rack("rack-0", [Environment.MachineName]), new Atelier.Core.Topology.Rack("rack-1", ["node-b"])])],
            Locations = [.. c.Locations.Select(l => l with { Rack = "rack-1", Node = "node-b" })],
        });
        var grains = (Orleans.IGrainFactory)server.Services.GetService(typeof(Orleans.IGrainFactory))!;
        await grains.GetGrain<Atelier.Cluster.Jobs.IJobSchedulerGrain>(0).RegisterNodeAsync("node-b", 1);
        using var client = server.Client();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-base"));
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", TestModels.TrainingLines());
        var (_, created) = await PostAsync(client, "/v1/fine_tuning/jobs", Request("tiny-base", train, steps: 2));
        var done = await WaitAsync(client, created["id"]!.GetValue<string>(), "SUCCESS");
        var placed = done["events"]!.AsArray().Single(e => e!["name"]!.GetValue<string>() == "placed")!;
        Assert.Equal("node-b", placed["data"]!["node"]!.GetValue<string>());
        Assert.Equal("node-b", placed["data"]!["data_node"]!.GetValue<string>());

        var state = await grains.GetGrain<Atelier.Cluster.Jobs.IJobSchedulerGrain>(0).GetStateAsync();
        Assert.Equal(new[] { "node-b", Environment.MachineName }.Order(StringComparer.Ordinal), state.Nodes.Select(n => n.Node));
        Assert.Empty(state.Running);
    }
}
