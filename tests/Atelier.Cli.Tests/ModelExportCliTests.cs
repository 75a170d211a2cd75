using Atelier.Data.Tokenization;
using Atelier.Modeling.Mistral;
using Atelier.Modeling.SafeTensors;
using Atelier.Modeling.Sampling;

namespace Atelier.Cli.Tests;

/// <summary>
/// <c>atelier models download-adapter</c>, <c>generate --adapter</c> and <c>export --merged</c>: a fine-tuned
/// model taken out of the server and run elsewhere, as a user does it.
/// </summary>
[Trait("Category", "Slow")]
public sealed class ModelExportCliTests
{
    private const string Prompt = "Say apple 0.";

    private static Task<(int ExitCode, string Output)> Atelier(TestServer server, params string[] args) => CliRun.Atelier(server, args);

    private static Task<(int ExitCode, string Output)> Offline(params string[] args) =>
        Repo.RunAsync("dotnet", [Path.Combine(AppContext.BaseDirectory, "atelier.dll"), .. args], Path.GetTempPath());

    /// <summary>What <c>models generate</c> prints for <see cref="Prompt"/>, computed in this process (greedy).</summary>
    private static string GenerateInProcess(string modelDir, string? adapter, int maxTokens)
    {
        var tokenizer = ModelTokenizers.Load(modelDir);
        using var model = MistralModel.Load(modelDir);
        if (adapter is not null)
        {
            model.Adapter = LoraAdapter.LoadFile(model.Args, adapter);
        }

        var ids = new List<int> { tokenizer.Control.Bos };
        tokenizer.Encode(Prompt, ids);
        return tokenizer.Decode(Generator.Generate(model, ids.ToArray(), maxTokens, new SamplingOptions(0f, 1f, 0), [tokenizer.Control.Eos]));
    }

    private static float[] Logits(MistralModel model, int[] tokens)
    {
        using var logits = model.ForwardLogits(TrainingBatch.Pack(tokens));
        return logits.Span.ToArray();
    }

