using System.Net;
using System.Text.Json.Nodes;

namespace Atelier.Server.Tests;

/// <summary>
/// What curation does to a job's data, as a user of the jobs API sees it: real datasets share a
/// system prompt and tool schemas between training and validation files, and that is not
/// contamination; what curation drops is counted in the job and listed in its data report.
/// </summary>
[Trait("Category", "Slow")]
public sealed class JobsCurationTests
{
    private const string SystemPrompt =
        "You are the assistant of the Atelier municipal library. Answer in one short sentence, quote the catalogue when you " +
        "can, never invent opening hours, and send questions about fines or lost cards to the front desk staff.";

    private static readonly JsonArray Tools = JsonNode.Parse(
        "[{\"type\":\"function\",\"function\":{\"name\":\"search_catalogue\",\"description\":\"Search the library catalogue by title, " +
        "author or subject and return the matching books with their shelf marks\",\"parameters\":{\"type\":\"object\",\"properties\":" +
        "{\"query\":{\"type\":\"string\"}},\"required\":[\"query\"]}}}]")!.AsArray();

    private static string Example(string user, string assistant) => new JsonObject
    {
        ["messages"] = new JsonArray(
            new JsonObject { ["role"] = "system", ["content"] = SystemPrompt },
            new JsonObject { ["role"] = "user", ["content"] = user },
            new JsonObject { ["role"] = "assistant", ["content"] = assistant }),
        ["tools"] = Tools.DeepClone(),
    }.ToJsonString();

    private static IEnumerable<string> Examples(string prefix, int count, int start = 0)
    {
        string[] subjects = ["astronomy", "botany", "cooking", "geology", "history", "music", "poetry", "sailing"];
        for (var i = start; i < start + count; i++)
        {
            var subject = subjects[i % subjects.Length];
            yield return Example($"{prefix} {i}: a book about {subject}?", $"Try shelf {subject[0]}{i} for {subject} volume {i}.");
        }
    }

    private static object Request(string train, string valid, bool autoStart = false, double? maxDropped = null) => new
    {
        model = "tiny-base",
        training_files = new[] { new { file_id = train, weight = 1 } },
        validation_files = new[] { valid },
        hyperparameters = new { training_steps = 4, learning_rate = 1e-3, seq_len = 128 },
        auto_start = autoStart,
        max_curation_drop_fraction = maxDropped,
    };

    [Fact]
    public async Task Job_WhoseFilesShareASystemPromptAndTools_ValidatesWithEveryExampleAndReportsTheCounts()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-base"));
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", Examples("Question", 80));
        var valid = await ApiRequests.UploadAsync(client, "valid.jsonl", Examples("Eval question", 8, start: 1000));

        var (status, created) = await JobsApiTests.PostAsync(client, "/v1/fine_tuning/jobs", Request(train, valid, autoStart: true));
        Assert.True(status == HttpStatusCode.OK, created.ToJsonString());
        var done = await JobsApiTests.WaitAsync(client, created["id"]!.GetValue<string>(), "SUCCESS");

        var curation = done["metadata"]!["data_curation"]!;
        Assert.Equal(80, curation["examples_read"]!.GetValue<long>());
        Assert.Equal(80, curation["examples_kept"]!.GetValue<long>());
        Assert.Equal(0, curation["examples_dropped"]!.GetValue<long>());
        Assert.Empty(curation["dropped_by_reason"]!.AsObject());

