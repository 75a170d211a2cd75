using Atelier.Modeling.Kernels;
using Atelier.Modeling.Mistral;
using Atelier.Modeling.Tensors;
using Atelier.Modeling.Training;

namespace Atelier.Modeling.Tests;

[Collection(GlobalKernelSettings.Name)]
public sealed class TrainingTests : IDisposable
{
    private readonly string _dir = Atelier.Testing.TestCleanup.CreateDirectory("atelier-train-");

    public void Dispose() => Directory.Delete(_dir, true);

    private static TrainingBatch[] Dataset(MistralArgs args, int seed)
    {
        var seqs = Enumerable.Range(0, 4).Select(i => TestData.Tokens(17, args.VocabSize, seed + i)).ToArray();
        return [TrainingBatch.Pack(seqs[0], seqs[1]), TrainingBatch.Pack(seqs[2], seqs[3])];
    }

    private static byte[] Train(int threads, ulong trainSeed, int steps, float dropout)
    {
        var saved = KernelParallelism.MaxThreads;
        KernelParallelism.MaxThreads = threads;
        try
        {
            var args = TinyModelWriter.DefaultArgs;
            using var model = new MistralModel(MistralWeights.CreateRandom(args, 11), LoraAdapter.Create(args, new LoraConfig(8, 16, dropout), 12));
            using var trainer = new LoraTrainer(model, new LoraTrainingOptions(
                new WarmupCosineSchedule(3e-3f, 2, steps), new AdamWOptions(WeightDecay: 0.01f), MaxGradNorm: 1f, Seed: trainSeed));
            var data = Dataset(args, 60);
            for (var s = 0; s < steps; s++)
            {
                trainer.Step(data);
            }

            var path = Path.GetTempFileName();
            try
            {
                model.Adapter!.Save(path, Atelier.Modeling.SafeTensors.SafeTensorDType.F32);
                return File.ReadAllBytes(path);
            }
            finally
            {
                File.Delete(path);
            }
        }
        finally
        {
            KernelParallelism.MaxThreads = saved;
        }
    }

    [Trait("Category", "Slow")]
    [Fact]
    public void LoraTraining_OverfitsATinyDataset_LossFallsBelowHalfANat()
    {
        var args = TinyModelWriter.DefaultArgs;
        using var model = new MistralModel(MistralWeights.CreateRandom(args, 7), LoraAdapter.Create(args, new LoraConfig(8, 16), 8));
        const int steps = 60;
        using var trainer = new LoraTrainer(model, new LoraTrainingOptions(
            new WarmupCosineSchedule(1e-2f, 5, steps, 1e-3f), new AdamWOptions(WeightDecay: 0f), MaxGradNorm: 1f));
        var data = Dataset(args, 50);
        var first = trainer.Step([data[0], data[1]]);
        TrainStepResult last = first;
        for (var s = 1; s < steps; s++)
        {
            last = trainer.Step([data[0], data[1]]);
        }

        // Starts near ln(276) ≈ 5.6 nats (random base model); memorising 64 positions must bring it under 0.5.
        Assert.True(first.Loss > 4.0, $"initial loss {first.Loss}");
        var final = (model.ComputeLoss(data[0]) + model.ComputeLoss(data[1])) / 2;
        Assert.True(final < 0.5, $"loss after {steps} steps is {final} (started at {first.Loss})");
    }

    [Trait("Category", "Slow")]
    [Fact]
    public void LoraTraining_IsBitIdentical_AcrossRunsAndThreadCounts_WithDropoutAndAccumulation()
    {
        var a = Train(threads: 1, trainSeed: 5, steps: 4, dropout: 0.1f);
        var b = Train(threads: 2, trainSeed: 5, steps: 4, dropout: 0.1f);
        var c = Train(threads: 3, trainSeed: 5, steps: 4, dropout: 0.1f);
        Assert.Equal(a, b);
        Assert.Equal(a, c);

        // A different dropout seed changes the result, so equality above is not vacuous.
        Assert.NotEqual(a, Train(threads: 2, trainSeed: 6, steps: 4, dropout: 0.1f));
    }

    [Fact]
    public void LoraTrainer_ResumedFromACheckpoint_EndsBitIdenticalToAnUninterruptedRun()
    {
        var args = TinyModelWriter.DefaultArgs;
        var options = new LoraTrainingOptions(new WarmupCosineSchedule(3e-3f, 2, 6), new AdamWOptions(), MaxGradNorm: 1f, Seed: 3);
        var config = new LoraConfig(4, 8, 0.1f);
        var data = Dataset(args, 70);
        byte[] Adapter(MistralModel m)
        {
            var path = Path.Combine(_dir, Guid.NewGuid().ToString("N"));
            m.Adapter!.Save(path, Atelier.Modeling.SafeTensors.SafeTensorDType.F32);
            return File.ReadAllBytes(path);
        }

        using var straight = new MistralModel(MistralWeights.CreateRandom(args, 1), LoraAdapter.Create(args, config, 2));
        using (var trainer = new LoraTrainer(straight, options))
        {
            for (var s = 0; s < 4; s++)
            {
                trainer.Step(data);
            }
        }

        var checkpoint = Path.Combine(_dir, "trainer.safetensors");
        using (var first = new MistralModel(MistralWeights.CreateRandom(args, 1), LoraAdapter.Create(args, config, 2)))
        using (var trainer = new LoraTrainer(first, options))
        {
            trainer.Step(data);
            trainer.Step(data);
            trainer.SaveCheckpoint(checkpoint);
        }

        // A fresh process would build the model and a fresh adapter, then load the checkpoint over them.
        using var resumed = new MistralModel(MistralWeights.CreateRandom(args, 1), LoraAdapter.Create(args, config, 99));
        using (var trainer = new LoraTrainer(resumed, options))
        {
            trainer.LoadCheckpoint(checkpoint);
            Assert.Equal(2, trainer.StepCount);
            trainer.Step(data);
            trainer.Step(data);
        }

        Assert.Equal(Adapter(straight), Adapter(resumed));
    }

