using System.Text.Json;
using Atelier.Modeling.Mistral;
using Atelier.Modeling.SafeTensors;

namespace Atelier.Modeling.Tests;

/// <summary>
/// Adapter files as artifacts: re-typed to bf16 while streamed (what the adapter download sends), and loaded
/// for a base model with their hyper-parameters read from the file or from mistral-finetune's params.json.
/// </summary>
public sealed class AdapterFileTests : IDisposable
{
    // Scale 3, not mistral-inference's default 2, so a test that lost the scale would fail.
    private static readonly LoraConfig Config = new(Rank: 4, Alpha: 12);

    private readonly string _dir = Atelier.Testing.TestCleanup.CreateDirectory("atelier-adapter-file-");

    public void Dispose() => Directory.Delete(_dir, true);

    private (string Dir, MistralModel Model) ModelWithTrainedAdapter(SafeTensorDType dtype, MistralArgs? args = null)
    {
        var dir = Path.Combine(_dir, $"model-{dtype}-{Guid.NewGuid():N}");
        TinyModelWriter.Write(dir, args, seed: 5, dtype: dtype);
        var model = MistralModel.Load(dir);
        model.Adapter = LoraAdapter.Create(model.Args, Config, 6);
        ModelTestFixtures.RandomizeB(model.Adapter, 7);
        return (dir, model);
    }

    private static async Task<(byte[] Bytes, SafeTensorsRecast Recast)> RecastAsync(string path, SafeTensorDType target)
    {
        await using var source = File.OpenRead(path);
        var recast = await SafeTensorsRecast.ReadAsync(source, source.Length, target, path, CancellationToken.None);
        using var output = new MemoryStream();
        await recast.CopyToAsync(output, CancellationToken.None);
        return (output.ToArray(), recast);
    }

    private static float MaxAbsDifference(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        var max = 0f;
        for (var i = 0; i < a.Length; i++)
        {
            max = Math.Max(max, Math.Abs(a[i] - b[i]));
        }

        return max;
    }

    [Theory]
    [InlineData(SafeTensorDType.F32)]
    [InlineData(SafeTensorDType.F16)]
    public async Task Recast_ToBf16_RoundsEveryValueToNearestEven_KeepsNamesAndMetadata_AndPassesMistralInferencesLoader(SafeTensorDType stored)
    {
        var (_, model) = ModelWithTrainedAdapter(stored);
        using (model)
        {
            var lora = Path.Combine(_dir, "lora.safetensors");
            model.SaveAdapter(lora);
            var (bytes, recast) = await RecastAsync(lora, SafeTensorDType.BF16);
            Assert.False(recast.IsIdentity);
            Assert.Equal(recast.Length, bytes.Length);
            var converted = Path.Combine(_dir, "lora-bf16.safetensors");
            await File.WriteAllBytesAsync(converted, bytes);

            var before = MistralInferenceLoraLoader.ReadSafeTensors(lora);
            var after = MistralInferenceLoraLoader.ReadSafeTensors(converted);
            Assert.Equal(before.Keys.Order(StringComparer.Ordinal), after.Keys.Order(StringComparer.Ordinal));
            foreach (var (name, tensor) in after)
            {
                Assert.Equal("BF16", tensor.DType);
                Assert.Equal(before[name].Shape, tensor.Shape);
                var expected = before[name].ToFloats().Select(v => MistralInferenceLoraLoader.Round(v, "BF16")).ToArray();
                Assert.Equal(expected, tensor.ToFloats());
            }

            using var file = SafeTensorsFile.Open(converted);
            using var original = SafeTensorsFile.Open(lora);
            Assert.Equal(original.Header.Metadata, file.Header.Metadata);

            // A bf16 base takes it as mistral-inference would, at the recorded scale.
            var bf16Base = Path.Combine(_dir, "bf16-base");
            TinyModelWriter.Write(bf16Base, seed: 5, dtype: SafeTensorDType.BF16);
            _ = MistralInferenceLoraLoader.LoadAndMerge(bf16Base, converted, Config.Scaling);
        }
    }

    [Fact]
    public async Task Recast_OfAFileAlreadyInTheTarget_IsByteForByteTheSame()
    {
        var (_, model) = ModelWithTrainedAdapter(SafeTensorDType.BF16);
        using (model)
        {
            var lora = Path.Combine(_dir, "lora.safetensors");
            model.SaveAdapter(lora);
            var (bytes, recast) = await RecastAsync(lora, SafeTensorDType.BF16);
            Assert.True(recast.IsIdentity);
            Assert.Equal(await File.ReadAllBytesAsync(lora), bytes);
        }
    }

