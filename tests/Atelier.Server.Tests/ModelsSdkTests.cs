namespace Atelier.Server.Tests;

/// <summary>
/// The Models API through the official Mistral TypeScript SDK (<c>@mistralai/mistralai</c> 2.4.0),
/// against a real server holding an imported tiny base model and a fine-tuned model registered as a
/// finished job would register it.
/// </summary>
[Trait("Category", "E2E")]
public sealed class ModelsSdkTests
{
    [Fact]
    public Task Sdk_ListRetrieveUpdateArchiveUnarchiveDelete_BehavesAsMistral() => RunScenarioAsync("lifecycle");

    [Fact]
    public Task Sdk_BaseModelsAndUnknownIds_GetClearErrors() => RunScenarioAsync("errors");

    [Fact]
    public Task Sdk_AnotherWorkspacesFineTunedModel_IsNotFound() => RunScenarioAsync("isolation");

    private static async Task RunScenarioAsync(string scenario)
    {
        await using var server = await TestServer.StartAsync();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server));
        var model = await ModelsApiTests.RegisterFineTunedAsync(server, "default", "0198c6a0-0000-7000-8000-0000000000e2", "sdk");
        var otherKey = await server.CreateKeyAsync("other-team");
        await SdkScenario.RunAsync(server, "models.e2e.mjs", scenario, new Dictionary<string, string>
        {
            ["ATELIER_OTHER_KEY"] = otherKey,
            ["ATELIER_BASE_MODEL"] = "tiny-model",
            ["ATELIER_FT_MODEL"] = model.Id,
        });
    }
}