    [Fact]
    public void LoraAdapter_StartsAsTheBaseModel_AndIsSavedWithMistralFinetuneNames()
    {
        var args = TinyModelWriter.DefaultArgs;
        var config = new LoraConfig(4, 8);
        using var adapter = LoraAdapter.Create(args, config, 3);
        var path = Path.Combine(_dir, "lora.safetensors");
        adapter.Save(path, Atelier.Modeling.SafeTensors.SafeTensorDType.F32);
        using var file = Atelier.Modeling.SafeTensors.SafeTensorsFile.Open(path);
        Assert.Equal(2 * 7 * args.NLayers, file.Tensors.Count);
        Assert.Equal([4L, 64L], file.Get("layers.0.attention.wq.lora_A.weight").Shape);
        Assert.Equal([192L, 4L], file.Get("layers.1.feed_forward.w1.lora_B.weight").Shape);
        Assert.Equal([64L, 4L], file.Get("layers.1.feed_forward.w2.lora_B.weight").Shape);

        // B is zero and A is Kaiming-uniform with bound 1/√in.
        var a = adapter[0, LinearKind.W2]!.A.Span.ToArray();
        Assert.All(adapter[0, LinearKind.W2]!.B.Span.ToArray(), v => Assert.Equal(0f, v));
        Assert.True(a.Max(Math.Abs) <= 1 / Math.Sqrt(192));
        Assert.True(a.Max(Math.Abs) > 0.8 / Math.Sqrt(192));

        using var loaded = LoraAdapter.Load(args, config, path);
        Assert.Equal(adapter[1, LinearKind.Wv]!.A.Span.ToArray(), loaded[1, LinearKind.Wv]!.A.Span.ToArray());

        using var weights = MistralWeights.CreateRandom(args, 4);
        using var withAdapter = new MistralModel(weights, null);
        var batch = TrainingBatch.Pack(TestData.Tokens(9, args.VocabSize, 5));
        var baseLoss = withAdapter.ComputeLoss(batch);
        withAdapter.Adapter = adapter;
        Assert.Equal(baseLoss, withAdapter.ComputeLoss(batch));
        withAdapter.Adapter = null;
    }

    [Fact]
    public void AdamW_FollowsTheDecoupledWeightDecayUpdate()
    {
        using var p = Tensor.FromSpan([1f, -2f], 2);
        using var g = new Tensor(2);
        var opts = new AdamWOptions(0.9f, 0.99f, 1e-8f, 0.1f);
        using var opt = new AdamW([(p, g)], opts);
        double[] x = [1, -2];
        double[] m = [0, 0];
        double[] v = [0, 0];
        double[][] grads = [[0.5, -1], [0.25, 2], [-3, 0]];
        for (var step = 1; step <= 3; step++)
        {
            g.Span[0] = (float)grads[step - 1][0];
            g.Span[1] = (float)grads[step - 1][1];
            const double lr = 0.01;
            opt.Step((float)lr);
            for (var i = 0; i < 2; i++)
            {
                x[i] *= 1 - (lr * 0.1);
                m[i] = (0.9 * m[i]) + (0.1 * grads[step - 1][i]);
                v[i] = (0.99 * v[i]) + (0.01 * grads[step - 1][i] * grads[step - 1][i]);
                var mh = m[i] / (1 - Math.Pow(0.9, step));
                var vh = v[i] / (1 - Math.Pow(0.99, step));
                x[i] -= lr * mh / (Math.Sqrt(vh) + 1e-8);
            }
        }

        Assert.Equal(x[0], p.Span[0], 5);
        Assert.Equal(x[1], p.Span[1], 5);
    }

    [Fact]
    public void WarmupCosineSchedule_RampsLinearlyThenDecaysToTheFloor()
    {
        var s = new WarmupCosineSchedule(1f, 4, 14, 0.1f);
        Assert.Equal(0.25f, s.At(0));
        Assert.Equal(1f, s.At(3));
        Assert.Equal(1f, s.At(4));
        Assert.Equal(0.55f, s.At(9), 5);
        Assert.Equal(0.1f, s.At(14), 5);
        Assert.Equal(0.1f, s.At(100), 5);
    }

    [Fact]
    public void GradientClipping_ScalesToTheMaximumNorm_OnlyWhenAbove()
    {
        using var a = Tensor.FromSpan([3f, 0f], 2);
        using var b = Tensor.FromSpan([4f], 1);
        Assert.Equal(5.0, GradientClipping.ClipByGlobalNorm([a, b], 1f), 6);
        Assert.Equal(0.6f, a.Span[0], 5);
        Assert.Equal(0.8f, b.Span[0], 5);
        Assert.Equal(1.0, GradientClipping.ClipByGlobalNorm([a, b], 2f), 5);
        Assert.Equal(0.6f, a.Span[0], 5);
    }
}