    [Fact]
    public async Task Recast_RefusesANonFloatTensor_NamingIt()
    {
        var path = Path.Combine(_dir, "ints.safetensors");
        new SafeTensorsWriter().AddRaw("ids", SafeTensorDType.I32, [2], new byte[8]).Save(path);
        await using var source = File.OpenRead(path);
        var error = await Assert.ThrowsAsync<SafeTensorsFormatException>(() => SafeTensorsRecast.ReadAsync(source, source.Length, SafeTensorDType.BF16, path, CancellationToken.None));
        Assert.Contains("'ids'", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(SafeTensorDType.F32)]
    [InlineData(SafeTensorDType.BF16)]
    public void LoadFile_ReadsRankAndScaleFromTheMetadata_AndGivesTheLogitsOfTheAdapterItWasSavedFrom(SafeTensorDType stored)
    {
        var (dir, model) = ModelWithTrainedAdapter(stored);
        using (model)
        {
            var lora = Path.Combine(_dir, "lora.safetensors");
            model.SaveAdapter(lora);
            using var loaded = MistralModel.Load(dir);
            loaded.Adapter = LoraAdapter.LoadFile(loaded.Args, lora);
            Assert.Equal(Config.Rank, loaded.Adapter.Config.Rank);
            Assert.Equal(Config.Scaling, loaded.Adapter.Config.Scaling);

            // The saved file holds the master copy rounded to the base's dtype; compare against that.
            using var reference = MistralModel.Load(dir);
            reference.Adapter = LoraAdapter.Load(reference.Args, Config, lora);
            var batch = TrainingBatch.Pack(TestData.Tokens(20, model.Args.VocabSize, 3));
            using var expected = reference.ForwardLogits(batch);
            using var actual = loaded.ForwardLogits(batch);
            Assert.Equal(expected.Span.ToArray(), actual.Span.ToArray());
            loaded.Adapter.Dispose();
            loaded.Adapter = null;
            using var baseOnly = loaded.ForwardLogits(batch);
            Assert.True(MaxAbsDifference(expected.Span, baseOnly.Span) > 0.1f, "the adapter should change the logits");
        }
    }

    [Fact]
    public void LoadFile_WithoutMetadata_TakesRankAndScalingFromMistralFinetunesParamsJson_AndRefusesWhenNeitherSaysTheScale()
    {
        var (_, model) = ModelWithTrainedAdapter(SafeTensorDType.F32);
        using (model)
        {
            // A file as mistral-finetune writes it: the tensors, no Atelier metadata.
            var saved = Path.Combine(_dir, "atelier.safetensors");
            model.SaveAdapter(saved);
            var finetuneDir = Path.Combine(_dir, "checkpoint_000010", "consolidated");
            Directory.CreateDirectory(finetuneDir);
            var lora = Path.Combine(finetuneDir, "lora.safetensors");
            var writer = new SafeTensorsWriter();
            using (var file = SafeTensorsFile.Open(saved))
            {
                foreach (var (name, info) in file.Tensors)
                {
                    writer.AddRaw(name, info.DType, info.Shape, file.GetBytes(name).ToArray());
                }
            }

            writer.Save(lora);
            var error = Assert.Throws<ModelFormatException>(() => LoraAdapter.LoadFile(model.Args, lora));
            Assert.Contains("params.json", error.Message, StringComparison.Ordinal);

            File.WriteAllText(Path.Combine(finetuneDir, "params.json"), JsonSerializer.Serialize(new
            {
                dim = model.Args.Dim,
                n_layers = model.Args.NLayers,
                lora = new { enable = true, rank = Config.Rank, dropout = 0.0, scaling = Config.Scaling },
            }));
            using var adapter = LoraAdapter.LoadFile(model.Args, lora);
            Assert.Equal(Config.Rank, adapter.Config.Rank);
            Assert.Equal(Config.Scaling, adapter.Config.Scaling);
            Assert.Equal(model.Adapter![1, LinearKind.W2]!.B.Span.ToArray(), adapter[1, LinearKind.W2]!.B.Span.ToArray());
        }
    }

    [Fact]
    public void LoadFile_OfAnAdapterForAnotherModel_NamesTheTensorAndBothShapes()
    {
        var wider = TinyModelWriter.DefaultArgs with { HiddenDim = TinyModelWriter.DefaultArgs.HiddenDim * 2 };
        var (_, other) = ModelWithTrainedAdapter(SafeTensorDType.F32, wider);
        using (other)
        {
            var lora = Path.Combine(_dir, "wider.safetensors");
            other.SaveAdapter(lora);
            var args = TinyModelWriter.DefaultArgs;
            var error = Assert.Throws<ModelFormatException>(() => LoraAdapter.LoadFile(args, lora));
            Assert.Contains("feed_forward.w1.lora_B.weight", error.Message, StringComparison.Ordinal);
            Assert.Contains($"[{wider.HiddenDim}, {Config.Rank}]", error.Message, StringComparison.Ordinal);
            Assert.Contains($"expected [{args.HiddenDim}, {Config.Rank}]", error.Message, StringComparison.Ordinal);
        }

        var deeper = TinyModelWriter.DefaultArgs with { NLayers = TinyModelWriter.DefaultArgs.NLayers + 1 };
        var (_, deep) = ModelWithTrainedAdapter(SafeTensorDType.F32, deeper);
        using (deep)
        {
            var lora = Path.Combine(_dir, "deeper.safetensors");
            deep.SaveAdapter(lora);
            var error = Assert.Throws<ModelFormatException>(() => LoraAdapter.LoadFile(TinyModelWriter.DefaultArgs, lora));
            Assert.Contains($"layers.{deeper.NLayers - 1}.", error.Message, StringComparison.Ordinal);
            Assert.Contains($"{TinyModelWriter.DefaultArgs.NLayers} layers", error.Message, StringComparison.Ordinal);
        }
    }
}