    [Fact]
    public async Task DownloadedAdapter_GeneratesAsTheModelWithItAttached_AndTheMergedExportGivesTheSameLogits()
    {
        await using var server = await TestServer.StartAsync();
        var baseDir = TestModels.TinyModel(server, "tiny-f32", SafeTensorDType.F32);
        await TestModels.ImportAsync(server, baseDir);
        var (model, _) = await TestModels.FineTuneAsync(server, "tiny-f32", steps: 12);
        var work = TempDirectory.Create("atelier-export");

        // The adapter as mistral-inference takes it: bf16, mistral-finetune's names.
        var adapter = Path.Combine(work, "lora.safetensors");
        var (exit, output) = await Atelier(server, "models", "download-adapter", model, "-o", adapter);
        Assert.True(exit == 0, output);
        using (var file = SafeTensorsFile.Open(adapter))
        {
            Assert.All(file.Tensors.Values, t => Assert.Equal(SafeTensorDType.BF16, t.DType));
            Assert.Contains("layers.0.attention.wq.lora_A.weight", file.Tensors.Keys);
        }

        // Offline generation with it prints what the base model with that adapter attached generates here,
        // which is not what the base model alone generates.
        var expected = GenerateInProcess(baseDir, adapter, 16);
        (exit, output) = await Offline("models", "generate", baseDir, "--adapter", adapter, "--prompt", Prompt, "--max-tokens", "16");
        Assert.True(exit == 0, output);
        Assert.StartsWith(expected + "\n", output, StringComparison.Ordinal);
        Assert.NotEqual(GenerateInProcess(baseDir, null, 16), expected);

        // The merged export: a whole model directory whose logits are the base's with the adapter.
        var merged = Path.Combine(work, "merged");
        (exit, output) = await Atelier(server, "models", "export", model, "--merged", "--out", merged);
        Assert.True(exit == 0, output);
        Assert.Equal(["consolidated.safetensors", "params.json", "tekken.json"], Directory.GetFiles(merged).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.Equal(await File.ReadAllTextAsync(Path.Combine(baseDir, "params.json")), await File.ReadAllTextAsync(Path.Combine(merged, "params.json")));
        Assert.Equal([merged], Directory.GetFileSystemEntries(work).Where(e => !e.EndsWith(".safetensors", StringComparison.Ordinal)));

        // Against the stored, training-precision adapter, which is what the export merges.
        var stored = Path.Combine(work, "stored-lora.safetensors");
        using (var client = server.Client())
        {
            await File.WriteAllBytesAsync(stored, await client.GetByteArrayAsync($"/api/v1/models/{Uri.EscapeDataString(model)}/files/lora.safetensors"));
        }

        using var withAdapter = MistralModel.Load(baseDir);
        withAdapter.Adapter = LoraAdapter.LoadFile(withAdapter.Args, stored);
        using var exported = MistralModel.Load(merged);
        Assert.Null(exported.Adapter);
        var tokens = Enumerable.Range(0, 40).Select(i => (i * 37 + 11) % exported.Args.VocabSize).ToArray();
        var reference = Logits(withAdapter, tokens);
        var actual = Logits(exported, tokens);
        var drift = reference.Zip(actual, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(drift <= 1e-4f, $"merged logits differ from base + adapter by {drift}");
        withAdapter.Adapter.Dispose();
        withAdapter.Adapter = null;
        var effect = reference.Zip(Logits(withAdapter, tokens), (a, b) => Math.Abs(a - b)).Max();
        Assert.True(effect > 100 * 1e-4f, $"the adapter moves the logits by only {effect}, too little for the comparison to mean anything");

        // The export also runs on a local copy of the base, and generate loads what it writes.
        var fromLocal = Path.Combine(work, "merged-local");
        (exit, output) = await Atelier(server, "models", "export", model, "--merged", "--base", baseDir, "--out", fromLocal);
        Assert.True(exit == 0, output);
        Assert.Equal(await File.ReadAllBytesAsync(Path.Combine(merged, "consolidated.safetensors")), await File.ReadAllBytesAsync(Path.Combine(fromLocal, "consolidated.safetensors")));
        (exit, output) = await Offline("models", "generate", fromLocal, "--prompt", Prompt, "--max-tokens", "4");
        Assert.True(exit == 0, output);

        // An existing directory is never written into.
        (exit, output) = await Atelier(server, "models", "export", model, "--merged", "--out", merged);
        Assert.Equal(2, exit);
        Assert.Contains("exists", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task FailedExport_LeavesNoDirectory_AndAMismatchedAdapterNamesTheTensorAndShapes()
    {
        await using var server = await TestServer.StartAsync();
        await TestModels.ImportAsync(server, TestModels.TinyModel(server, "tiny-f32", SafeTensorDType.F32));
        var (model, _) = await TestModels.FineTuneAsync(server, "tiny-f32", steps: 2);
        var work = TempDirectory.Create("atelier-export-fail");

        // A base of other dimensions: the merge fails after the downloads, and nothing is left behind.
        var wider = Path.Combine(work, "wider");
        TinyModelWriter.Write(wider, TinyModelWriter.DefaultArgs with { HiddenDim = TinyModelWriter.DefaultArgs.HiddenDim * 2 }, seed: 5, dtype: SafeTensorDType.F32);
        var target = Path.Combine(work, "out", "merged");
        var (exit, output) = await Atelier(server, "models", "export", model, "--merged", "--base", wider, "--out", target);
        Assert.Equal(2, exit);
        Assert.Contains("feed_forward.w1.lora_B.weight", output, StringComparison.Ordinal);
        Assert.Contains($"expected [{TinyModelWriter.DefaultArgs.HiddenDim * 2}, ", output, StringComparison.Ordinal);
        Assert.False(Directory.Exists(target));
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(work, "out")));

        // The same adapter for generate: a clear error, not a stack trace.
        var adapter = Path.Combine(work, "lora.safetensors");
        (exit, output) = await Atelier(server, "models", "download-adapter", model, "-o", adapter);
        Assert.True(exit == 0, output);
        (exit, output) = await Offline("models", "generate", wider, "--adapter", adapter, "--prompt", Prompt);
        Assert.Equal(2, exit);
        Assert.Contains("feed_forward.w1.lora_B.weight", output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", output, StringComparison.Ordinal);

        // A base model has nothing to export, and a failed download leaves nothing either.
        (exit, output) = await Atelier(server, "models", "export", "tiny-f32", "--merged", "--out", target);
        Assert.Equal(2, exit);
        Assert.Contains("base model", output, StringComparison.Ordinal);
        (exit, output) = await Atelier(server, "models", "export", "ft:tiny-f32:00000000:none:00000000", "--merged", "--out", target);
        Assert.Equal(2, exit);
        Assert.Contains("404", output, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(work, "out")));
    }
}
