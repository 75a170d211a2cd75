using System.Diagnostics;
using System.Text.Json;
using Atelier.Core.IO;

namespace Atelier.Cli.Tests;

/// <summary>How client commands find their server: <c>serve</c>'s <c>server.json</c>, <c>atelier login</c>, the environment and the flags, in that order of precedence reversed.</summary>
[Trait("Category", "Slow")]
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class ServerDiscoveryCliTests
{
    private static readonly string Cli = Path.Combine(AppContext.BaseDirectory, "atelier.dll");

    /// <summary>A user's environment with its own, empty home and configuration directories: never the real ones.</summary>
    private static Dictionary<string, string> UserEnvironment(string home, Dictionary<string, string>? extra = null)
    {
        var environment = new Dictionary<string, string>
        {
            ["NO_COLOR"] = "1",
            ["HOME"] = home,
            ["XDG_CONFIG_HOME"] = Path.Combine(home, ".config"),
            ["ATELIER_URL"] = "",
            ["ATELIER_API_KEY"] = "",
            ["ATELIER_DATA"] = "",
        };
        foreach (var (k, v) in extra ?? [])
        {
            environment[k] = v;
        }

        return environment;
    }

    [Fact]
    public async Task Login_KeepsServerAndKeyPrivately_AndFlagsThenEnvironmentThenLoginWin()
    {
        await using var server = await TestServer.StartAsync();
        var home = TempDirectory.Create("atelier-home");
        var elsewhere = TempDirectory.Create("atelier-cwd");

        // Nothing to go on: the error names every way to fix it.
        var (exit, output) = await Repo.RunAsync("dotnet", [Cli, "files", "list"], elsewhere, UserEnvironment(home));
        Assert.Equal(2, exit);
        foreach (var way in new[] { "atelier serve", "--data", "atelier login", "ATELIER_URL", "--server" })
        {
            Assert.Contains(way, output, StringComparison.Ordinal);
        }

        var keyFile = Path.Combine(elsewhere, "key.txt");
        await File.WriteAllTextAsync(keyFile, "sk-wrong\n");
        (exit, output) = await Repo.RunAsync("dotnet", [Cli, "login", server.BaseUrl, "--key-file", keyFile], elsewhere, UserEnvironment(home));
        Assert.Equal(2, exit);
        Assert.Contains("401", output, StringComparison.Ordinal);
        var credentials = Path.Combine(home, ".config", "atelier", "credentials.json");
        Assert.False(File.Exists(credentials));

        await File.WriteAllTextAsync(keyFile, server.AdminKey + "\n");
        (exit, output) = await Repo.RunAsync("dotnet", [Cli, "login", server.BaseUrl, "--key-file", keyFile], elsewhere, UserEnvironment(home));
        Assert.True(exit == 0, output);
        Assert.Equal(DataDirectoryPermissions.FileMode, File.GetUnixFileMode(credentials));
        Assert.Equal(DataDirectoryPermissions.DirectoryMode, File.GetUnixFileMode(Path.GetDirectoryName(credentials)!));

        (exit, output) = await Repo.RunAsync("dotnet", [Cli, "files", "list"], elsewhere, UserEnvironment(home));
        Assert.True(exit == 0, output);
        Assert.Contains("0 file(s) in all", output, StringComparison.Ordinal);

        // The environment beats the login; a flag beats the environment.
        var dead = "http://127.0.0.1:9";
        // The login's key is never sent to another server than the login's.
        (exit, output) = await Repo.RunAsync("dotnet", [Cli, "files", "list"], elsewhere, UserEnvironment(home, new() { ["ATELIER_URL"] = dead }));
        Assert.Equal(2, exit);
        Assert.Contains("no API key", output, StringComparison.Ordinal);
        (exit, output) = await Repo.RunAsync("dotnet", [Cli, "files", "list"], elsewhere, UserEnvironment(home, new() { ["ATELIER_URL"] = dead, ["ATELIER_API_KEY"] = server.AdminKey }));
        Assert.Equal(2, exit);
        Assert.Contains("Cannot reach the Atelier server at " + dead, output, StringComparison.Ordinal);
        (exit, output) = await Repo.RunAsync("dotnet", [Cli, "files", "list", "--server", server.BaseUrl], elsewhere, UserEnvironment(home, new() { ["ATELIER_URL"] = dead }));
        Assert.True(exit == 0, output);
        (exit, output) = await Repo.RunAsync("dotnet", [Cli, "files", "list"], elsewhere, UserEnvironment(home, new() { ["ATELIER_API_KEY"] = "sk-wrong" }));
        Assert.Equal(2, exit);
        Assert.Contains("401", output, StringComparison.Ordinal);

        (exit, output) = await Repo.RunAsync("dotnet", [Cli, "logout"], elsewhere, UserEnvironment(home));
        Assert.True(exit == 0, output);
        Assert.False(File.Exists(credentials));
        (exit, output) = await Repo.RunAsync("dotnet", [Cli, "files", "list"], elsewhere, UserEnvironment(home));
        Assert.Equal(2, exit);
        Assert.Contains("atelier login", output, StringComparison.Ordinal);
    }
}
