using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Atelier.Core.Residency;
using Atelier.Server.WebConsole;
using Microsoft.Playwright;

namespace Atelier.Console.Tests;

/// <summary>
/// The web console (issue 13) in Debian's chromium against a real server: signing in, each page
/// doing its work through the public API, a screenshot of each page, and axe-core finding no
/// serious accessibility violation on any of them. Waits are on what the page shows, never on time.
/// </summary>
[Trait("Category", "Slow")]
public sealed class ConsoleTests
{
    private static readonly string[] Pages = ["overview", "files", "datasets", "jobs", "models", "playground", "collections", "features", "sovereignty"];

    /// <summary>How long a tiny job may take on a loaded machine.</summary>
    private const float JobTimeoutMs = 240_000;

    [Fact]
    public async Task SignIn_RefusesAWrongKey_KeepsTheKeyOutOfTheUrl_AndServesTheConsoleUnderItsSecurityHeaders()
    {
        await using var session = await ConsoleSession.StartAsync();
        var page = session.Page;
        var response = await page.GotoAsync(session.Server.BaseUrl + "/");
        Assert.NotNull(response);
        var headers = await response.AllHeadersAsync();
        Assert.Equal(ConsoleEndpoints.ContentSecurityPolicy, headers["content-security-policy"]);
        Assert.Contains("script-src 'self'", headers["content-security-policy"], StringComparison.Ordinal);
        Assert.Contains("frame-ancestors 'none'", headers["content-security-policy"], StringComparison.Ordinal);
        Assert.Equal("nosniff", headers["x-content-type-options"]);

        await page.GetByLabel("API key").FillAsync("atk_not-a-key");
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        await Assertions.Expect(page.Locator("#sign-in-error")).ToContainTextAsync("not accepted");
        Assert.Null(await page.EvaluateAsync<string?>("() => sessionStorage.getItem('atelier.apiKey')"));

        await page.GetByLabel("API key").FillAsync(session.Server.AdminKey);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        await session.WaitForPageAsync("overview");
        Assert.DoesNotContain(session.Server.AdminKey, page.Url, StringComparison.Ordinal);
        Assert.Equal(session.Server.AdminKey, await page.EvaluateAsync<string>("() => sessionStorage.getItem('atelier.apiKey')"));
        await Assertions.Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Overview" })).ToBeVisibleAsync();
        await Assertions.Expect(page.GetByRole(AriaRole.Navigation, new() { Name = "Console sections" })).ToBeVisibleAsync();

        // A client that does not ask for HTML keeps the one line of text it had.
        using var client = new HttpClient { BaseAddress = new Uri(session.Server.BaseUrl) };
        Assert.Equal(ConsoleEndpoints.PlainTextAnswer, await client.GetStringAsync("/"));

        await page.GetByRole(AriaRole.Button, new() { Name = "Sign out" }).ClickAsync();
        await Assertions.Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Sign in to Atelier" })).ToBeVisibleAsync();
        Assert.Null(await page.EvaluateAsync<string?>("() => sessionStorage.getItem('atelier.apiKey')"));
        session.AssertNoPageErrors();
    }

    [Fact]
    public async Task Upload_OfAFileWithABadLine_ShowsTheLineAndItsProblem_AndAGoodFileIsPreviewedRowByRow()
    {
        await using var session = await ConsoleSession.StartAsync();
        await session.SignInAsync();
        await session.OpenAsync("files");
        var page = session.Page;

        var bad = ApiRequests.Chat("q1", "a1") + "\n{\"messages\": [{\"role\": \"user\"}]}\n" + ApiRequests.Chat("q3", "a3") + "\n";
        await page.GetByLabel("File (JSON lines of chat examples)").SetInputFilesAsync(new FilePayload { Name = "bad.jsonl", MimeType = "application/jsonl", Buffer = Encoding.UTF8.GetBytes(bad) });
        await page.GetByRole(AriaRole.Button, new() { Name = "Upload" }).ClickAsync();
        var problems = page.Locator("#upload-result table");
        await Assertions.Expect(page.Locator("#upload-result [role=alert]")).ToContainTextAsync("refused");
        await Assertions.Expect(problems.Locator("tbody tr").First).ToBeVisibleAsync();
        Assert.Equal("2", (await problems.Locator("tbody tr").First.Locator("td").First.InnerTextAsync()).Trim());
        await session.ScreenshotAsync("files-line-error");

        var good = string.Join("\n", TestModels.TrainingLines(6)) + "\n";
        await page.GetByLabel("File (JSON lines of chat examples)").SetInputFilesAsync(new FilePayload { Name = "good.jsonl", MimeType = "application/jsonl", Buffer = Encoding.UTF8.GetBytes(good) });
        await page.GetByRole(AriaRole.Button, new() { Name = "Upload" }).ClickAsync();
        await Assertions.Expect(page.Locator("#upload-result")).ToContainTextAsync("Uploaded good.jsonl: 6 lines");
        await page.GetByRole(AriaRole.Button, new() { Name = "Preview good.jsonl" }).ClickAsync();
        var preview = page.Locator("#file-preview table tbody tr");
        await Assertions.Expect(preview).ToHaveCountAsync(6);
        await Assertions.Expect(preview.First).ToContainTextAsync("user: Say apple 0.");
        await session.ScreenshotAsync("files-preview");
        session.AssertNoPageErrors();
    }

