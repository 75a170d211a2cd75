using Atelier.Modeling.Mistral;
using Atelier.Modeling.Tensors;

namespace Atelier.Modeling.Tests;

public class MistralModelTests
{
    [Theory]
    [InlineData(null)]
    [InlineData(3)]
    public void ForwardLogits_MatchANaiveDoublePrecisionReference_OnPackedSamplesWithLora(int? window)
    {
        var args = ModelTestFixtures.SmallArgs(window);
        using var model = ModelTestFixtures.ModelWithActiveLora(args);
        var tokens = TestData.Tokens(11, args.VocabSize, 40);
        int[] lengths = [6, 5];
        var batch = new TrainingBatch(tokens, new int[11], new float[11], lengths);
        using var logits = model.ForwardLogits(batch);
        var expected = NaiveMistral.Logits(model.Weights, model.Adapter, tokens, lengths);
        double worst = 0;
        for (var t = 0; t < tokens.Length; t++)
        {
            for (var v = 0; v < args.VocabSize; v++)
            {
                worst = Math.Max(worst, Math.Abs(logits.Row(t)[v] - expected[t][v]));
            }
        }

        Assert.True(worst < 2e-4, $"largest logit difference {worst}");
        Assert.True(expected.SelectMany(r => r).Max(Math.Abs) > 0.5, "logits should not be trivially small");
    }

    [Fact]
    public void PackedSamples_GetTheSameLogitsAsWhenRunAlone()
    {
        var args = ModelTestFixtures.SmallArgs();
        using var model = new MistralModel(MistralWeights.CreateRandom(args, 3));
        var first = TestData.Tokens(5, args.VocabSize, 41);
        var second = TestData.Tokens(7, args.VocabSize, 42);
        using var packed = model.ForwardLogits(new TrainingBatch([.. first, .. second], new int[12], new float[12], [5, 7]));
        using var alone = model.ForwardLogits(new TrainingBatch(second, new int[7], new float[7], [7]));
        for (var t = 0; t < 7; t++)
        {
            var a = packed.Row(5 + t).ToArray();
            var b = alone.Row(t).ToArray();
            for (var v = 0; v < a.Length; v++)
            {
                Assert.Equal(b[v], a[v], 4);
            }
        }
    }

    [Theory]
    [InlineData(null)]
    [InlineData(4)]
    public void KvCacheInference_ReproducesTheFullForward_TokenByToken(int? window)
    {
        var args = ModelTestFixtures.SmallArgs(window);
        using var model = ModelTestFixtures.ModelWithActiveLora(args);
        var tokens = TestData.Tokens(10, args.VocabSize, 43);
        using var full = model.ForwardLogits(new TrainingBatch(tokens, new int[10], new float[10], [10]));
        using var session = model.StartSession(16);
        using var prefill = session.AppendAll(tokens.AsSpan(0, 4));
        for (var t = 0; t < 4; t++)
        {
            AssertClose(full.Row(t), prefill.Row(t));
        }

        for (var t = 4; t < 10; t++)
        {
            var step = session.Append([tokens[t]]);
            AssertClose(full.Row(t), step);
        }

        Assert.Equal(10, session.Length);
        Assert.Throws<InvalidOperationException>(() => session.Append(new int[7]));
    }

