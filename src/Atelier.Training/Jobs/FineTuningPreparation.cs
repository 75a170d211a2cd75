using System.Globalization;
using Atelier.Core.Errors;
using Atelier.Data.Building;
using Atelier.Data.Dedup;
using Atelier.Data.Readers;
using Atelier.Data.Tokenization;

namespace Atelier.Training.Jobs;

/// <summary>The datasets a job trains and validates on, built in a staging directory.</summary>
/// <param name="Training">The training dataset version (deduplicated, decontaminated against the validation files).</param>
/// <param name="Validation">The validation dataset version, or null without validation files.</param>
public sealed record PreparedData(DatasetBuildResult Training, DatasetBuildResult? Validation);

/// <summary>The job's plan and Mistral's <c>metadata</c> figures, as validation fixes them.</summary>
/// <param name="Plan">What the trainer will do.</param>
/// <param name="DataTokens">Tokens in the training data after the pipeline.</param>
/// <param name="TrainTokens">Tokens the job will train on (steps × tokens per step).</param>
/// <param name="ExpectedDurationSeconds">An estimate from the model's size and the machine's measured training speed class.</param>
/// <param name="Epochs">Passes over the data that the steps amount to.</param>
public sealed record PlannedJob(FineTuningPlan Plan, long DataTokens, long TrainTokens, long ExpectedDurationSeconds, double Epochs);

/// <summary>Validation of a job: build its datasets with the base model's tokeniser, check them, fix the plan.</summary>
public static class FineTuningPreparation
{
    /// <summary>Default window length when the request gives no <c>seq_len</c>.</summary>
    public const int DefaultSeqLen = 2048;

    /// <summary>Default share of the valid training examples that curation may drop before validation fails.</summary>
    public const double DefaultMaxCurationDropFraction = 0.5;

