using Atelier.Inference.Execution;
using Atelier.Inference.KvCache;
using Atelier.Inference.Serving;
using Atelier.Modeling;
using Atelier.Modeling.Kernels;
using Atelier.Modeling.Mistral;
using Atelier.Modeling.SafeTensors;
using Atelier.Testing;

namespace Atelier.Inference.Tests;

/// <summary>
/// Serving weights loaded from a checkpoint: a bf16 file stays bf16 in memory and gives the logits of the
/// float32 model on the same (widened) weights; bad files fail as the training path's loader fails.
/// </summary>
public sealed class PackedModelWeightsTests : IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(2);

    private readonly string _directory = TestCleanup.CreateDirectory("atelier-weights");

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    /// <summary>Saves random weights as <paramref name="dtype"/>; returns the file.</summary>
    private string Save(MistralWeights weights, SafeTensorDType dtype, string name = "consolidated.safetensors")
    {
        var path = Path.Combine(_directory, name);
        weights.Save(path, dtype);
        return path;
    }

    /// <summary>Equal within 1e-5, relative where a value exceeds one (the tied output's logits reach a few units).</summary>
    private static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var j = 0; j < expected.Length; j++)
        {
            Assert.True(Math.Abs(expected[j] - actual[j]) < 1e-5 * Math.Max(1, Math.Abs(expected[j])), $"{what}, value {j}: {expected[j]} vs {actual[j]}");
        }
    }

    /// <summary>Every logits row of a prompt fed in chunks through the paged runner, against the float32 session's.</summary>
    private static void AssertRunnerMatchesSession(PackedModelWeights packed, MistralWeights reference, LoraAdapter? adapter)
    {
        var args = reference.Args;
        var tokens = TinyModels.Prompt(23, 1);
        using var session = new MistralModel(reference, adapter).StartSession(64);
        using var expected = session.AppendAll(tokens);
        var pool = new KvBlockPool(args, blockSize: 4, budgetBytes: 8 * 2L * args.NLayers * 4 * args.KvWidth * sizeof(float));
        using var runner = new PagedBatchRunner(packed, pool);
        int[] table = [5, 1, 7, 0, 3, 2];
        var start = 0;
        foreach (var chunk in new[] { 5, 3, 1, 8, 6 })
        {
            var logits = runner.Run([new BatchItem(tokens.AsMemory(start, chunk), start, table, adapter, WantLogits: true)]);
            start += chunk;
            AssertClose(expected.Row(start - 1), logits, $"position {start - 1}");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ABFloat16Checkpoint_IsServedInBFloat16_WithTheLogitsOfTheFloat32ModelOnTheWidenedWeights(bool withAdapter)
    {
        var args = TinyModels.Args(window: 6);
        using var random = TinyModels.Weights(args);
        var path = Save(random, SafeTensorDType.BF16);
        using var widened = MistralWeights.Load(args, path);
        using var packed = PackedModelWeights.Load(args, path);
        using var adapter = withAdapter ? TinyModels.Adapter(args, 3) : null;

        Assert.Equal(PackedElementType.BFloat16, packed.ElementType);
        Assert.Equal(SafeTensorDType.BF16, packed.StorageDType);
        for (var l = 0; l < args.NLayers; l++)
        {
            foreach (var stack in Enum.GetValues<ProjectionStack>())
            {
                Assert.Equal(PackedElementType.BFloat16, packed.Projection(l, stack).ElementType);
            }
        }

        AssertRunnerMatchesSession(packed, widened, adapter);
    }

    [Fact]
    public async Task TheEngineOnBFloat16Weights_GivesTheGreedyTokensOfTheFloat32Model_AloneAndBatched()
    {
        var args = TinyModels.Args();
        using var random = TinyModels.Weights(args);
        var path = Save(random, SafeTensorDType.BF16);
        using var widened = MistralWeights.Load(args, path);
        using var packed = PackedModelWeights.Load(args, path);

        // Reference: greedy decoding with the float32 model's contiguous-cache session.
        int[] Greedy(int[] prompt, int count)
        {
            using var session = new MistralModel(widened).StartSession(64);
            var logits = session.Append(prompt);
            var tokens = new int[count];
            for (var i = 0; i < count; i++)
            {
                tokens[i] = Array.IndexOf(logits, logits.Max());
                if (i + 1 < count)
                {
                    logits = session.Append([tokens[i]]);
                }
            }

            return tokens;
        }

        var prompts = Enumerable.Range(0, 6).Select(i => TinyModels.Prompt(3 + (5 * i), 50 + i)).ToArray();
        using var engine = new InferenceEngine(packed, new InferenceEngineOptions { KvCacheBytes = 4L << 20, BlockSize = 4, MaxBatchTokens = 16 });
        var streams = prompts.Select(p => engine.Submit(new GenerationRequest(p, MaxTokens: 10))).ToArray();
        for (var i = 0; i < prompts.Length; i++)
        {
            var tokens = new List<int>();
            await foreach (var t in streams[i].WithCancellation(CancellationToken.None))
            {
                tokens.Add(t);
            }

            await streams[i].Completion.WaitAsync(Limit);
            Assert.Equal(Greedy(prompts[i], 10), tokens);
        }
    }

    [Fact]
    public void AFloat32Checkpoint_ServedAsBFloat16_GivesTheLogitsOfItsBFloat16Rounding()
    {
        var args = TinyModels.Args();
        using var random = TinyModels.Weights(args);
        var f32 = Save(random, SafeTensorDType.F32, "f32.safetensors");
        using var rounded = MistralWeights.Load(args, Save(random, SafeTensorDType.BF16, "bf16.safetensors"));
        using var asLoaded = PackedModelWeights.Load(args, f32);
        using var asBFloat16 = PackedModelWeights.Load(args, f32, PackedElementType.BFloat16);

        Assert.Equal(PackedElementType.Float32, asLoaded.ElementType);
        Assert.Equal(PackedElementType.BFloat16, asBFloat16.ElementType);

        // The packed projections are bf16; the embeddings stay as the file holds them (float32), so the
        // reference keeps the float32 embeddings too.
        random.TokEmbeddings.Span.CopyTo(rounded.TokEmbeddings.Span);
        AssertRunnerMatchesSession(asBFloat16, rounded, adapter: null);
        AssertRunnerMatchesSession(asLoaded, random, adapter: null);
    }

    [Fact]
    public void InMemoryWeightsPackedAsBFloat16_GiveTheLogitsOfTheirBFloat16Checkpoint()
    {
        var args = TinyModels.Args();
        using var random = TinyModels.Weights(args);
        using var rounded = MistralWeights.Load(args, Save(random, SafeTensorDType.BF16));
        using var packed = PackedModelWeights.Pack(random, PackedElementType.BFloat16);

        Assert.Equal(PackedElementType.BFloat16, packed.ElementType);
        AssertRunnerMatchesSession(packed, rounded, adapter: null);
    }

    [Fact]
    public void ACheckpointWithoutOutputWeight_TiesTheOutputToTheEmbeddings()
    {
        var args = TinyModels.Args();
        using var random = TinyModels.Weights(args);
        var path = Path.Combine(_directory, "tied.safetensors");
        var writer = new SafeTensorsWriter();
        foreach (var (name, t) in random.Named().Where(n => n.Name != "output.weight"))
        {
            writer.Add(name, t.Span, t.Shape, SafeTensorDType.BF16);
        }

        writer.Save(path);
        using var widened = MistralWeights.Load(args, path);
        using var packed = PackedModelWeights.Load(args, path);
        AssertRunnerMatchesSession(packed, widened, adapter: null);
    }

    [Fact]
    public void ABFloat16Load_HoldsItsProjectionsInBFloat16_AndTheEmbeddingsInTheFilesMap()
    {
        var args = TinyModels.Args();
        using var random = TinyModels.Weights(args);
        using var bf16 = PackedModelWeights.Load(args, Save(random, SafeTensorDType.BF16, "bf16.safetensors"));
        using var f32 = PackedModelWeights.Load(args, Save(random, SafeTensorDType.F32, "f32.safetensors"));

        // What each holds is exactly its packed matrices and norms; the embeddings are mapped, not copied.
        long Held(PackedModelWeights w)
        {
            var bytes = w.Output.StorageBytes + ((args.NLayers * 2L) + 1) * args.Dim * sizeof(float);
            for (var l = 0; l < args.NLayers; l++)
            {
                foreach (var stack in Enum.GetValues<ProjectionStack>())
                {
                    bytes += w.Projection(l, stack).StorageBytes;
                }
            }

            return bytes;
        }

        Assert.Equal(Held(bf16), bf16.ResidentBytes);
        Assert.Equal(Held(f32), f32.ResidentBytes);
        Assert.Equal((long)args.VocabSize * args.Dim * 2, bf16.MappedBytes);
        Assert.Equal((long)args.VocabSize * args.Dim * 4, f32.MappedBytes);
        // Every packed bf16 matrix stores 2 bytes a value: the whole load is about half the float32 one
        // (the float32 norms are the difference).
        Assert.Equal(PackedElementType.BFloat16, bf16.Output.ElementType);
        Assert.Equal(f32.Output.StorageBytes, 2 * bf16.Output.StorageBytes);
        Assert.InRange(bf16.ResidentBytes / (double)f32.ResidentBytes, 0.45, 0.55);
    }

    [Fact]
    public void AMissingTensor_FailsWithTheMessageOfTheTrainingLoader()
    {
        var args = TinyModels.Args();
        using var random = TinyModels.Weights(args);
        var path = Path.Combine(_directory, "missing.safetensors");
        var writer = new SafeTensorsWriter();
        foreach (var (name, t) in random.Named().Where(n => n.Name != "layers.1.feed_forward.w3.weight"))
        {
            writer.Add(name, t.Span, t.Shape, SafeTensorDType.BF16);
        }

        writer.Save(path);
        var expected = Assert.Throws<ModelFormatException>(() => MistralWeights.Load(args, path));
        var actual = Assert.Throws<ModelFormatException>(() => PackedModelWeights.Load(args, path));
        Assert.Equal(expected.Message, actual.Message);
        Assert.Contains("missing tensor 'layers.1.feed_forward.w3.weight'", actual.Message, StringComparison.Ordinal);
        Assert.Contains(path, actual.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ATensorOfTheWrongShape_FailsNamingTheFileTheTensorAndBothShapes()
    {
        var args = TinyModels.Args();
        using var random = TinyModels.Weights(args);
        var path = Save(random, SafeTensorDType.BF16);
        var wider = args with { HiddenDim = args.HiddenDim + 8 };
        var expected = Assert.Throws<ModelFormatException>(() => MistralWeights.Load(wider, path));
        var actual = Assert.Throws<ModelFormatException>(() => PackedModelWeights.Load(wider, path));
        Assert.Equal(expected.Message, actual.Message);
        Assert.Contains("tensor 'layers.0.feed_forward.w1.weight' has shape [48, 32], expected [56, 32]", actual.Message, StringComparison.Ordinal);
        Assert.Contains(path, actual.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Embeddings_OnBFloat16Weights_EqualTheFloat32ModelsPooledEmbeddings(bool withAdapter)
    {
        var args = TinyModels.Args(window: 6);
        using var random = TinyModels.Weights(args);
        var path = Save(random, SafeTensorDType.BF16);
        using var widened = MistralWeights.Load(args, path);
        using var packed = PackedModelWeights.Load(args, path);
        using var adapter = withAdapter ? TinyModels.Adapter(args, 5) : null;
        int[][] sequences = [TinyModels.Prompt(1, 1), TinyModels.Prompt(17, 2), TinyModels.Prompt(9, 3)];

        var expected = new MistralModel(widened, adapter).PooledEmbeddings(sequences);
        var actual = Embeddings.PooledEmbeddings(packed, adapter, sequences);
        for (var i = 0; i < sequences.Length; i++)
        {
            AssertClose(expected[i], actual[i], $"sequence {i}");
        }
    }
}
