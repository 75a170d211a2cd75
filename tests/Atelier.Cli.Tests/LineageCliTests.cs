using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace Atelier.Cli.Tests;

/// <summary><c>atelier lineage</c> and <c>atelier erasure plan|run|show|verify</c> against a real server.</summary>
public sealed class LineageCliTests
{
    private static Task<(int ExitCode, string Output)> Atelier(TestServer server, params string[] args) => CliRun.Atelier(server, args);

    [Fact]
    public async Task Lineage_PrintsTheTree_AndAnErasureRunsToAReportThatVerifiesUntilTampered()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        var erased = await ApiRequests.UploadAsync(client, "erased.jsonl", TestModels.TrainingLines(16));
        var kept = await ApiRequests.UploadAsync(client, "kept.jsonl", TestModels.TrainingLines(32).Skip(16));
        using var created = await client.PostAsJsonAsync("/api/v1/datasets", new { training_files = new[] { erased, kept }, seq_len = 64 });
        Assert.Equal(HttpStatusCode.Accepted, created.StatusCode);
        var dataset = (await ApiRequests.WaitForDatasetAsync(client, JsonNode.Parse(await created.Content.ReadAsStringAsync())!["id"]!.GetValue<string>()))["id"]!.GetValue<string>();

        // Piped, the tree is plain indented text: the file, then the dataset made from it.
        var (exit, output) = await Atelier(server, "lineage", erased, "--kind", "file", "--downstream");
        Assert.True(exit == 0, output);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.StartsWith($"file {erased}", lines[0], StringComparison.Ordinal);
        Assert.Contains(lines, l => l.StartsWith($"  [training_file] dataset {dataset}", StringComparison.Ordinal));

        (exit, output) = await Atelier(server, "erasure", "plan", "file", erased);
        Assert.True(exit == 0, output);
        Assert.Contains(dataset, output, StringComparison.Ordinal);
        Assert.Contains("rebuild", output, StringComparison.Ordinal);

        (exit, output) = await Atelier(server, "erasure", "run", "file", erased, "--json");
        Assert.True(exit == 0, output);
        var erasureId = JsonNode.Parse(output)!["erasure_id"]!.GetValue<string>();

        var directory = TempDirectory.Create("atelier-erasure-cli");
        var report = Path.Combine(directory, "report.json");
        (exit, output) = await Atelier(server, "erasure", "show", erasureId, "-o", report);
        Assert.True(exit == 0, output);
        (exit, output) = await Atelier(server, "erasure", "verify", report);
        Assert.True(exit == 0, output);
        Assert.Contains("is valid", output, StringComparison.Ordinal);

        var tampered = JsonNode.Parse(await File.ReadAllTextAsync(report))!;
        tampered["outcomes"]!.AsArray().RemoveAt(0);
        var tamperedPath = Path.Combine(directory, "tampered.json");
        await File.WriteAllTextAsync(tamperedPath, tampered.ToJsonString());
        (exit, output) = await Atelier(server, "erasure", "verify", tamperedPath);
        Assert.Equal(3, exit);
        Assert.Contains("NOT valid", output, StringComparison.Ordinal);

        // A kind erasures do not start from is refused by the server with its reason.
        (exit, output) = await Atelier(server, "erasure", "plan", "dataset", dataset);
        Assert.NotEqual(0, exit);
        Assert.Contains("422", output, StringComparison.Ordinal);
    }
}