    /// <summary>
    /// Builds the training dataset (validation files used for decontamination) and the validation
    /// dataset under <paramref name="stagingDirectory"/>. The builder resumes there after a restart.
    /// </summary>
    public static async Task<PreparedData> BuildAsync(
        IReadOnlyList<DatasetInput> training,
        IReadOnlyList<DatasetInput> validation,
        ITextTokenizer tokenizer,
        int seqLen,
        string stagingDirectory,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(training);
        ArgumentNullException.ThrowIfNull(validation);
        var options = new DatasetBuildOptions { SequenceLength = seqLen };

        // Built by an attempt that died before placing them: a build gives the same bytes again,
        // and an unfinished one resumes from its ".partial" directory.
        // (BuildValidationAsync clears its own "valid".)
        if (Directory.Exists(Path.Combine(stagingDirectory, "train")))
        {
            Directory.Delete(Path.Combine(stagingDirectory, "train"), recursive: true);
        }

        DatasetBuildResult train;
        try
        {
            train = await DatasetBuilder.BuildAsync(
                new DatasetBuildRequest { Training = training, Eval = validation, Tokenizer = tokenizer, Options = options },
                Path.Combine(stagingDirectory, "train"),
                cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (EmptyDatasetException e)
        {
            throw Refused($"The training files hold no example to train on: {e.Counters.DescribeCuration()}.", "training_files");
        }

        var valid = await BuildValidationAsync(validation, tokenizer, seqLen, stagingDirectory, cancellationToken).ConfigureAwait(false);
        return new PreparedData(train, valid);
    }

    /// <summary>
    /// Builds the validation dataset alone under <paramref name="stagingDirectory"/> (a job that
    /// trains on a built dataset version); null without validation files.
    /// </summary>
    public static async Task<DatasetBuildResult?> BuildValidationAsync(
        IReadOnlyList<DatasetInput> validation,
        ITextTokenizer tokenizer,
        int seqLen,
        string stagingDirectory,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(validation);
        if (validation.Count == 0)
        {
            return null;
        }

        var output = Path.Combine(stagingDirectory, "valid");
        if (Directory.Exists(output))
        {
            Directory.Delete(output, recursive: true);
        }

        // Validation data is measured as it is: no dedup, nothing dropped for quality.
        try
        {
            return await DatasetBuilder.BuildAsync(
                new DatasetBuildRequest
                {
                    Training = validation,
                    Tokenizer = tokenizer,
                    Options = new DatasetBuildOptions { SequenceLength = seqLen, ExactDedup = false, NearDedup = new MinHashOptions { Enabled = false } },
                },
                output,
                cancellationToken: cancellationToken).ConfigureAwait(false);
        }
        catch (EmptyDatasetException e)
        {
            throw Refused($"The validation files hold no example to measure on: {e.Counters.DescribeCuration()}.", "validation_files");
        }
    }

    /// <summary>
    /// Checks the built data against the request (<c>invalid_sample_skip_percentage</c>, at least
    /// one trainable window) and fixes the plan; throws <see cref="ValidationFailedException"/>
    /// naming what is wrong.
    /// </summary>
    /// <param name="request">The job's request.</param>
    /// <param name="data">The built datasets.</param>
    /// <param name="modelParameters">The base model's parameter count, for the duration estimate.</param>
    /// <param name="maxCurationDropFraction">
    /// The share of valid training examples that curation (dedup, decontamination, quality) may drop
    /// before validation fails; the request's <c>max_curation_drop_fraction</c> overrides it.
    /// </param>
    public static PlannedJob Plan(FineTuningJobRequest request, PreparedData data, long modelParameters, double maxCurationDropFraction = DefaultMaxCurationDropFraction)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(data);
        var h = request.Hyperparameters!;
        var counters = data.Training.Manifest.Counters;
        var problems = new List<Problem>();

        // Mistral's field is a fraction despite its name: 0.05 tolerates 5% invalid samples.
        var tolerated = request.InvalidSampleSkipPercentage ?? 0;
        // The builder counts valid examples and invalid lines apart.
        var samples = counters.ExamplesRead + counters.Issues;
        var invalid = samples == 0 ? 0 : (double)counters.Issues / samples;
        if (counters.Issues > 0 && invalid > tolerated)
        {
            var first = data.Training.Report.Issues.FirstOrDefault();
            problems.Add(new Problem(
                string.Create(CultureInfo.InvariantCulture, $"{counters.Issues} of {samples} samples are invalid ({invalid:P1}), more than invalid_sample_skip_percentage allows ({tolerated:P1}).{(first is null ? "" : $" First: {first}")}"),
                Field: "training_files"));
        }

        // Training on what is left after curation dropped most of the data is not what the user
        // asked for: say what was dropped and why instead (the report lists every example).
        var maxDropped = request.MaxCurationDropFraction ?? maxCurationDropFraction;
        var dropped = counters.ExamplesRead == 0 ? 0 : (double)counters.ExamplesDropped / counters.ExamplesRead;
        if (counters.ExamplesDropped > 0 && dropped > maxDropped)
        {
            problems.Add(new Problem(
                string.Create(CultureInfo.InvariantCulture, $"Curation dropped {dropped * 100:F1}% of the training examples, more than the {maxDropped * 100:F1}% allowed (max_curation_drop_fraction): {counters.DescribeCuration()}. The job's data report lists each dropped example with its reason."),
                Field: "training_files"));
        }

        if (counters.Windows == 0 || counters.TrainedTokens == 0)
        {
            problems.Add(new Problem("The training files hold no trainable tokens after validation, dedup and decontamination.", Field: "training_files"));
        }

        if (problems.Count > 0)
        {
            throw new ValidationFailedException(problems[0].Message, problems, problems.Count, "invalid_training_data");
        }

        var seqLen = data.Training.Manifest.Options.SequenceLength;
        var steps = h.TrainingSteps ?? (int)Math.Max(1, Math.Ceiling(h.Epochs!.Value * counters.Windows));
        var plan = new FineTuningPlan
        {
            SeqLen = seqLen,
            TrainingSteps = steps,
            LearningRate = h.LearningRate,
            WeightDecay = h.WeightDecay ?? 0.1,
            WarmupSteps = (int)Math.Round((h.WarmupFraction ?? 0.05) * steps),
            CheckpointEvery = Math.Max(1, (int)Math.Ceiling(steps / 10.0)),
            Seed = request.Seed ?? 0,
        };

        // About 6 FLOPs per parameter per trained token (forward and backward), at the ~20 GFLOP/s
        // the reference trainer reaches on one CPU socket: an estimate, refined by the first steps.
        var seconds = (long)Math.Ceiling(6.0 * modelParameters * plan.TrainTokensPerStep * steps / 20e9);
        return new PlannedJob(plan, counters.Tokens, plan.TrainTokensPerStep * steps, seconds, (double)steps / counters.Windows);
    }

    private static ValidationFailedException Refused(string message, string field) =>
        new(message, [new Problem(message, Field: field)], 1, "invalid_training_data");
}
