using System.Text;
using System.Text.Json;

namespace Atelier.Cli.Tests;

/// <summary>The <c>atelier</c> command against a real server, as a user runs it.</summary>
[Trait("Category", "Slow")]
public sealed class CliTests
{
    private static Task<(int ExitCode, string Output)> Atelier(TestServer server, string key, params string[] args) => CliRun.AtelierAs(server, key, args);

    [Fact]
    public async Task FilesCommands_UploadListDownloadDelete_RoundTripTheBytes()
    {
        await using var server = await TestServer.StartAsync();
        var source = Path.Combine(server.DataDirectory, "train.jsonl");
        var content = "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\"}]}\n";
        await File.WriteAllTextAsync(source, content);

        var (exit, output) = await Atelier(server, server.AdminKey, "files", "upload", source, "--json");
        Assert.True(exit == 0, output);
        var id = JsonDocument.Parse(output).RootElement.GetProperty("id").GetString()!;

        (exit, output) = await Atelier(server, server.AdminKey, "files", "list");
        Assert.True(exit == 0, output);
        Assert.Contains(id, output, StringComparison.Ordinal);
        Assert.Contains("1 file(s) in all", output, StringComparison.Ordinal);

        var target = Path.Combine(server.DataDirectory, "copy.jsonl");
        (exit, output) = await Atelier(server, server.AdminKey, "files", "download", id, "-o", target);
        Assert.True(exit == 0, output);
        Assert.Equal(content, await File.ReadAllTextAsync(target));

        (exit, output) = await Atelier(server, server.AdminKey, "files", "download", id, "-o", target);
        Assert.Equal(2, exit);
        Assert.Contains("exists", output, StringComparison.Ordinal);

        (exit, output) = await Atelier(server, server.AdminKey, "files", "delete", id);
        Assert.True(exit == 0, output);
        (exit, output) = await Atelier(server, server.AdminKey, "files", "get", id);
        Assert.Equal(2, exit);
        Assert.Contains("404", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task DatasetsBuild_WaitsForTheBuildAndPrintsWhatWasKept()
    {
        await using var server = await TestServer.StartAsync();
        var source = Path.Combine(server.DataDirectory, "train.jsonl");
        var line = "{\"messages\":[{\"role\":\"user\",\"content\":\"What is two plus two, exactly?\"},{\"role\":\"assistant\",\"content\":\"Four.\"}]}\n";
        await File.WriteAllTextAsync(source, line + line);
        var (exit, output) = await Atelier(server, server.AdminKey, "files", "upload", source, "--json");
        Assert.True(exit == 0, output);
        var fileId = JsonDocument.Parse(output).RootElement.GetProperty("id").GetString()!;

        (exit, output) = await Atelier(server, server.AdminKey, "datasets", "build", "--train", fileId, "--seq-len", "64");
        Assert.True(exit == 0, output);
        Assert.Contains("succeeded, 1 of 2 examples kept (1 exact", output, StringComparison.Ordinal);

        (exit, output) = await Atelier(server, server.AdminKey, "datasets", "list");
        Assert.True(exit == 0, output);
        Assert.Contains("succeeded", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ModelsInitTiny_WritesAModelThatGeneratesDeterministically()
    {
        var dir = Path.Combine(TempDirectory.Create("atelier-model"), "tiny");
        var cli = Path.Combine(AppContext.BaseDirectory, "atelier.dll");
        var (exit, output) = await Repo.RunAsync("dotnet", [cli, "models", "init-tiny", dir, "--seed", "7"], Path.GetTempPath());
        Assert.True(exit == 0, output);
        Assert.True(File.Exists(Path.Combine(dir, "params.json")) && File.Exists(Path.Combine(dir, "consolidated.safetensors")) && File.Exists(Path.Combine(dir, "tekken.json")));

        var first = await Repo.RunAsync("dotnet", [cli, "models", "generate", dir, "--prompt", "Bonjour", "--max-tokens", "12"], Path.GetTempPath());
        var second = await Repo.RunAsync("dotnet", [cli, "models", "generate", dir, "--prompt", "Bonjour", "--max-tokens", "12"], Path.GetTempPath());
        Assert.True(first.ExitCode == 0, first.Output);
        Assert.Contains("12 tokens in", first.Output, StringComparison.Ordinal);
        Assert.Equal(first.Output.Split('\n')[0], second.Output.Split('\n')[0]);

        (exit, output) = await Repo.RunAsync("dotnet", [cli, "models", "init-tiny", dir], Path.GetTempPath());
        Assert.Equal(2, exit);
        Assert.Contains("not empty", output, StringComparison.Ordinal);

        // A Mistral 7B v0.3-style directory: tokenizer.model.v3, with fewer ids than the model's vocabulary.
        var v3 = Path.Combine(TempDirectory.Create("atelier-model"), "tiny-v3");
        (exit, output) = await Repo.RunAsync("dotnet", [cli, "models", "init-tiny", v3, "--tokenizer", "sentencepiece-v3"], Path.GetTempPath());
        Assert.True(exit == 0 && File.Exists(Path.Combine(v3, "tokenizer.model.v3")), output);
        (exit, output) = await Repo.RunAsync("dotnet", [cli, "models", "generate", v3, "--prompt", "Bonjour", "--max-tokens", "12"], Path.GetTempPath());
        Assert.True(exit == 0, output);
        Assert.Contains("12 tokens in", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task LocalFinetune_OnADatasetBuiltWithTheModelsTokeniser_LowersTheLossAndIsDeterministic()
    {
        var work = TempDirectory.Create("atelier-finetune");
        var cli = Path.Combine(AppContext.BaseDirectory, "atelier.dll");
        Task<(int ExitCode, string Output)> Run(params string[] args) => Repo.RunAsync("dotnet", [cli, .. args], work);

        Assert.Equal(0, (await Run("models", "init-tiny", "model", "--seed", "1")).ExitCode);
        await File.WriteAllLinesAsync(Path.Combine(work, "train.jsonl"), Enumerable.Range(0, 40).Select(i =>
            JsonSerializer.Serialize(new { messages = new object[] { new { role = "user", content = $"Say hello number {i}" }, new { role = "assistant", content = $"Hello {i}! Bonjour." } } })));
        var (exit, output) = await Run("datasets", "build-local", "--train", "train.jsonl", "--model", "model", "--seq-len", "128", "--out", "ds");
        Assert.True(exit == 0, output);
        Assert.Contains("40 of 40 examples kept", output, StringComparison.Ordinal);
        Assert.Contains("tokeniser tekken", output, StringComparison.Ordinal);

        var first = await Run("models", "finetune", "model", "--dataset", "ds", "--steps", "30", "--learning-rate", "0.01", "--seed", "5", "--out", "a1.safetensors");
        Assert.True(first.ExitCode == 0, first.Output);
        var losses = first.Output.Split('\n').Where(l => l.StartsWith("step ", StringComparison.Ordinal))
            .Select(l => double.Parse(l.Split("loss ")[1].Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        Assert.Equal(30, losses.Length);
        Assert.True(losses[^3..].Average() < losses[..3].Average() * 0.5, $"the loss should at least halve: {string.Join(", ", losses)}");

        var second = await Run("models", "finetune", "model", "--dataset", "ds", "--steps", "30", "--learning-rate", "0.01", "--seed", "5", "--out", "a2.safetensors");
        Assert.True(second.ExitCode == 0, second.Output);
        Assert.Equal(await File.ReadAllBytesAsync(Path.Combine(work, "a1.safetensors")), await File.ReadAllBytesAsync(Path.Combine(work, "a2.safetensors")));

        // A dataset tokenised for another vocabulary is refused with a reason, not trained on.
        Assert.Equal(0, (await Run("datasets", "build-local", "--train", "train.jsonl", "--seq-len", "128", "--out", "ds-o200k")).ExitCode);
        (exit, output) = await Run("models", "finetune", "model", "--dataset", "ds-o200k", "--steps", "2", "--out", "a3.safetensors");
        Assert.Equal(2, exit);
        Assert.Contains("beyond the model's vocabulary", output, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(work, "a3.safetensors")));
    }

    [Fact]
    public async Task UploadOfABadFile_PrintsTheLinesAndExitsNonZero()
    {
        await using var server = await TestServer.StartAsync();
        var source = Path.Combine(server.DataDirectory, "bad.jsonl");
        await File.WriteAllTextAsync(source, "{\"messages\":[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"a\"}]}\n{oops\n", Encoding.UTF8);
        var (exit, output) = await Atelier(server, server.AdminKey, "files", "upload", source);
        Assert.Equal(2, exit);
        Assert.Contains("422", output, StringComparison.Ordinal);
        Assert.Contains("line 2", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task KeysLocationsAndAuditCommands_Work()
    {
        await using var server = await TestServer.StartAsync();
        var (exit, output) = await Atelier(server, server.AdminKey, "keys", "create", "--workspace", "team-b", "--name", "ci", "--json");
        Assert.True(exit == 0, output);
        var created = JsonDocument.Parse(output).RootElement;
        var memberKey = created.GetProperty("key").GetString()!;

        (exit, output) = await Atelier(server, server.AdminKey, "keys", "list");
        Assert.True(exit == 0, output);
        Assert.Contains("team-b", output, StringComparison.Ordinal);
        Assert.DoesNotContain(memberKey, output, StringComparison.Ordinal);

        (exit, output) = await Atelier(server, memberKey, "keys", "list");
        Assert.Equal(2, exit);
        Assert.Contains("403", output, StringComparison.Ordinal);

        (exit, output) = await Atelier(server, server.AdminKey, "keys", "revoke", created.GetProperty("id").GetString()!);
        Assert.True(exit == 0, output);
        (exit, output) = await Atelier(server, memberKey, "files", "list");
        Assert.Equal(2, exit);
        Assert.Contains("401", output, StringComparison.Ordinal);

        (exit, output) = await Atelier(server, server.AdminKey, "locations", "list");
        Assert.True(exit == 0, output);
        Assert.Contains("local", output, StringComparison.Ordinal);
        Assert.Contains("FR", output, StringComparison.Ordinal);

        (exit, output) = await Atelier(server, server.AdminKey, "audit", "tail", "-n", "5");
        Assert.True(exit == 0, output);
        Assert.Contains("key_created", output, StringComparison.Ordinal);
        Assert.Contains("key_revoked", output, StringComparison.Ordinal);

        (exit, output) = await Atelier(server, server.AdminKey, "audit", "verify");
        Assert.True(exit == 0, output);
        Assert.Contains("Audit log valid", output, StringComparison.Ordinal);

        // Tampering with the log on disk is caught by the same command.
        var log = Path.Combine(server.DataDirectory, "audit", "audit.jsonl");
        var lines = await File.ReadAllLinesAsync(log);
        lines[0] = lines[0].Replace("platform operator", "platform operatoR", StringComparison.Ordinal);
        await File.WriteAllLinesAsync(log, lines);
        (exit, output) = await Atelier(server, server.AdminKey, "audit", "verify");
        Assert.Equal(3, exit);
        Assert.Contains("INVALID at seq 1", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task EveryCommand_HasHelp()
    {
        await using var server = await TestServer.StartAsync();
        foreach (var command in new[] { "serve", "keys create", "keys list", "keys revoke", "files upload", "files list", "files get", "files download", "files delete", "locations list", "audit tail", "audit head", "audit verify", "datasets build", "datasets list", "datasets get", "datasets download", "datasets delete", "models init-tiny", "models generate", "models finetune", "models download-adapter", "models export", "datasets build-local" })
        {
            var (exit, output) = await Repo.RunAsync("dotnet", [Path.Combine(AppContext.BaseDirectory, "atelier.dll"), .. command.Split(' '), "--help"], server.DataDirectory);
            Assert.True(exit == 0, $"{command} --help: {output}");
            Assert.Contains("Usage:", output, StringComparison.Ordinal);
        }
    }
}