    [Fact]
    public async Task Dataset_BuiltFromTheConsole_ShowsItsStatusReportAndDrops()
    {
        await using var session = await ConsoleSession.StartAsync();
        using var client = session.Server.Client();

        // Duplicates are dropped by the build: the report and the drops have something to show.
        var lines = TestModels.TrainingLines(12).Concat(TestModels.TrainingLines(4));
        await ApiRequests.UploadAsync(client, "dupes.jsonl", lines);
        await session.SignInAsync();
        await session.OpenAsync("datasets");
        var page = session.Page;
        await page.GetByLabel("Name", new() { Exact = true }).FillAsync("echo-v1");
        await page.GetByLabel("dupes.jsonl", new() { Exact = false }).First.CheckAsync();
        await page.GetByRole(AriaRole.Button, new() { Name = "Build" }).ClickAsync();
        await session.WaitForPageAsync("datasets/ds-");

        await Assertions.Expect(page.Locator("#dataset-status")).ToHaveTextAsync("succeeded", new() { Timeout = JobTimeoutMs });
        var report = page.Locator("#dataset-report");
        await Assertions.Expect(report).ToContainTextAsync("Dropped by reason");
        await Assertions.Expect(report).ToContainTextAsync("exact duplicates");
        await Assertions.Expect(report.GetByRole(AriaRole.Table, new() { Name = "Tokens" })).ToBeVisibleAsync();
        await Assertions.Expect(page.Locator("#dataset-drops table tbody tr")).ToHaveCountAsync(4);
        await session.ScreenshotAsync("dataset-report");
        session.AssertNoPageErrors();
    }

