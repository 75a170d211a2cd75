using System.Text.Json;

namespace Atelier.Cli.Tests;

/// <summary><c>atelier registry</c> against a real server, as a user runs it.</summary>
[Trait("Category", "Slow")]
public sealed class RegistryCliTests
{
    private static Task<(int ExitCode, string Output)> Atelier(TestServer server, params string[] args) => CliRun.Atelier(server, args);

    [Fact]
    public async Task ListVersionsAliasAndEvaluate_ShowTheRegistryAndMoveAliasesWithTheirHistory()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server));
        var (first, _) = await TestModels.FineTuneAsync(server, "tiny-model", steps: 2, suffix: "cli");
        var (second, _) = await TestModels.FineTuneAsync(server, "tiny-model", steps: 2, suffix: "cli");

        var (exit, output) = await Atelier(server, "registry", "list", "--json");
        Assert.True(exit == 0, output);
        var names = JsonDocument.Parse(output).RootElement.GetProperty("data").EnumerateArray().ToDictionary(n => n.GetProperty("name").GetString()!);
        Assert.Equal(2, names["tiny-model:cli"].GetProperty("latest_version").GetInt32());
        Assert.Equal(1, names["tiny-model"].GetProperty("latest_version").GetInt32());

        (exit, output) = await Atelier(server, "registry", "list");
        Assert.True(exit == 0, output);
        Assert.Contains("tiny-model:cli", output, StringComparison.Ordinal);
        Assert.Contains("2 registered model(s).", output, StringComparison.Ordinal);

        (exit, output) = await Atelier(server, "registry", "versions", "tiny-model:cli", "--json");
        Assert.True(exit == 0, output);
        Assert.Equal([first, second], JsonDocument.Parse(output).RootElement.GetProperty("data").EnumerateArray().Select(v => v.GetProperty("model_id").GetString()));

        (exit, output) = await Atelier(server, "registry", "alias", "set", "tiny-model:cli", "production", "1", "--reason", "launch");
        Assert.True(exit == 0, output);
        Assert.Contains("tiny-model:cli@production -> version 1 (was -)", output, StringComparison.Ordinal);
        (exit, output) = await Atelier(server, "registry", "alias", "set", "tiny-model:cli", "production", "2", "--reason", "promote", "--json");
        Assert.True(exit == 0, output);
        Assert.Equal(1, JsonDocument.Parse(output).RootElement.GetProperty("move").GetProperty("from_version").GetInt32());

        (exit, output) = await Atelier(server, "registry", "versions", "tiny-model:cli");
        Assert.True(exit == 0, output);
        Assert.Contains("production", output, StringComparison.Ordinal);

        (exit, output) = await Atelier(server, "registry", "alias", "history", "tiny-model:cli", "production", "--json");
        Assert.True(exit == 0, output);
        var history = JsonDocument.Parse(output).RootElement.GetProperty("data").EnumerateArray().ToList();
        Assert.Equal(["launch", "promote"], history.Select(m => m.GetProperty("reason").GetString()));
        (exit, output) = await Atelier(server, "registry", "alias", "history", "tiny-model:cli", "production");
        Assert.True(exit == 0, output);
        Assert.Contains("promote", output, StringComparison.Ordinal);

        (exit, output) = await Atelier(server, "registry", "alias", "set", "tiny-model:cli", "Bad!", "1");
        Assert.Equal(2, exit);
        Assert.Contains("422", output, StringComparison.Ordinal);

        // The alias names a model wherever one is named: here, the export's model lookup.
        (exit, output) = await Atelier(server, "models", "get", "tiny-model:cli@production");
        Assert.True(exit == 0, output);
        Assert.Equal(second, JsonDocument.Parse(output).RootElement.GetProperty("id").GetString());

        var file = await ApiRequests.UploadAsync(client, "valid.jsonl", TestModels.TrainingLines(12));
        (exit, output) = await Atelier(server, "registry", "evaluate", "tiny-model:cli", "2", "--file", file, "--seq-len", "64", "--json");
        Assert.True(exit == 0, output);
        var result = JsonDocument.Parse(output).RootElement.GetProperty("result");
        Assert.True(result.GetProperty("model").GetProperty("loss").GetDouble() > 0);
        Assert.Equal("tiny-model", result.GetProperty("base").GetProperty("model_id").GetString());
        (exit, output) = await Atelier(server, "registry", "evaluate", "tiny-model:cli", "1", "--file", file, "--seq-len", "64");
        Assert.True(exit == 0, output);
        Assert.Contains("this version: loss ", output, StringComparison.Ordinal);
        Assert.Contains("base tiny-model: loss ", output, StringComparison.Ordinal);

        (exit, output) = await Atelier(server, "registry", "evaluations", "tiny-model:cli", "2", "--json");
        Assert.True(exit == 0, output);
        Assert.Single(JsonDocument.Parse(output).RootElement.GetProperty("data").EnumerateArray());

        (exit, output) = await Atelier(server, "registry", "alias", "remove", "tiny-model:cli", "production", "--reason", "retired");
        Assert.True(exit == 0, output);
        Assert.Contains("removed", output, StringComparison.Ordinal);
    }
}
