using System.Text.Json;

namespace Atelier.Cli.Tests;

/// <summary><c>atelier jobs</c> and <c>atelier checkpoints</c> against a real server, as a user runs them.</summary>
[Trait("Category", "Slow")]
public sealed class JobsCliTests
{
    private static Task<(int ExitCode, string Output)> Atelier(TestServer server, params string[] args) => CliRun.Atelier(server, args);

    [Fact]
    public async Task CreateWatchListCheckpoints_ShowTheJobAndItsLossCurve()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-base"));
        var train = await ApiRequests.UploadAsync(client, "train.jsonl", TestModels.TrainingLines());

        var (exit, output) = await Atelier(server, "jobs", "create", "--model", "tiny-base", "--train", train, "--steps", "6", "--learning-rate", "0.003", "--seq-len", "64", "--suffix", "cli", "--watch");
        Assert.True(exit == 0, output);
        Assert.Contains("SUCCESS", output, StringComparison.Ordinal);
        Assert.Contains("train loss ", output, StringComparison.Ordinal);
        Assert.Contains("step 6/6", output, StringComparison.Ordinal);

        (exit, output) = await Atelier(server, "jobs", "list", "--json");
        Assert.True(exit == 0, output);
        var job = JsonDocument.Parse(output).RootElement.GetProperty("data")[0];
        var id = job.GetProperty("id").GetString()!;
        Assert.StartsWith("ft:tiny-base:", job.GetProperty("fine_tuned_model").GetString(), StringComparison.Ordinal);

        (exit, output) = await Atelier(server, "checkpoints", "list", "--job", id, "--json");
        Assert.True(exit == 0, output);
        Assert.Contains(JsonDocument.Parse(output).RootElement.GetProperty("data").EnumerateArray(), c => c.GetProperty("id").GetString() == $"{id}@6");

        (exit, output) = await Atelier(server, "jobs", "cancel", id);
        Assert.Equal(2, exit);
        Assert.Contains("409", output, StringComparison.Ordinal);

        (exit, output) = await Atelier(server, "jobs", "create", "--model", "nope", "--train", train, "--steps", "2");
        Assert.Equal(2, exit);
        Assert.Contains("404", output, StringComparison.Ordinal);
    }
}
