using System.Net;
using System.Text.Json.Nodes;
using Atelier.Catalog;

namespace Atelier.Server.Tests;

/// <summary>
/// Deleting an artifact that others derive from (files used by datasets and jobs, datasets used by
/// jobs, models that jobs, datasets and fine-tuned models come from) answers 409, names what
/// derives from it and deletes nothing; deleting in dependency order works.
/// </summary>
public sealed class LineageApiTests
{
    private static async Task<(HttpStatusCode Status, JsonNode Body)> DeleteAsync(HttpClient client, string path)
    {
        using var response = await client.DeleteAsync(path);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonNode.Parse(text.Length == 0 ? "{}" : text)!);
    }

    private static (string Kind, string Id)[] Derived(JsonNode body) =>
        [.. body["derived"]!.AsArray().Select(d => (d!["kind"]!.GetValue<string>(), d["id"]!.GetValue<string>()))];

    private static async Task AssertRefusedAsync(HttpClient client, string path, params (string Kind, string Id)[] derived)
    {
        var (status, body) = await DeleteAsync(client, path);
        Assert.True(status == HttpStatusCode.Conflict, $"DELETE {path}: {(int)status} {body.ToJsonString()}");
        Assert.Equal(derived.OrderBy(d => d.Id, StringComparer.Ordinal), Derived(body).OrderBy(d => d.Id, StringComparer.Ordinal));
        var message = (body["message"] ?? body["detail"])!.GetValue<string>();
        Assert.Contains("erasure flow", message, StringComparison.Ordinal);
        Assert.All(derived, d => Assert.Contains(d.Id, message, StringComparison.Ordinal));
    }

    private static async Task<string> CreateJobAsync(HttpClient client, object request)
    {
        var (status, job) = await JobsApiTests.PostAsync(client, "/v1/fine_tuning/jobs", request);
        Assert.True(status == HttpStatusCode.OK, job.ToJsonString());
        return job["id"]!.GetValue<string>();
    }

    private static async Task<string> BuildDatasetAsync(HttpClient client, object request)
    {
        var (status, created) = await JobsApiTests.PostAsync(client, "/api/v1/datasets", request);
        Assert.True(status == HttpStatusCode.Accepted, created.ToJsonString());
        var dataset = await ApiRequests.WaitForDatasetAsync(client, created["id"]!.GetValue<string>());
        Assert.True(dataset["status"]!.GetValue<string>() == "succeeded", dataset.ToJsonString());
        return dataset["id"]!.GetValue<string>();
    }

    [Fact]
    public async Task DeleteFile_UsedByAJobOrADataset_Returns409NamingThemAndKeepsTheFile()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-base"));
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", TestModels.TrainingLines());
        var valid = await ApiRequests.UploadAsync(client, "valid.jsonl", TestModels.TrainingLines(12));
        var source = await ApiRequests.UploadAsync(client, "source.jsonl", TestModels.TrainingLines(24));
        var unused = await ApiRequests.UploadAsync(client, "unused.jsonl", TestModels.TrainingLines(4));
        var job = await CreateJobAsync(client, JobsApiTests.Request("tiny-base", train, valid, autoStart: false));
        var dataset = await BuildDatasetAsync(client, new { training_files = new[] { source }, seq_len = 64 });

        await AssertRefusedAsync(client, $"/v1/files/{train}", ("fine_tuning_job", job));
        await AssertRefusedAsync(client, $"/v1/files/{valid}", ("fine_tuning_job", job));
        await AssertRefusedAsync(client, $"/v1/files/{source}", ("dataset", dataset));

        // Nothing was deleted: rows and bytes are all there.
        foreach (var id in new[] { train, valid, source })
        {
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/v1/files/{id}")).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/v1/files/{id}/content")).StatusCode);
        }

        // In dependency order it works: the dataset first, then the file it was built from.
        Assert.Equal(HttpStatusCode.OK, (await DeleteAsync(client, $"/api/v1/datasets/{dataset}")).Status);
        Assert.Equal(HttpStatusCode.OK, (await DeleteAsync(client, $"/v1/files/{source}")).Status);
        Assert.Equal(HttpStatusCode.OK, (await DeleteAsync(client, $"/v1/files/{unused}")).Status);
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync($"/v1/files/{source}")).StatusCode);
    }

    [Fact]
    public async Task DeleteDatasetFileOrModel_UnderAJobOnTheDataset_Returns409NamingEverythingDerived()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-base"));
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", TestModels.TrainingLines());
        var dataset = await BuildDatasetAsync(client, new { training_files = new[] { train }, model = "tiny-base", seq_len = 64 });
        var job = await CreateJobAsync(client, new { model = "tiny-base", dataset_id = dataset, hyperparameters = new { training_steps = 2, seq_len = 64 }, auto_start = false });

        // On /api/v1 the refusal is problem details, with the same list.
        await AssertRefusedAsync(client, $"/api/v1/datasets/{dataset}", ("fine_tuning_job", job));
        await AssertRefusedAsync(client, $"/v1/files/{train}", ("dataset", dataset), ("fine_tuning_job", job));
        await AssertRefusedAsync(client, "/api/v1/models/tiny-base", ("dataset", dataset), ("fine_tuning_job", job));

        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/api/v1/datasets/{dataset}/files/manifest.json")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/api/v1/models/tiny-base")).StatusCode);
        Assert.NotEmpty(await server.Locations.ListKeysAsync("local", "model/tiny-base/", CancellationToken.None).ToListAsync());
    }

    [Fact]
    public async Task DeleteModel_WithAFineTunedModelOrAJobOfIt_Returns409NamingThem()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server));
        var fineTuned = await ModelsApiTests.RegisterFineTunedAsync(server, "default", "job-registered");
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", TestModels.TrainingLines());
        var job = await CreateJobAsync(client, JobsApiTests.Request("tiny-model", train, autoStart: false));

        await AssertRefusedAsync(client, "/api/v1/models/tiny-model", ("model", fineTuned.Id), ("fine_tuning_job", job));

        // Jobs cannot be created on a fine-tuned model through the API today; a job row that names
        // one (as an older or future version could write; cancelled, so nothing runs it) still protects it.
        var now = server.Service<TimeProvider>().GetUtcNow().ToUnixTimeSeconds();
        await server.Service<IJobRepository>().InsertAsync(new JobRecord
        {
            Id = "job-on-fine-tuned",
            WorkspaceId = fineTuned.WorkspaceId!,
            Model = fineTuned.Id,
            Status = "CANCELLED",
            AutoStart = false,
            RequestJson = "{}",
            Policy = "default",
            LocationId = "local",
            CreatedAt = now,
            ModifiedAt = now,
            CreatedBy = "test",
        });
        await AssertRefusedAsync(client, "/v1/models/" + Uri.EscapeDataString(fineTuned.Id), ("fine_tuning_job", "job-on-fine-tuned"));
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/v1/models/" + Uri.EscapeDataString(fineTuned.Id))).StatusCode);
    }

    [Fact]
    public async Task DeleteCheckpoint_ThatAPendingRestoreStartsFrom_Returns409NamingIt_AndWorksOnceItIsCancelled()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-base"));
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", TestModels.TrainingLines());
        var source = await CreateJobAsync(client, JobsApiTests.Request("tiny-base", train, steps: 4));
        await JobsApiTests.WaitAsync(client, source, "SUCCESS");

        var (status, restored) = await JobsApiTests.PostAsync(client, $"/api/v1/checkpoints/{source}/4/restore", new { training_steps = 6, auto_start = false });
        Assert.True(status == HttpStatusCode.Created, restored.ToJsonString());
        var pending = restored["id"]!.GetValue<string>();

        await AssertRefusedAsync(client, $"/api/v1/checkpoints/{source}/4", ("fine_tuning_job", pending));
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync($"/api/v1/checkpoints/{source}/4")).StatusCode);

        Assert.Equal(HttpStatusCode.OK, (await JobsApiTests.PostAsync(client, $"/v1/fine_tuning/jobs/{pending}/cancel", null)).Status);
        await JobsApiTests.WaitAsync(client, pending, "CANCELLED");
        Assert.Equal(HttpStatusCode.OK, (await DeleteAsync(client, $"/api/v1/checkpoints/{source}/4")).Status);
    }
}