    [Fact]
    public async Task Job_StartedFromTheConsole_PlotsMoreLossPointsWhileItRuns_ThenItsModelShowsLineage_AndThePlaygroundStreamsAnAnswer()
    {
        await using var session = await ConsoleSession.StartAsync();
        using var client = session.Server.Client();
        await TestModels.ImportAsync(session.Server, TestModels.TinyModel(session.Server, "tiny-base"));
        await ApiRequests.UploadAsync(client, "train.jsonl", TestModels.TrainingLines());
        await ApiRequests.UploadAsync(client, "valid.jsonl", TestModels.TrainingLines(4));
        await session.SignInAsync();
        await session.OpenAsync("jobs");
        var page = session.Page;

        var form = page.Locator("#job-form");
        await form.GetByLabel("Base model").SelectOptionAsync("tiny-base");
        await form.GetByRole(AriaRole.Group, new() { Name = "Training files" }).GetByLabel("train.jsonl", new() { Exact = false }).CheckAsync();
        await form.GetByRole(AriaRole.Group, new() { Name = "Validation files" }).GetByLabel("valid.jsonl", new() { Exact = false }).CheckAsync();

        // Ten steps, a checkpoint (and so a point) after each; windows this long make a step slow
        // enough that the page, polling twice a second, sees the points arrive one by one.
        await form.GetByLabel("Training steps").FillAsync("10");
        await form.GetByLabel("Learning rate").FillAsync("0.003");
        await form.GetByLabel("Sequence length (tokens)").FillAsync("8192");
        await form.GetByLabel("Suffix").FillAsync("echo");
        await form.GetByRole(AriaRole.Button, new() { Name = "Create job" }).ClickAsync();
        await session.WaitForPageAsync("jobs/");
        var jobId = (await session.RouteAsync())["jobs/".Length..];

        const string PlottedPoints = "() => document.querySelectorAll('#loss-chart circle.point').length";
        await page.WaitForFunctionAsync($"() => ({PlottedPoints})() > 0", null, new() { Timeout = JobTimeoutMs });
        var seen = await page.EvaluateAsync<int>(PlottedPoints);
        var statusWhenSeen = await page.Locator("#job-status .badge").First.InnerTextAsync();
        await session.ScreenshotAsync("job-running");
        await page.WaitForFunctionAsync($"seen => ({PlottedPoints})() > seen", seen, new() { Timeout = JobTimeoutMs });
        Assert.True(statusWhenSeen == "RUNNING", $"the first points were drawn while the job was {statusWhenSeen}, not RUNNING");

        await Assertions.Expect(page.Locator("#job-status .badge").First).ToHaveTextAsync("SUCCESS", new() { Timeout = JobTimeoutMs });
        var job = JsonNode.Parse(await client.GetStringAsync($"/v1/fine_tuning/jobs/{jobId}"))!;
        // Every metric the job recorded is a point, and nothing else is.
        var metrics = job["checkpoints"]!.AsArray().Select(c => c!["metrics"]!).ToArray();
        int Count(string name) => metrics.Count(m => m[name] is not null);
        Assert.True(Count("valid_loss") > 0, "the job recorded no validation loss: " + job.ToJsonString());
        await Assertions.Expect(page.Locator("#loss-chart circle.point")).ToHaveCountAsync(Count("train_loss") + Count("valid_loss"));
        await Assertions.Expect(page.Locator("#accuracy-chart circle.point")).ToHaveCountAsync(Count("valid_mean_token_accuracy"));
        await Assertions.Expect(page.Locator("#job-timeline")).ToContainTextAsync("RUNNING");
        await Assertions.Expect(page.GetByRole(AriaRole.Button, new() { Name = "Restore from step 10" })).ToBeVisibleAsync();
        await session.ScreenshotAsync("job-succeeded");

        // The model's lineage from the lineage API, both ways: its two files, the job, its checkpoints,
        // the base model and the fine-tune, and the serving replica its policy allows, each node with
        // where its bytes live.
        var model = job["fine_tuned_model"]!.GetValue<string>();
        // An alias moved once, so the registry section has a version, an alias and its history to show.
        using (var alias = await client.PutAsync("/api/v1/registry/models/tiny-base:echo/aliases/production", new StringContent("""{"version":1,"reason":"first fine-tune"}""", System.Text.Encoding.UTF8, "application/json")))
        {
            Assert.True(alias.IsSuccessStatusCode, await alias.Content.ReadAsStringAsync());
        }

        await page.GetByRole(AriaRole.Link, new() { Name = $"Open model {model} and its lineage" }).ClickAsync();
        await session.WaitForPageAsync("models/");
        var graph = page.Locator("#lineage figure.graph");
        await Assertions.Expect(page.Locator("#lineage-note")).ToHaveCountAsync(0);
        await Assertions.Expect(graph.Locator($"g[data-id='model:{model}']")).ToHaveCountAsync(1);
        await Assertions.Expect(graph.Locator("g[data-kind=model]")).ToHaveCountAsync(2);
        await Assertions.Expect(graph.Locator("g[data-kind=file]")).ToHaveCountAsync(2);
        await Assertions.Expect(graph.Locator("g[data-kind=job]")).ToHaveCountAsync(1);
        await Assertions.Expect(graph.Locator("g[data-kind=checkpoint]")).Not.ToHaveCountAsync(0);
        await Assertions.Expect(graph.Locator("g[data-kind=replica]")).Not.ToHaveCountAsync(0);
        await Assertions.Expect(graph.Locator($".lineage-nodes li[data-id='model:{model}']")).ToContainTextAsync(" at ");
        var registry = page.Locator("#registry");
        await Assertions.Expect(page.Locator("dl.kv")).ToContainTextAsync("tiny-base:echo version 1");
        await Assertions.Expect(registry.GetByRole(AriaRole.Table, new() { Name = "Versions" })).ToContainTextAsync(model);
        await Assertions.Expect(registry.GetByRole(AriaRole.Table, new() { Name = "Aliases" })).ToContainTextAsync("production");
        await Assertions.Expect(registry.GetByRole(AriaRole.Table, new() { Name = "Aliases" })).ToContainTextAsync("∅→1 (first fine-tune)");
        await session.ScreenshotAsync("model-lineage");

        // The playground: the request streams, and the answer appears in the conversation.
        await page.GetByRole(AriaRole.Link, new() { Name = "Chat with this model in the playground" }).ClickAsync();
        await session.WaitForPageAsync("playground");
        Assert.Equal(model, await page.GetByLabel("Model", new() { Exact = true }).InputValueAsync());
        await page.GetByLabel("Maximum new tokens").FillAsync("8");
        await page.GetByLabel("Message").FillAsync("Say apple 0.");
        var request = await page.RunAndWaitForRequestAsync(
            () => page.GetByRole(AriaRole.Button, new() { Name = "Send" }).ClickAsync(),
            r => r.Url.EndsWith("/v1/chat/completions", StringComparison.Ordinal));
        Assert.True(JsonNode.Parse(request.PostData!)!["stream"]!.GetValue<bool>(), "the playground did not ask for a stream: " + request.PostData);
        await Assertions.Expect(page.Locator("#chat-log .msg.assistant")).ToHaveAttributeAsync("aria-busy", "false", new() { Timeout = JobTimeoutMs });
        await Assertions.Expect(page.Locator("#chat-log .msg.assistant .answer")).Not.ToBeEmptyAsync();
        await Assertions.Expect(page.GetByRole(AriaRole.Status).Filter(new() { HasText = "Done" })).ToBeVisibleAsync();
        await session.ScreenshotAsync("playground");
        session.AssertNoPageErrors();
    }

