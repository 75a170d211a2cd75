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

    [Fact]
    public Task Sdk_FilesSharingASystemPromptAndTools_ValidateKeepingEveryExample() => RunScenarioAsync("sharedSystemPrompt");

    private static async Task RunScenarioAsync(string scenario)
    {
        await using var server = await TestServer.StartAsync();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-base"));
        await SdkScenario.RunAsync(server, "jobs.e2e.mjs", scenario, new Dictionary<string, string> { ["ATELIER_BASE_MODEL"] = "tiny-base" });
    }
}
