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
        var e2e = Path.Combine(Repo.Root, "tests", "e2e");
        Assert.True(
            Directory.Exists(Path.Combine(e2e, "node_modules", "@mistralai", "mistralai")),
            "The Mistral SDK is not installed: run the README's test command (eng/test.sh), which runs npm ci in tests/e2e.");

        await using var server = await TestServer.StartAsync();
        await ModelsApiTests.ImportAsync(server, ModelsApiTests.TinyModel());
        var model = await ModelsApiTests.RegisterFineTunedAsync(server, "default", "0198c6a0-0000-7000-8000-0000000000e2", "sdk");
        var otherKey = await server.CreateKeyAsync("other-team");
        var (exit, output) = await Repo.RunAsync(
            "node",
            ["models.e2e.mjs", scenario],
            e2e,
            new Dictionary<string, string>
            {
                ["ATELIER_URL"] = server.BaseUrl,
                ["ATELIER_API_KEY"] = server.AdminKey,
                ["ATELIER_OTHER_KEY"] = otherKey,
                ["ATELIER_BASE_MODEL"] = "tiny-model",
                ["ATELIER_FT_MODEL"] = model.Id,
            });
        Assert.True(exit == 0, $"node models.e2e.mjs {scenario} exited {exit}:\n{output}");
        Assert.Contains($"scenario {scenario} passed", output, StringComparison.Ordinal);
    }
}