    [Fact]
    public async Task Sovereignty_ListsAPlacementThePolicyRefused_AndTheAuditChainVerifies()
    {
        await using var session = await ConsoleSession.StartAsync(config => config with
        {
            Locations = [.. config.Locations, new LocationDescriptor { Id = "us-cloud", Uri = "blobs/us-cloud", Country = "US", OnPrem = false, Operator = "hyperscaler" }],
        });
        using var client = session.Server.Client();
        var local = session.Server.Locations.All.First(l => l.Id == "local");

        // A policy that allows the local location's country only, then a collection placed in the US under it.
        using (var created = await client.PostAsJsonAsync("/api/v1/policies", new { name = "home-only", allowed_jurisdictions = new[] { local.Country } }))
        {
            Assert.True(created.StatusCode == HttpStatusCode.Created, await created.Content.ReadAsStringAsync());
        }

        using (var refused = await client.PostAsJsonAsync("/api/v1/collections", new { name = "abroad", dimension = 4, metric = "l2", shards = 1, locations = new[] { "us-cloud" }, policy = "home-only" }))
        {
            Assert.True(refused.StatusCode == HttpStatusCode.Forbidden, await refused.Content.ReadAsStringAsync());
        }

        await session.SignInAsync();
        await session.OpenAsync("sovereignty");
        var page = session.Page;
        var refusals = page.Locator("#refusals table tbody tr").Filter(new() { HasText = "placement_refused" });
        await Assertions.Expect(refusals).ToHaveCountAsync(1);
        await Assertions.Expect(refusals).ToContainTextAsync("us-cloud");
        await Assertions.Expect(refusals).ToContainTextAsync("home-only");
        await Assertions.Expect(refusals).ToContainTextAsync("collection col-");
        await Assertions.Expect(page.GetByRole(AriaRole.Table, new() { Name = "Policies" })).ToContainTextAsync("home-only");
        await Assertions.Expect(page.GetByRole(AriaRole.Table, new() { Name = "Locations" })).ToContainTextAsync("us-cloud");
        await Assertions.Expect(page.Locator("#chain-status")).ToContainTextAsync("verifies");

        // The filter narrows the lists to what matches.
        await page.GetByLabel("Filter placements and refusals").FillAsync("no-such-thing");
        await Assertions.Expect(refusals).ToHaveCountAsync(0);
        await session.ScreenshotAsync("sovereignty");
        session.AssertNoPageErrors();
    }

    [Fact]
    public async Task EveryPage_HasNoSeriousAccessibilityViolation_AndIsScreenshotted()
    {
        await using var session = await ConsoleSession.StartAsync();
        using var client = session.Server.Client();
        await TestModels.ImportAsync(session.Server, TestModels.TinyModel(session.Server, "tiny-base"));
        await ApiRequests.UploadAsync(client, "train.jsonl", TestModels.TrainingLines(8));

        await session.Page.GotoAsync(session.Server.BaseUrl + "/");
        await Assertions.Expect(session.Page.GetByLabel("API key")).ToBeVisibleAsync();
        await session.AssertAccessibleAsync("sign-in");
        await session.ScreenshotAsync("sign-in");

        await session.SignInAsync();
        foreach (var name in Pages)
        {
            await session.OpenAsync(name);
            await session.AssertAccessibleAsync(name);
            await session.ScreenshotAsync("page-" + name);
        }

        await session.OpenAsync("models/tiny-base");
        await session.AssertAccessibleAsync("model");
        await session.ScreenshotAsync("page-model");
        session.AssertNoPageErrors();
    }
}