        // The counts equal the data report's, and the event says the same.
        var report = JsonNode.Parse(await client.GetStringAsync(curation["report"]!.GetValue<string>()))!["counters"]!;
        Assert.Equal(report["examples_kept"]!.GetValue<long>(), curation["examples_kept"]!.GetValue<long>());
        Assert.Equal(report["tokens"]!.GetValue<long>(), curation["tokens_kept"]!.GetValue<long>());
        Assert.Equal(8, report["eval_items"]!.GetValue<long>());
        var curated = Assert.Single(done["events"]!.AsArray(), e => e!["name"]!.GetValue<string>() == "data-curated")!;
        Assert.Equal(80, curated["data"]!["examples_kept"]!.GetValue<long>());
    }

    [Fact]
    public async Task Job_WhoseDataCurationDropsMoreThanAllowed_FailsValidationNamingTheCounts_UnlessTheJobAllowsIt()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-base"));

        // 10 distinct examples, each repeated 3 times, and one that leaks a validation answer:
        // curation keeps 10 of 31 (drops 20 exact duplicates and 1 contaminated).
        var distinct = Examples("Question", 10).ToList();
        var lines = distinct.Concat(distinct).Concat(distinct).ToList();
        string[] answer = ["the", "reading", "room", "on", "the", "second", "floor", "keeps", "the", "maps", "of", "every", "river", "valley", "in", "the", "region"];
        lines.Add(Example("Where are the maps?", "Upstairs: " + string.Join(' ', answer)));
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", lines);
        var valid = await ApiRequests.UploadAsync(client, "valid.jsonl", Examples("Eval question", 4, start: 1000).Append(Example("Which room has the river maps?", string.Join(' ', answer))));

        var (_, refused) = await JobsApiTests.PostAsync(client, "/v1/fine_tuning/jobs", Request(train, valid));
        var failed = await JobsApiTests.WaitAsync(client, refused["id"]!.GetValue<string>(), "FAILED_VALIDATION");
        var error = failed.ToJsonString();
        Assert.Contains("Curation dropped 67.7% of the training examples, more than the 50.0% allowed (max_curation_drop_fraction): kept 10 of 31 examples; dropped 1 contaminated, 20 exact_duplicate.", error, StringComparison.Ordinal);

        // The report of the failed job lists every dropped example with its reason.
        var dropped = (await client.GetStringAsync($"/api/v1/jobs/{refused["id"]}/data-report/dropped")).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(21, dropped.Length);
        Assert.Equal(20, dropped.Count(d => JsonNode.Parse(d)!["reason"]!.GetValue<string>() == "exact_duplicate"));
        var leak = Assert.Single(dropped, d => JsonNode.Parse(d)!["reason"]!.GetValue<string>() == "contaminated");
        Assert.Equal(31, JsonNode.Parse(leak)!["source_line"]!.GetValue<long>());

        // A job that allows it trains on what is left, and says what was dropped.
        var (_, allowed) = await JobsApiTests.PostAsync(client, "/v1/fine_tuning/jobs", Request(train, valid, maxDropped: 0.8));
        var validated = await JobsApiTests.WaitAsync(client, allowed["id"]!.GetValue<string>(), "VALIDATED");
        var curation = validated["metadata"]!["data_curation"]!;
        Assert.Equal(10, curation["examples_kept"]!.GetValue<long>());
        Assert.Equal(20, curation["dropped_by_reason"]!["exact_duplicate"]!.GetValue<long>());
        Assert.Equal(1, curation["dropped_by_reason"]!["contaminated"]!.GetValue<long>());

        // Out of range is a 422 naming the field; a job not yet curated has no report.
        var (badStatus, bad) = await JobsApiTests.PostAsync(client, "/v1/fine_tuning/jobs", Request(train, valid, maxDropped: 1.5));
        Assert.Equal(HttpStatusCode.UnprocessableEntity, badStatus);
        Assert.Contains("max_curation_drop_fraction", bad.ToJsonString(), StringComparison.Ordinal);
        using var missing = await client.GetAsync("/api/v1/jobs/ftjob-none/data-report");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Contains("ftjob-none", await missing.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Job_OnADatasetVersionBuiltWithTheModel_TrainsOnItsShards_AndTheModelsLineageNamesIt()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-base"));
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", Examples("Question", 24).Concat(Examples("Question", 4)));
        var valid = await ApiRequests.UploadAsync(client, "valid.jsonl", Examples("Eval question", 4, start: 1000));

        // Built with the model's tokeniser at seq_len 128: the stored request says 128 in both places.
        var (status, created) = await JobsApiTests.PostAsync(client, "/api/v1/datasets", new { training_files = new[] { train }, validation_files = new[] { valid }, model = "tiny-base", seq_len = 128 });
        Assert.True(status == HttpStatusCode.Accepted, created.ToJsonString());
        Assert.Equal(128, created["request"]!["options"]!["sequence_length"]!.GetValue<int>());
        var dataset = await ApiRequests.WaitForDatasetAsync(client, created["id"]!.GetValue<string>());
        Assert.True(dataset["status"]!.GetValue<string>() == "succeeded", dataset.ToJsonString());
        var datasetId = dataset["id"]!.GetValue<string>();

        // The list shows the finished build's counts, not a stale early stage.
        var listed = Assert.Single(JsonNode.Parse(await client.GetStringAsync("/api/v1/datasets"))!["data"]!.AsArray(), d => d!["id"]!.GetValue<string>() == datasetId)!;
        Assert.Equal("done", listed["progress"]!["stage"]!.GetValue<string>());
        Assert.Equal(24, listed["progress"]!["examples_kept"]!.GetValue<long>());

        // A dataset built with another tokeniser, or asked at another window length, is refused with the reason.
        var (_, o200k) = await JobsApiTests.PostAsync(client, "/api/v1/datasets", new { training_files = new[] { train }, seq_len = 128 });
        var other = await ApiRequests.WaitForDatasetAsync(client, o200k["id"]!.GetValue<string>());
        var (wrongStatus, wrong) = await JobsApiTests.PostAsync(client, "/v1/fine_tuning/jobs", new { model = "tiny-base", dataset_id = other["id"]!.GetValue<string>(), hyperparameters = new { training_steps = 4 } });
        Assert.Equal(HttpStatusCode.UnprocessableEntity, wrongStatus);
        Assert.Contains("'o200k_base', not with that of model 'tiny-base'", wrong["message"]!.GetValue<string>(), StringComparison.Ordinal);
        var (lengthStatus, length) = await JobsApiTests.PostAsync(client, "/v1/fine_tuning/jobs", new { model = "tiny-base", dataset_id = datasetId, hyperparameters = new { training_steps = 4, seq_len = 256 } });
        Assert.Equal(HttpStatusCode.UnprocessableEntity, lengthStatus);
        Assert.Contains("hyperparameters.seq_len", length.ToJsonString(), StringComparison.Ordinal);
        var (bothStatus, _) = await JobsApiTests.PostAsync(client, "/v1/fine_tuning/jobs", new { model = "tiny-base", dataset_id = datasetId, training_files = new[] { new { file_id = train, weight = 1 } } });
        Assert.Equal(HttpStatusCode.UnprocessableEntity, bothStatus);

        var (jobStatus, job) = await JobsApiTests.PostAsync(client, "/v1/fine_tuning/jobs", new { model = "tiny-base", dataset_id = datasetId, validation_files = new[] { valid }, hyperparameters = new { training_steps = 4, learning_rate = 1e-3 } });
        Assert.True(jobStatus == HttpStatusCode.OK, job.ToJsonString());
        Assert.Equal([train], job["training_files"]!.AsArray().Select(f => f!.GetValue<string>()));
        var done = await JobsApiTests.WaitAsync(client, job["id"]!.GetValue<string>(), "SUCCESS");

        // The job trained on the version's shards at its window length, and counts what it kept.
        Assert.Equal(128, done["hyperparameters"]!["seq_len"]!.GetValue<int>());
        var curation = done["metadata"]!["data_curation"]!;
        var counters = dataset["summary"]!["manifest"]!["counters"]!;
        Assert.Equal(counters["examples_kept"]!.GetValue<long>(), curation["examples_kept"]!.GetValue<long>());
        Assert.Equal(4, curation["dropped_by_reason"]!["exact_duplicate"]!.GetValue<long>());
        Assert.Equal($"/api/v1/datasets/{datasetId}/files/report.json", curation["report"]!.GetValue<string>());
        Assert.Equal(counters["tokens"]!.GetValue<long>(), done["metadata"]!["data_tokens"]!.GetValue<long>());

        var model = JsonNode.Parse(await client.GetStringAsync($"/api/v1/models/{done["fine_tuned_model"]}"))!;
        Assert.Equal(datasetId, model["lineage"]!["dataset_id"]!.GetValue<string>());
        Assert.Equal([train], model["lineage"]!["training_file_ids"]!.AsArray().Select(f => f!.GetValue<string>()));
    }
}
