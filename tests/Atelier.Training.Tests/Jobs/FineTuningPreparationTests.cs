using System.Text;
using System.Text.Json;
using Atelier.Core.Errors;
using Atelier.Data.Readers;
using Atelier.Data.Tokenization;
using Atelier.Modeling.Mistral;
using Atelier.Training.Jobs;

namespace Atelier.Training.Tests.Jobs;

/// <summary>Validation of a job's data: <c>invalid_sample_skip_percentage</c>, empty data, the plan's figures.</summary>
public sealed class FineTuningPreparationTests : IDisposable
{
    private readonly List<string> _directories = [];

    public void Dispose()
    {
        foreach (var directory in _directories)
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    private async Task<PreparedData> BuildAsync(int valid, int invalid)
    {
        var work = Atelier.Testing.TestCleanup.CreateDirectory("atelier-prep");
        _directories.Add(work);
        var modelDir = Path.Combine(work, "model");
        TinyModelWriter.Write(modelDir);
        var lines = Enumerable.Range(0, valid).Select(i => JsonSerializer.Serialize(new
        {
            messages = new object[] { new { role = "user", content = $"Say word {i}." }, new { role = "assistant", content = $"word {i}." } },
        })).Concat(Enumerable.Range(0, invalid).Select(i => $$"""{"messages":[{"role":"user","content":"no answer {{i}}"}]}"""));
        var bytes = Encoding.UTF8.GetBytes(string.Join("\n", lines) + "\n");
        var input = new DatasetInput("train.jsonl", () => new MemoryStream(bytes), DataFormat.FineTuneJsonl);
        return await FineTuningPreparation.BuildAsync([input], [], ModelTokenizers.Load(modelDir), 64, Path.Combine(work, "data"), CancellationToken.None);
    }

    private static FineTuningJobRequest Request(double? skip, int? steps = 10, double? epochs = null) => new()
    {
        Model = "tiny",
        TrainingFiles = [new TrainingFileRef { FileId = "f" }],
        InvalidSampleSkipPercentage = skip,
        Hyperparameters = new CompletionHyperparameters { TrainingSteps = steps, Epochs = epochs, LearningRate = 1e-3 },
    };

    [Fact]
    public async Task InvalidSamples_AboveTheSkipPercentage_FailValidation_NamingTheFirst()
    {
        var data = await BuildAsync(valid: 8, invalid: 2);
        Assert.Equal(2, data.Training.Manifest.Counters.Issues);

        var failure = Assert.Throws<ValidationFailedException>(() => FineTuningPreparation.Plan(Request(skip: null), data, 1000));
        Assert.Contains("2 of 10 samples are invalid", failure.Message, StringComparison.Ordinal);
        Assert.Contains("train.jsonl", failure.Message, StringComparison.Ordinal);
        Assert.Throws<ValidationFailedException>(() => FineTuningPreparation.Plan(Request(skip: 0.1), data, 1000));

        // 20% invalid is within a 25% allowance: the valid samples are trained on.
        var planned = FineTuningPreparation.Plan(Request(skip: 0.25), data, 1000);
        Assert.Equal(10, planned.Plan.TrainingSteps);
        Assert.Equal(64, planned.Plan.TrainTokensPerStep);
        Assert.Equal(640, planned.TrainTokens);
        Assert.Equal(data.Training.Manifest.Counters.Tokens, planned.DataTokens);
    }

    [Fact]
    public async Task Epochs_BecomeStepsOverTheWindows_AndCheckpointsComeEveryTenth()
    {
        var data = await BuildAsync(valid: 40, invalid: 0);
        var windows = data.Training.Manifest.Counters.Windows;
        var planned = FineTuningPreparation.Plan(Request(skip: null, steps: null, epochs: 2), data, 1000);
        Assert.Equal((int)(2 * windows), planned.Plan.TrainingSteps);
        Assert.Equal(2.0, planned.Epochs, 6);
        Assert.Equal(Math.Max(1, (int)Math.Ceiling(planned.Plan.TrainingSteps / 10.0)), planned.Plan.CheckpointEvery);
    }

    [Fact]
    public async Task DataWithNothingTrainable_FailsValidation_NamingTheCounts()
    {
        var failure = await Assert.ThrowsAsync<ValidationFailedException>(() => BuildAsync(valid: 0, invalid: 3));
        Assert.Equal("The training files hold no example to train on: kept 0 of 0 examples; 3 invalid lines.", failure.Message);
        Assert.Contains(failure.Problems, p => p.Field == "training_files");
    }

    [Fact]
    public void ExpectedDuration_IsMeasuredFromTheStepsAfterTheFirst_ThenRefreshedAtEachCheckpoint()
    {
        var clock = new ManualClock();
        var estimate = new TrainingDurationEstimate(totalSteps: 20, every: 5, clock);
        clock.Advance(TimeSpan.FromSeconds(4));   // loading the model, first step with warm-up
        Assert.Null(estimate.StepFinished(1));
        clock.Advance(TimeSpan.FromSeconds(2));
        Assert.Null(estimate.StepFinished(2));
        clock.Advance(TimeSpan.FromSeconds(2));

        // 8 s so far, 2 s a step since the first, 17 steps to go.
        Assert.Equal(8 + 34, estimate.StepFinished(3));
        clock.Advance(TimeSpan.FromSeconds(2));
        Assert.Null(estimate.StepFinished(4));
        clock.Advance(TimeSpan.FromSeconds(4));   // a checkpoint stall counts
        Assert.Equal(14 + (15 * 2.5), estimate.StepFinished(5)!.Value, 0);
    }

    [Fact]
    public void ExpectedDuration_OfAResumedRun_MeasuresFromItsOwnFirstStep()
    {
        var clock = new ManualClock();
        var estimate = new TrainingDurationEstimate(totalSteps: 10, every: 2, clock);
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Null(estimate.StepFinished(7));
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Null(estimate.StepFinished(8));
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(4, estimate.StepFinished(9));
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(4, estimate.StepFinished(10));
    }

    private sealed class ManualClock : TimeProvider
    {
        private long _ticks;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => _ticks;

        public void Advance(TimeSpan by) => _ticks += by.Ticks;
    }
}
