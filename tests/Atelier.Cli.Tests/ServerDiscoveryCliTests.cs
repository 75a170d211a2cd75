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
    public async Task Serve_WritesItsAddressForClientsBeside_LogsJsonLines_AndRemovesTheAddressWhenStopped()
    {
        var work = TempDirectory.Create("atelier-serve");
        var home = TempDirectory.Create("atelier-home");
        var data = Path.Combine(work, "atelier-data");
        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = work, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { Cli, "serve", "--port", "0", "--log-format", "JSON" })
        {
            start.ArgumentList.Add(a);
        }

        foreach (var (k, v) in UserEnvironment(home))
        {
            start.Environment[k] = v;
        }

        using var server = TestCleanup.Track(Process.Start(start)!);
        var stdout = server.StandardOutput.ReadToEndAsync();

        // The banner is on standard error (standard output is the JSON log's alone).
        var banner = new List<string>();
        string? url = null;
        using var banning = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        while (url is null && await server.StandardError.ReadLineAsync(banning.Token) is { } line)
        {
            banner.Add(line);
            if (line.StartsWith("Atelier is listening on ", StringComparison.Ordinal))
            {
                url = line["Atelier is listening on ".Length..];
            }
        }

        // The rest of standard error is read only when the banner is missing: the server keeps it open while it runs.
        if (url is null)
        {
            Assert.Fail("no banner: " + string.Join('\n', banner) + await server.StandardError.ReadToEndAsync());
        }

        var rest = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            rest.Add((await server.StandardError.ReadLineAsync(banning.Token))!);
        }

        Assert.Contains($"  console:  {url}/", rest);
        Assert.Contains($"  data:     {data}", rest);
        Assert.Contains($"  key file: {Path.Combine(data, "admin.key")}", rest);
        var stderr = server.StandardError.ReadToEndAsync();

        var serverFile = Path.Combine(data, "server.json");
        Assert.Equal(DataDirectoryPermissions.FileMode, File.GetUnixFileMode(serverFile));
        using (var written = JsonDocument.Parse(await File.ReadAllTextAsync(serverFile)))
        {
            Assert.Equal(url, written.RootElement.GetProperty("url").GetString());
            Assert.Equal(server.Id, written.RootElement.GetProperty("pid").GetInt32());
        }

        // Beside it, a client command needs no flag: the address from server.json, the key from admin.key.
        var source = Path.Combine(work, "train.jsonl");
        await File.WriteAllTextAsync(source, "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\"}]}\n");
        var (exit, output) = await Repo.RunAsync("dotnet", [Cli, "files", "upload", source, "--json"], work, UserEnvironment(home));
        Assert.True(exit == 0, output);
        var fileId = JsonDocument.Parse(output).RootElement.GetProperty("id").GetString()!;
        (exit, output) = await Repo.RunAsync("dotnet", [Cli, "files", "list"], work, UserEnvironment(home));
        Assert.True(exit == 0, output);
        Assert.Contains(fileId, output, StringComparison.Ordinal);

        // A clean stop (SIGTERM, as a service manager sends) removes the address.
        var (killed, killOutput) = await Repo.RunAsync("kill", ["-TERM", server.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)], work);
        Assert.True(killed == 0, killOutput);
        using (var stopping = new CancellationTokenSource(TimeSpan.FromMinutes(1)))
        {
            await server.WaitForExitAsync(stopping.Token);
        }

        Assert.False(File.Exists(serverFile), "server.json outlived the server");

        // Every line of standard output is one JSON log entry; the upload's has the request's trace id.
        var lines = (await stdout).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.NotEmpty(lines);
        var entries = lines.Select(l => JsonDocument.Parse(l).RootElement).ToList();
        var stored = Assert.Single(entries, e => e.GetProperty("Message").GetString()!.Contains($"Stored file {fileId}", StringComparison.Ordinal));
        Assert.Contains(stored.GetProperty("Scopes").EnumerateArray(), s => s.ValueKind == JsonValueKind.Object && s.TryGetProperty("TraceId", out var t) && t.GetString()!.Length == 32);
        Assert.DoesNotContain(entries, e => e.GetProperty("Category").GetString()!.StartsWith("Orleans", StringComparison.Ordinal) && e.GetProperty("LogLevel").GetString() is "Information" or "Debug");
        Assert.True(lines.Length <= 10, $"{lines.Length} log lines for a start, two requests and a stop:\n{string.Join('\n', lines)}\n{await stderr}");

        // Stopped, the same command says every way to find a server.
        (exit, output) = await Repo.RunAsync("dotnet", [Cli, "files", "list"], work, UserEnvironment(home));
        Assert.Equal(2, exit);
        Assert.Contains("No Atelier server to talk to", output, StringComparison.Ordinal);
        Assert.Contains("atelier login URL", output, StringComparison.Ordinal);
        Assert.Contains("ATELIER_URL", output, StringComparison.Ordinal);
        Assert.Contains("--server URL", output, StringComparison.Ordinal);
        Assert.Contains("server.json does not exist", output, StringComparison.Ordinal);

        // A server killed without a clean stop leaves its file: the file is reported as stale, never trusted.
        await File.WriteAllTextAsync(serverFile, $"{{\"url\":\"{url}\",\"pid\":{server.Id}}}");
        (exit, output) = await Repo.RunAsync("dotnet", [Cli, "files", "list"], work, UserEnvironment(home));
        Assert.Equal(2, exit);
        Assert.Contains($"(pid {server.Id}) is no longer running", output, StringComparison.Ordinal);
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
