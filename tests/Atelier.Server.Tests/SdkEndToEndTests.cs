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
        await using var server = await TestServer.StartAsync(c => c with { Files = c.Files with { MaxLineBytes = MaxLineBytes } });
        var otherKey = await server.CreateKeyAsync("other-team");
        await SdkScenario.RunAsync(server, "files.e2e.mjs", scenario, new Dictionary<string, string>
        {
            ["ATELIER_OTHER_KEY"] = otherKey,
            ["ATELIER_MAX_LINE"] = MaxLineBytes.ToString(System.Globalization.CultureInfo.InvariantCulture),
        });
    }
}
