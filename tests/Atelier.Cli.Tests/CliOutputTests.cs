using System.Text.Json;

namespace Atelier.Cli.Tests;

/// <summary>What the CLI writes: full, plain lines when piped; a terminal's table in a pseudo-terminal; never raw control bytes.</summary>
[Trait("Category", "Slow")]
public sealed class CliOutputTests
{
    private static readonly string Cli = Path.Combine(AppContext.BaseDirectory, "atelier.dll");

    [Fact]
    public async Task FilesList_PipedPrintsEveryCellWhole_WhileAnEightyColumnTerminalWrapsThem()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        var name = "a-training-file-with-a-name-long-enough-that-no-eighty-column-table-can-hold-it-on-one-line-" + new string('x', 20) + ".jsonl";
        var id = await ApiRequests.UploadAsync(client, name, [ApiRequests.Chat("q", "a")]);
        var environment = new Dictionary<string, string> { ["NO_COLOR"] = "1", ["COLUMNS"] = "80" };

        var (exit, piped) = await Repo.RunAsync("dotnet", [Cli, "files", "list", "--server", server.BaseUrl, "--api-key", server.AdminKey], server.DataDirectory, environment);
        Assert.True(exit == 0, piped);
        Assert.Contains(piped.Split('\n'), line => line.Contains(id, StringComparison.Ordinal) && line.Contains(name, StringComparison.Ordinal));
        Assert.DoesNotContain("…", piped, StringComparison.Ordinal);

        // The same command in a pseudo-terminal (util-linux 'script'), 80 columns wide: a table
        // that fits the terminal, so the long name is wrapped over several lines.
        var command = string.Join(' ', new[] { "dotnet", Cli, "files", "list", "--server", server.BaseUrl, "--api-key", server.AdminKey }.Select(Quote));
        (exit, var tty) = await Repo.RunAsync("script", ["-qec", "stty cols 80 rows 40; " + command, "/dev/null"], server.DataDirectory, environment);
        Assert.True(exit == 0, tty);
        Assert.Contains(id[..8], tty, StringComparison.Ordinal);
        Assert.DoesNotContain(tty.Split('\n'), line => line.Contains(name, StringComparison.Ordinal));
        // The terminal's own control sequences (keypad mode, set by the pty) take no columns.
        var visible = System.Text.RegularExpressions.Regex.Replace(tty, @"\x1b(\[[0-9;?]*[A-Za-z]|[=>])", "");
        Assert.All(visible.Split('\n'), line => Assert.True(line.TrimEnd('\r').Length <= 80, $"wider than the terminal: {line}"));
    }

    [Fact]
    public async Task AuditTail_WithJson_PrintsOneJsonObjectPerEvent()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        await ApiRequests.UploadAsync(client, "train.jsonl", [ApiRequests.Chat("q", "a")]);
        var (exit, output) = await CliRun.Atelier(server, "audit", "tail", "-n", "5", "--json");
        Assert.True(exit == 0, output);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.NotEmpty(lines);
        Assert.All(lines, line => Assert.True(JsonDocument.Parse(line).RootElement.TryGetProperty("seq", out _), line));
    }

    [Fact]
    public async Task CollectionsSearch_TakesItsVectorFromAnAtFile_NotAsAResponseFile()
    {
        await using var server = await TestServer.StartAsync();
        var (exit, output) = await CliRun.Atelier(server, "collections", "create", "docs", "--dimension", "3", "--json");
        Assert.True(exit == 0, output);
        var vector = Path.Combine(server.DataDirectory, "query.json");
        await File.WriteAllTextAsync(vector, "[0.1, 0.2, 0.3]");
        (exit, output) = await CliRun.Atelier(server, "collections", "search", "docs", "--vector", "@" + vector, "--json");
        Assert.True(exit == 0, output);
        Assert.Equal(JsonValueKind.Array, JsonDocument.Parse(output).RootElement.GetProperty("data").ValueKind);
    }

    [Fact]
    public void Printable_EscapesEveryControlCharacterButNewlineAndTab()
    {
        Assert.Equal("plain\ttext\n", Printable.Escape("plain\ttext\n"));
        Assert.Equal(@"\x1b[31mred \x07\x7f\x9b \u202e \\x1b", Printable.Escape("\u001b[31mred \u0007\u007f\u009b \u202e \\x1b"));
    }

    private static string Quote(string s) => "'" + s.Replace("'", "'\\''", StringComparison.Ordinal) + "'";
}
