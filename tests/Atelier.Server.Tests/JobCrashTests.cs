using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using Atelier.Core;

namespace Atelier.Server.Tests;

/// <summary>
/// Kills a real <c>atelier serve</c> with SIGKILL while a job trains, and again while it writes a
/// checkpoint; after each restart the job resumes from its last committed checkpoint, and its final
/// adapter is bit-identical to that of a run that was never interrupted.
/// </summary>
[Trait("Category", "Slow")]
public sealed class JobCrashTests
{
    private const int Steps = 48;

    [Fact]
    public async Task KillDashNineMidTrainingAndMidCheckpoint_ResumesToTheSameAdapterBitForBit()
    {
        // One model directory for every server of the test, so each imports the same bytes: its
        // folder is the one import root they are configured with.
        var modelDir = TestModels.TinyModel("tiny-base");
        AtelierConfig WithModelRoot(AtelierConfig config) => config with { Models = new ModelsConfig { ImportRoots = [Path.GetDirectoryName(modelDir)!] } };

        // The reference: the same job, never interrupted.
        byte[] reference;
        await using (var server = await TestServer.StartAsync(WithModelRoot))
        {
            using var client = server.Client();
            var (job, _) = await RunJobAsync(client, modelDir);
            var done = await JobsApiTests.WaitAsync(client, job, "SUCCESS");
            reference = Adapter(server.DataDirectory, job);
            Assert.DoesNotContain(done["events"]!.AsArray(), e => e!["name"]!.GetValue<string>() == "resumed");
        }

        var data = TempDirectory.Create("atelier-job-crash");
        var port = Waits.FreePort();
        var pending = Path.Combine(data, "blobs", "local", "tmp");
        File.WriteAllText(Path.Combine(data, AtelierConfig.FileName), System.Text.Json.JsonSerializer.Serialize(WithModelRoot(AtelierConfig.CreateDefault()), AtelierConfig.SerializerOptions));
        string jobId;

        // First crash: in the middle of training, once two checkpoints are committed.
        using (var server = await ServerProcess.StartAsync(data, port))
        {
            using var client = Client(data, port);
            (jobId, _) = await RunJobAsync(client, modelDir);
            await WaitForCheckpointsAsync(client, jobId, 2);
            server.KillHard();
        }

        // Second crash: while a checkpoint's chunks are being written (a pending write exists).
        // The kill races the write's rename, so it is tried again (a bounded number of times)
        // until a pending write is left behind.
        var tornWrites = 0;
        var kills = 1;
        for (var attempt = 0; attempt < 5 && tornWrites == 0; attempt++)
        {
            using var server = await ServerProcess.StartAsync(data, port);
            using var client = Client(data, port);
            var deadline = Stopwatch.StartNew();
            while (!(Directory.Exists(pending) && Directory.EnumerateFiles(pending).Any()))
            {
                var job = await GetAsync(client, jobId);
                Assert.True(job["status"]!.GetValue<string>() != "SUCCESS", "the job finished before a checkpoint write was caught in progress");
                Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(120), "no checkpoint write was seen in progress: " + job.ToJsonString());
            }

            server.KillNow();
            kills++;
            tornWrites = Directory.EnumerateFiles(pending).Count();
        }

        Assert.True(tornWrites > 0, "no kill landed inside a checkpoint write in 5 attempts");

        // Recovery: the torn write is removed, the job resumes and succeeds.
        using (var server = await ServerProcess.StartAsync(data, port))
        {
            using var client = Client(data, port);
            var done = await JobsApiTests.WaitAsync(client, jobId, "SUCCESS");
            var resumed = done["events"]!.AsArray().Where(e => e!["name"]!.GetValue<string>() == "resumed").ToArray();
            Assert.Equal(kills, resumed.Length);
            Assert.All(resumed, e => Assert.True(e!["data"]!["from_step"]!.GetValue<long>() > 0));
            Assert.Equal(Steps, done["checkpoints"]!.AsArray().Max(c => c!["step_number"]!.GetValue<long>()));

            var adapter = Adapter(data, jobId);
            Assert.True(reference.AsSpan().SequenceEqual(adapter), $"the resumed job's adapter ({adapter.Length} bytes) differs from the uninterrupted run's ({reference.Length} bytes)");
            Assert.Empty(Directory.EnumerateFiles(pending));
            var verify = JsonNode.Parse(await client.GetStringAsync("/api/v1/audit/verify"))!;
            Assert.True(verify["valid"]!.GetValue<bool>());
            server.Stop();
        }
    }

    private static async Task<(string JobId, string FileId)> RunJobAsync(HttpClient client, string modelDir)
    {
        using (var import = await client.PostAsync("/api/v1/models/import", new StringContent($$"""{"path":{{System.Text.Json.JsonSerializer.Serialize(modelDir)}}}""", System.Text.Encoding.UTF8, "application/json")))
        {
            Assert.True(import.StatusCode == HttpStatusCode.Created, await import.Content.ReadAsStringAsync());
        }

        var file = await ApiRequests.UploadAsync(client, "train.jsonl", TestModels.TrainingLines());
        var (status, created) = await JobsApiTests.PostAsync(client, "/v1/fine_tuning/jobs", JobsApiTests.Request("tiny-base", file, steps: Steps));
        Assert.True(status == HttpStatusCode.OK, created.ToJsonString());
        return (created["id"]!.GetValue<string>(), file);
    }

    private static async Task WaitForCheckpointsAsync(HttpClient client, string jobId, int count)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var job = await GetAsync(client, jobId);
            if (job["checkpoints"]!.AsArray().Count >= count)
            {
                Assert.Equal("RUNNING", job["status"]!.GetValue<string>());
                return;
            }

            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(240), "no checkpoints: " + job.ToJsonString());
            await Task.Delay(5);
        }
    }

    private static async Task<JsonNode> GetAsync(HttpClient client, string jobId) =>
        JsonNode.Parse(await client.GetStringAsync($"/v1/fine_tuning/jobs/{jobId}"))!;

    private static byte[] Adapter(string data, string jobId) =>
        File.ReadAllBytes(Path.Combine(data, "blobs", "local", "objects", "job", jobId, "adapter", "lora.safetensors"));

    private static HttpClient Client(string data, int port)
    {
        var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", File.ReadAllText(Path.Combine(data, "admin.key")).Trim());
        return client;
    }

}
