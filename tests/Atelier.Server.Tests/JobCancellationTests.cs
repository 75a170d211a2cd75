using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using static Atelier.Server.Tests.JobsApiTests;

namespace Atelier.Server.Tests;

/// <summary>
/// <c>POST /v1/fine_tuning/jobs/{id}/cancel</c> while the job's work runs: the job ends CANCELLED
/// and keeps nothing half-made (issue 11). That a cancel takes effect inside a step, between two
/// layers, is shown deterministically by the trainer's own tests; these show the whole path.
/// </summary>
[Trait("Category", "Slow")]
public sealed class JobCancellationTests
{
    // The tiny model's context is 32,768 tokens: a step over one window this long runs seconds
    // where the usual 64-token step runs milliseconds, so a cancel lands inside a step.
    private const int LongSeqLen = 16_384;

    [Fact]
    public async Task Cancel_WhileALongStepRuns_EndsCancelled_WithNoLaterCheckpointAndNoStaging()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-base"));
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", TestModels.TrainingLines());

        // Four steps, a checkpoint after each. The checkpoint of step 1 is recorded once step 2
        // has trained, just before step 3 starts: from then on a step is running.
        var (status, created) = await PostAsync(client, "/v1/fine_tuning/jobs", new
        {
            model = "tiny-base",
            training_files = new[] { new { file_id = train, weight = 1 } },
            hyperparameters = new { training_steps = 4, learning_rate = 3e-3, seq_len = LongSeqLen },
            auto_start = true,
        });
        Assert.True(status == HttpStatusCode.OK, created.ToJsonString());
        var id = created["id"]!.GetValue<string>();
        await WaitForCheckpointAsync(client, id, step: 1);

        (status, var cancelled) = await PostAsync(client, $"/v1/fine_tuning/jobs/{id}/cancel", null);
        Assert.True(status == HttpStatusCode.OK, cancelled.ToJsonString());
        var done = await WaitAsync(client, id, "CANCELLED");

        // No step that started after step 2 left a checkpoint: the one of step 2, snapshotted
        // before the cancel, is either committed (and then recorded) or absent.
        var recorded = Steps(done["checkpoints"]!);
        var stored = Steps(JsonNode.Parse(await client.GetStringAsync($"/api/v1/checkpoints?job_id={id}"))!["data"]!);
        Assert.Subset(new HashSet<long> { 1, 2 }, recorded.ToHashSet());
        Assert.Equal(stored.Order(), recorded.Order());

        // Nothing of the attempt is left half-made: no staged adapter, no placed adapter, no model.
        Assert.False(Directory.Exists(Path.Combine(server.DataDirectory, "staging", "jobs", id)), "the job's staging directory is left behind");
        Assert.False(Directory.Exists(Path.Combine(server.DataDirectory, "blobs", "local", "objects", "job", id, "adapter")), "an adapter was placed");
        Assert.Null(done["fine_tuned_model"]?.GetValue<string>());
    }

    [Fact]
    public async Task Cancel_WhileValidating_StopsTheBuild_AndLeavesNeitherStagingNorPlacedData()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-base"));

        // Enough examples that the build takes a while after it created its staging directory.
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", TestModels.TrainingLines(20_000));
        var (_, created) = await PostAsync(client, "/v1/fine_tuning/jobs", Request("tiny-base", train, steps: 2));
        var id = created["id"]!.GetValue<string>();
        var staging = Path.Combine(server.DataDirectory, "staging", "jobs", id);
        await WaitUntilAsync(() => Directory.Exists(staging), "the validation build to stage its data");

        var (status, cancelled) = await PostAsync(client, $"/v1/fine_tuning/jobs/{id}/cancel", null);
        Assert.True(status == HttpStatusCode.OK, cancelled.ToJsonString());
        Assert.Equal("CANCELLED", cancelled["status"]!.GetValue<string>());

        // The build stops and what it staged goes: a cancelled job's build never resumes.
        await WaitUntilAsync(() => !Directory.Exists(staging), "the cancelled build to remove its staging directory");
        var job = JsonNode.Parse(await client.GetStringAsync($"/v1/fine_tuning/jobs/{id}"))!;
        Assert.Equal("CANCELLED", job["status"]!.GetValue<string>());
        var statuses = job["events"]!.AsArray().Where(e => e!["name"]!.GetValue<string>() == "status-updated").Select(e => e!["data"]!["status"]!.GetValue<string>());
        Assert.Equal(["QUEUED", "VALIDATING", "CANCELLED"], statuses);
        Assert.False(Directory.Exists(Path.Combine(server.DataDirectory, "blobs", "local", "objects", "job", id, "train")), "validation placed training data");
        Assert.Null(job["metadata"]?["train_tokens"]);
    }

    private static long[] Steps(JsonNode checkpoints) =>
        [.. checkpoints.AsArray().Select(c => c!["step_number"]!.GetValue<long>())];

    private static async Task WaitForCheckpointAsync(HttpClient client, string id, long step)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var job = JsonNode.Parse(await client.GetStringAsync($"/v1/fine_tuning/jobs/{id}"))!;
            if (job["checkpoints"] is JsonArray checkpoints && Steps(checkpoints).Contains(step))
            {
                return;
            }

            var status = job["status"]!.GetValue<string>();
            Assert.True(status is not ("FAILED" or "FAILED_VALIDATION" or "CANCELLED" or "SUCCESS"), $"job ended {status} before its checkpoint of step {step}: {job.ToJsonString()}");
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(300), $"no checkpoint of step {step} within 300 s: {job.ToJsonString()}");
            await Task.Delay(20);
        }
    }

    private static async Task WaitUntilAsync(Func<bool> condition, string what)
    {
        var deadline = Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(240), $"waited 240 s for {what}");
            await Task.Delay(10);
        }
    }
}
