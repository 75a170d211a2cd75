using System.Runtime.InteropServices;
using Atelier.Modeling.Mistral;
using Atelier.Modeling.Training;

namespace Atelier.Modeling.Tests;

/// <summary>
/// Cancellation inside a pass: the token is cancelled at the k-th cancellation point of a step or
/// an evaluation, through the model's test seam, for every k the pass has.
/// </summary>
public sealed class CancellationTests
{
    private static readonly MistralArgs Args = TinyModelWriter.DefaultArgs;

    // Two micro-batches per step, so that a cancel can land in the second one after the first
    // one's gradient was accumulated.
    private static readonly TrainingBatch[] MicroBatches =
    [
        TrainingBatch.Pack(TestData.Tokens(17, Args.VocabSize, 80), TestData.Tokens(17, Args.VocabSize, 81)),
        TrainingBatch.Pack(TestData.Tokens(17, Args.VocabSize, 82), TestData.Tokens(17, Args.VocabSize, 83)),
    ];

    private static (MistralModel Model, LoraTrainer Trainer) Create()
    {
        var model = new MistralModel(MistralWeights.CreateRandom(Args, 21), LoraAdapter.Create(Args, new LoraConfig(4, 8, 0.1f), 22));
        var trainer = new LoraTrainer(model, new LoraTrainingOptions(new WarmupCosineSchedule(3e-3f, 1, 8), new AdamWOptions(WeightDecay: 0.01f), MaxGradNorm: 1f, Seed: 23));
        return (model, trainer);
    }

    /// <summary>The adapter's weights and AdamW's moments, bit for bit, with the step counts.</summary>
    private static List<(string Name, byte[] Bits)> State(LoraTrainer trainer) =>
        [
            .. trainer.StateTensors().Select(t => (t.Name, MemoryMarshal.AsBytes(t.Value.Span).ToArray())),
            ("steps", BitConverter.GetBytes(trainer.StepCount)),
            ("optimizer_steps", BitConverter.GetBytes(trainer.OptimizerStepCount)),
        ];

    private static void AssertSameState(List<(string Name, byte[] Bits)> expected, List<(string Name, byte[] Bits)> actual, string because)
    {
        Assert.Equal(expected.Select(e => e.Name), actual.Select(a => a.Name));
        for (var i = 0; i < expected.Count; i++)
        {
            Assert.True(expected[i].Bits.AsSpan().SequenceEqual(actual[i].Bits), $"{expected[i].Name} differs {because}");
        }
    }

    [Fact]
    public void TrainerStep_CancelledAtAnyPointInside_ThrowsAndIsAbandonedWhole()
    {
        // The reference: two uninterrupted steps, counting the cancellation points of the second.
        List<(string, byte[])> afterTwoSteps;
        var points = 0;
        var (reference, referenceTrainer) = Create();
        using (reference)
        using (referenceTrainer)
        {
            referenceTrainer.Step(MicroBatches);
            reference.CancellationPointReached = () => points++;
            referenceTrainer.Step(MicroBatches);
            afterTwoSteps = State(referenceTrainer);
        }

        // At least one point before each layer of each forward and each backward of each
        // micro-batch: a cancel never waits for more than one layer.
        Assert.True(points >= MicroBatches.Length * 2 * Args.NLayers, $"{points} cancellation points in a step");

        for (var k = 1; k <= points; k++)
        {
            var (model, trainer) = Create();
            using (model)
            using (trainer)
            {
                trainer.Step(MicroBatches);
                var before = State(trainer);
                using var cancel = new CancellationTokenSource();
                var reached = 0;
                model.CancellationPointReached = () =>
                {
                    if (++reached == k)
                    {
                        cancel.Cancel();
                    }
                };

                Assert.Throws<OperationCanceledException>(() => trainer.Step(MicroBatches, cancel.Token));

                // Thrown at the point where the cancel arrived, not at a later one.
                Assert.Equal(k, reached);
                AssertSameState(before, State(trainer), $"after a step cancelled at point {k} of {points}");

                // The abandoned step left nothing behind: taking it again ends exactly where the
                // uninterrupted run did (the partial gradient is discarded, the dropout masks repeat).
                model.CancellationPointReached = null;
                trainer.Step(MicroBatches);
                AssertSameState(afterTwoSteps, State(trainer), $"after retrying a step cancelled at point {k} of {points}");
            }
        }
    }

    [Fact]
    public void Evaluation_CancelledBetweenLayers_ThrowsAndLeavesTheModelAsItWas()
    {
        var (model, trainer) = Create();
        using (model)
        using (trainer)
        {
            trainer.Step(MicroBatches);
            var batch = MicroBatches[0];
            var loss = model.ComputeLoss(batch);
            AssertCancelsAtEveryPoint(model, cancel => model.ComputeLoss(batch, cancel));
            AssertCancelsAtEveryPoint(model, cancel => model.ForwardLogits(batch, cancel).Dispose());
            Assert.Equal(loss, model.ComputeLoss(batch));
        }
    }

    /// <summary>Counts the cancellation points of <paramref name="pass"/>, then cancels it at each one in turn.</summary>
    private static void AssertCancelsAtEveryPoint(MistralModel model, Action<CancellationToken> pass)
    {
        var points = 0;
        model.CancellationPointReached = () => points++;
        pass(CancellationToken.None);
        Assert.True(points >= Args.NLayers, $"{points} cancellation points in an evaluation pass");

        for (var k = 1; k <= points; k++)
        {
            using var cancel = new CancellationTokenSource();
            var reached = 0;
            model.CancellationPointReached = () =>
            {
                if (++reached == k)
                {
                    cancel.Cancel();
                }
            };

            Assert.Throws<OperationCanceledException>(() => pass(cancel.Token));
            Assert.Equal(k, reached);
        }

        model.CancellationPointReached = null;
    }
}
