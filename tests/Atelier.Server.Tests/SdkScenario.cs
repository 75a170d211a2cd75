namespace Atelier.Server.Tests;

/// <summary>Runs a scenario of a <c>tests/e2e/*.e2e.mjs</c> script (the official Mistral SDK) against a test server.</summary>
internal static class SdkScenario
{
    public static async Task RunAsync(TestServer server, string script, string scenario, IReadOnlyDictionary<string, string>? environment = null)
    {
        var e2e = Path.Combine(Repo.Root, "tests", "e2e");
        Assert.True(
            Directory.Exists(Path.Combine(e2e, "node_modules", "@mistralai", "mistralai")),
            "The Mistral SDK is not installed: run the README's test command (eng/test.sh), which runs npm ci in tests/e2e.");
        var variables = new Dictionary<string, string>(environment ?? new Dictionary<string, string>())
        {
            ["ATELIER_URL"] = server.BaseUrl,
            ["ATELIER_API_KEY"] = server.AdminKey,
        };
        var (exit, output) = await Repo.RunAsync("node", [script, scenario], e2e, variables);
        Assert.True(exit == 0, $"node {script} {scenario} exited {exit}:\n{output}");
        Assert.Contains($"scenario {scenario} passed", output, StringComparison.Ordinal);
    }
}
