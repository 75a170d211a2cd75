namespace Atelier.Cli.Tests;

/// <summary>Runs the built <c>atelier</c> command as a user does.</summary>
internal static class CliRun
{
    /// <summary>A client command against <paramref name="server"/>, with its URL and the operator's key.</summary>
    public static Task<(int ExitCode, string Output)> Atelier(TestServer server, params string[] args) => AtelierAs(server, server.AdminKey, args);

    /// <summary>A client command against <paramref name="server"/>, with its URL and <paramref name="key"/>.</summary>
    public static Task<(int ExitCode, string Output)> AtelierAs(TestServer server, string key, params string[] args) =>
        Repo.RunAsync(
            "dotnet",
            [Path.Combine(AppContext.BaseDirectory, "atelier.dll"), .. args, "--server", server.BaseUrl, "--api-key", key],
            server.DataDirectory,
            new Dictionary<string, string> { ["NO_COLOR"] = "1" });
}
