namespace Atelier.Server.Tests;

/// <summary>
/// Fine-tuning through the official Mistral TypeScript SDK (<c>@mistralai/mistralai</c> 2.4.0):
/// upload, create, auto-start, poll to SUCCESS with checkpoints, the model listed; cancel; bad input.
/// </summary>
[Trait("Category", "E2E")]
public sealed class JobsSdkTests
{
    [Fact]
    public Task Sdk_CreateAutoStartPollToSuccess_ModelListed() => RunScenarioAsync("train");

    [Fact]
    public Task Sdk_CancelRunningJob_AndStartManualJob() => RunScenarioAsync("cancel");

    [Fact]
    public Task Sdk_BadInputs_GetClear4xx_AndCreateNoJob() => RunScenarioAsync("badInputs");

    private static async Task RunScenarioAsync(string scenario)
    {
        var e2e = Path.Combine(Repo.Root, "tests", "e2e");
        Assert.True(
            Directory.Exists(Path.Combine(e2e, "node_modules", "@mistralai", "mistralai")),
            "The Mistral SDK is not installed: run the README's test command (eng/test.sh), which runs npm ci in tests/e2e.");

        await using var server = await TestServer.StartAsync();
        await ModelsApiTests.ImportAsync(server, ModelsApiTests.TinyModel("tiny-base"));
        var (exit, output) = await Repo.RunAsync(
            "node",
            ["jobs.e2e.mjs", scenario],
            e2e,
            new Dictionary<string, string>
            {
                ["ATELIER_URL"] = server.BaseUrl,
                ["ATELIER_API_KEY"] = server.AdminKey,
                ["ATELIER_BASE_MODEL"] = "tiny-base",
            });
        Assert.True(exit == 0, $"node jobs.e2e.mjs {scenario} exited {exit}:\n{output}");
        Assert.Contains($"scenario {scenario} passed", output, StringComparison.Ordinal);
    }
}
