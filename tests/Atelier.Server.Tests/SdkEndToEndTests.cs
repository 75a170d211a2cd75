namespace Atelier.Server.Tests;

/// <summary>
/// The official Mistral TypeScript SDK (<c>@mistralai/mistralai</c> 2.4.0 from npm, installed by the
/// test command) against a real Atelier server on a loopback port.
/// </summary>
[Trait("Category", "E2E")]
public sealed class SdkEndToEndTests
{
    private const int MaxLineBytes = 4096;

    [Fact]
    public Task Sdk_UploadListRetrieveDownloadDelete_BehavesAsMistral() => RunScenarioAsync("lifecycle");

    [Fact]
    public Task Sdk_BadInputs_GetClearErrorsAndStoreNothing() => RunScenarioAsync("badInputs");

    [Fact]
    public Task Sdk_AnotherWorkspacesFile_IsNotFound() => RunScenarioAsync("isolation");

    private static async Task RunScenarioAsync(string scenario)
    {
        var e2e = Path.Combine(Repo.Root, "tests", "e2e");
        Assert.True(
            Directory.Exists(Path.Combine(e2e, "node_modules", "@mistralai", "mistralai")),
            "The Mistral SDK is not installed: run the README's test command (eng/test.sh), which runs npm ci in tests/e2e.");

        await using var server = await TestServer.StartAsync(c => c with { Files = c.Files with { MaxLineBytes = MaxLineBytes } });
        var otherKey = await server.CreateKeyAsync("other-team");
        var (exit, output) = await Repo.RunAsync(
            "node",
            ["files.e2e.mjs", scenario],
            e2e,
            new Dictionary<string, string>
            {
                ["ATELIER_URL"] = server.BaseUrl,
                ["ATELIER_API_KEY"] = server.AdminKey,
                ["ATELIER_OTHER_KEY"] = otherKey,
                ["ATELIER_MAX_LINE"] = MaxLineBytes.ToString(System.Globalization.CultureInfo.InvariantCulture),
            });
        Assert.True(exit == 0, $"node files.e2e.mjs {scenario} exited {exit}:\n{output}");
        Assert.Contains($"scenario {scenario} passed", output, StringComparison.Ordinal);
    }
}