    private static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (var i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) < 1e-4, $"logit {i}: {actual[i]} vs {expected[i]}");
        }
    }

    [Fact]
    public void BlockBackward_MatchesFiniteDifferences_ForTheBlockInput()
    {
        var args = ModelTestFixtures.SmallArgs(window: 4);
        using var model = ModelTestFixtures.ModelWithActiveLora(args);
        var batch = new TrainingBatch(TestData.Tokens(9, args.VocabSize, 44), new int[9], new float[9], [5, 4]);
        var ctx = model.TrainingContext(batch, training: false, dropoutKey: 0);
        var x = TestData.Uniform(9 * args.Dim, 45);
        var r = TestData.Uniform(9 * args.Dim, 46);
        double Loss()
        {
            using var xt = Tensor.FromSpan(x, 9, args.Dim);
            using var y = model.BlockForward(1, xt, ctx, null);
            return TestData.Project(y.Span, r);
        }

        using var xt = Tensor.FromSpan(x, 9, args.Dim);
        using var cache = new MistralModel.LayerCache(LinearKinds.All.Count);
        using var y = model.BlockForward(1, xt, ctx, cache);
        using var dOut = Tensor.FromSpan(r, 9, args.Dim);
        using var dx = model.BlockBackward(1, dOut, ctx, cache);
        TestData.CheckGradient("dx", x, dx.Span.ToArray(), Loss, absTol: 1e-3);
    }

    [Trait("Category", "Slow")]
    [Theory]
    [InlineData(0f)]
    [InlineData(0.3f)]
    public void LoraGradients_MatchFiniteDifferencesOfTheLoss_ForEveryAdaptedProjection(float dropout)
    {
        var args = ModelTestFixtures.SmallArgs(window: 5);
        using var model = ModelTestFixtures.ModelWithActiveLora(args, dropout);
        var tokens = TestData.Tokens(13, args.VocabSize, 47);
        var targets = TestData.Tokens(13, args.VocabSize, 48);
        var mask = Enumerable.Range(0, 13).Select(i => i % 4 == 0 ? 0f : 1f).ToArray();
        var batch = new TrainingBatch(tokens, targets, mask, [7, 6]);
        const ulong key = 99;
        var adapter = model.Adapter!;
        double Loss()
        {
            var loss = model.ForwardBackward(batch, 1f, key);
            adapter.ZeroGrad();
            return loss;
        }

        model.ForwardBackward(batch, 1f, key);
        var grads = adapter.Parameters().ToDictionary(p => p.Name, p => p.Grad.Span.ToArray());
        adapter.ZeroGrad();
        var checkedCount = 0;
        foreach (var (name, value, _) in adapter.Parameters())
        {
            var arr = value.Span.ToArray();
            var g = grads[name];
            Assert.Contains(g, v => v != 0);
            var maxGrad = g.Max(Math.Abs);
            var indices = TestData.Sample(arr.Length, 4, name.GetHashCode(StringComparison.Ordinal) & 0xFFFF);
            TestData.CheckGradient(name, arr, g, () =>
            {
                arr.CopyTo(value.Span);
                return Loss();
            }, eps: 5e-3f, absTol: 2e-5 + (0.01 * maxGrad), relTol: 0.03, indices: indices);
            arr.CopyTo(value.Span);
            checkedCount++;
        }

        Assert.Equal(2 * 7 * args.NLayers, checkedCount);
    }

    [Fact]
    public void LossAndGradients_ComputedInChunksOfLogits_MatchTheWholeSequenceLossAndFiniteDifferences()
    {
        // 300 positions span three chunks of the output head; the middle chunk has no loss at all.
        var args = ModelTestFixtures.SmallArgs();
        using var model = ModelTestFixtures.ModelWithActiveLora(args, targets: [LinearKind.Wo, LinearKind.W2]);
        var mask = Enumerable.Range(0, 300).Select(i => i is >= 128 and < 256 ? 0f : (i % 3 == 0 ? 0.5f : 1f)).ToArray();
        var batch = new TrainingBatch(TestData.Tokens(300, args.VocabSize, 50), TestData.Tokens(300, args.VocabSize, 51), mask, [170, 130]);
        using (var logits = model.ForwardLogits(batch))
        {
            var whole = Atelier.Modeling.Kernels.Ops.CrossEntropy(logits.Span, batch.Targets, batch.LossMask, args.VocabSize, default);
            Assert.Equal(whole, model.ComputeLoss(batch), 6);
        }

        var adapter = model.Adapter!;
        model.ForwardBackward(batch);
        var pair = adapter[1, LinearKind.W2]!;
        var grad = pair.GradB.Span.ToArray();
        adapter.ZeroGrad();
        var values = pair.B.Span.ToArray();
        TestData.CheckGradient("w2.lora_B", values, grad, () =>
        {
            values.CopyTo(pair.B.Span);
            return model.ComputeLoss(batch);
        }, eps: 5e-3f, absTol: 2e-5 + (0.01 * grad.Max(Math.Abs)), relTol: 0.03, indices: TestData.Sample(values.Length, 4, 5));
    }

    [Fact]
    public void MergeAdapter_FoldsLoraIntoTheWeights_WithoutChangingTheLogits()
    {
        var args = ModelTestFixtures.SmallArgs();
        using var model = ModelTestFixtures.ModelWithActiveLora(args);
        var batch = new TrainingBatch(TestData.Tokens(8, args.VocabSize, 49), new int[8], new float[8], [8]);
        using var before = model.ForwardLogits(batch);
        using var adapter = model.MergeAdapter();
        Assert.Null(model.Adapter);
        using var after = model.ForwardLogits(batch);
        for (var i = 0; i < before.Length; i++)
        {
            Assert.True(Math.Abs(before.Span[i] - after.Span[i]) < 1e-4, $"logit {i}: {after.Span[i]} vs {before.Span[i]}");
        }
    }

    [Fact]
    public void Load_RefusesAModelWhoseTensorShapesDisagreeWithParams()
    {
        var dir = Atelier.Testing.TestCleanup.CreateDirectory("atelier-model-");
        try
        {
            var args = TinyModelWriter.Write(dir, seed: 5);
            File.WriteAllText(Path.Combine(dir, "params.json"), (args with { HiddenDim = args.HiddenDim + 2 }).ToJson());
            var e = Assert.Throws<Atelier.Modeling.SafeTensors.ModelFormatException>(() => MistralModel.Load(dir));
            Assert.Contains("feed_forward.w1", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void ParamsJson_IsParsedWithGroupedQueryAttentionAndOptionalWindow()
    {
        var args = MistralArgs.Parse("""{"dim":4096,"n_layers":32,"head_dim":128,"hidden_dim":14336,"n_heads":32,"n_kv_heads":8,"norm_eps":1e-05,"vocab_size":32768,"rope_theta":1000000.0}""");
        Assert.Equal(8, args.NKvHeads);
        Assert.Null(args.SlidingWindow);
        Assert.Equal(1_000_000.0, args.RopeTheta);
        Assert.Equal(args, MistralArgs.Parse(args.ToJson()));
        var windowed = MistralArgs.Parse("""{"dim":64,"n_layers":1,"head_dim":16,"hidden_dim":96,"n_heads":4,"n_kv_heads":2,"norm_eps":1e-5,"vocab_size":10,"sliding_window":4096}""");
        Assert.Equal(4096, windowed.SlidingWindow);
        Assert.Throws<Atelier.Modeling.SafeTensors.ModelFormatException>(() => MistralArgs.Parse("""{"dim":64,"n_layers":1,"hidden_dim":96,"n_heads":4,"n_kv_heads":3,"vocab_size":10}"""));
        Assert.Throws<Atelier.Modeling.SafeTensors.ModelFormatException>(() => MistralArgs.Parse("""{"dim":64}"""));
    }
}
