using Atelier.Core.Errors;

namespace Atelier.Training.Jobs;

/// <summary>A training file and its weight, as <c>training_files[]</c> of Mistral's create request carries them.</summary>
public sealed record TrainingFileRef
{
    /// <summary>The uploaded file's id.</summary>
    public string FileId { get; init; } = "";

    /// <summary>Sampling weight; Atelier trains on every file once per epoch and records the weight.</summary>
    public double Weight { get; init; } = 1;
}

/// <summary>A checkpoint a new job starts from.</summary>
/// <param name="JobId">The job that wrote it.</param>
/// <param name="Step">Its step.</param>
public sealed record CheckpointStart(string JobId, long Step);

/// <summary><c>hyperparameters</c> of a completion fine-tune, as Mistral names them.</summary>
public sealed record CompletionHyperparameters
{
    /// <summary>Optimiser steps; when null, <see cref="Epochs"/> decides.</summary>
    public int? TrainingSteps { get; init; }

    /// <summary>Peak learning rate.</summary>
    public double LearningRate { get; init; } = 1e-4;

    /// <summary>AdamW weight decay.</summary>
    public double? WeightDecay { get; init; } = 0.1;

    /// <summary>Share of the steps spent warming the learning rate up.</summary>
    public double? WarmupFraction { get; init; } = 0.05;

    /// <summary>Passes over the training data, when <see cref="TrainingSteps"/> is not given.</summary>
    public double? Epochs { get; init; }

    /// <summary>Tokens per packed sequence.</summary>
    public int? SeqLen { get; init; }

    /// <summary>Fill-in-the-middle ratio (code models); accepted and recorded, not used by the reference trainer.</summary>
    public double? FimRatio { get; init; }
}

/// <summary>The body of <c>POST /v1/fine_tuning/jobs</c>, field for field as <c>@mistralai/mistralai</c> 2.4.0 sends it.</summary>
public sealed record FineTuningJobRequest
{
    /// <summary>The base model's id.</summary>
    public string? Model { get; init; }

    /// <summary>Files to train on.</summary>
    public IReadOnlyList<TrainingFileRef>? TrainingFiles { get; init; }

    /// <summary>Files to compute validation loss and token accuracy on at each checkpoint.</summary>
    public IReadOnlyList<string>? ValidationFiles { get; init; }

    /// <summary>Appended to the fine-tuned model's name (at most 18 characters).</summary>
    public string? Suffix { get; init; }

    /// <summary>Weights &amp; Biases integrations: nothing leaves the site, so any given are refused.</summary>
    public IReadOnlyList<System.Text.Json.JsonElement>? Integrations { get; init; }

    /// <summary>Start as soon as validated (default true).</summary>
    public bool? AutoStart { get; init; }

    /// <summary>The share of invalid samples (in percent) tolerated before validation fails.</summary>
    public double? InvalidSampleSkipPercentage { get; init; }

    /// <summary>Only <c>completion</c>.</summary>
    public string? JobType { get; init; }

    /// <summary>Training parameters.</summary>
    public CompletionHyperparameters? Hyperparameters { get; init; }

    /// <summary>GitHub repositories: refused, for the same reason as integrations.</summary>
    public IReadOnlyList<System.Text.Json.JsonElement>? Repositories { get; init; }

    /// <summary>Classifier targets: refused, only completion jobs are supported.</summary>
    public IReadOnlyList<System.Text.Json.JsonElement>? ClassifierTargets { get; init; }

    /// <summary>Seeds the adapter's initialisation and the data order (Atelier's extension; default 0).</summary>
    public ulong? Seed { get; init; }

    /// <summary>Start from another job's checkpoint instead of a fresh adapter (Atelier's extension; a restore into a new job).</summary>
    public CheckpointStart? StartFrom { get; init; }

    /// <summary>
    /// A built dataset version to train on instead of <see cref="TrainingFiles"/> (Atelier's
    /// extension): its shards are used as they are, so it must have been built with this job's
    /// base model (<c>datasets build --model</c>).
    /// </summary>
    public string? DatasetId { get; init; }

    /// <summary>
    /// The share (0 to 1) of valid training examples that curation may drop (duplicates,
    /// contamination, quality) before validation fails instead of training on the rest (Atelier's
    /// extension; default from the server's configuration, 0.5).
    /// </summary>
    public double? MaxCurationDropFraction { get; init; }

    /// <summary>
    /// The registered model name the fine-tuned model becomes the next version of (Atelier's
    /// extension); default <c>&lt;model&gt;:&lt;suffix&gt;</c>, or <c>&lt;model&gt;:fine-tuned</c> without a suffix.
    /// </summary>
    public string? RegisteredModelName { get; init; }

    /// <summary>
    /// Checks every field that needs nothing but the request, and throws a 422 listing each
    /// problem with its field; model and file existence are checked by the caller.
    /// </summary>
    public void Validate()
    {
        var problems = new List<Problem>();
        if (string.IsNullOrWhiteSpace(Model))
        {
            problems.Add(new Problem("'model' is required.", Field: "model"));
        }

        if (DatasetId is not null && TrainingFiles is { Count: > 0 })
        {
            problems.Add(new Problem("Give 'training_files' or 'dataset_id', not both: a dataset version already holds its training data.", Field: "dataset_id"));
        }
        else if (DatasetId is not null && string.IsNullOrWhiteSpace(DatasetId))
        {
            problems.Add(new Problem("'dataset_id' must name a dataset version.", Field: "dataset_id"));
        }
        else if (DatasetId is null && TrainingFiles is not { Count: > 0 })
        {
            problems.Add(new Problem("'training_files' needs at least one file (or give 'dataset_id').", Field: "training_files"));
        }
        else if (TrainingFiles is not null)
        {
            for (var i = 0; i < TrainingFiles.Count; i++)
            {
                if (string.IsNullOrWhiteSpace(TrainingFiles[i].FileId))
                {
                    problems.Add(new Problem("'file_id' is required.", Field: $"training_files[{i}].file_id"));
                }

                if (!(TrainingFiles[i].Weight > 0) || double.IsInfinity(TrainingFiles[i].Weight))
                {
                    problems.Add(new Problem($"'weight' must be a positive number, not {TrainingFiles[i].Weight}.", Field: $"training_files[{i}].weight"));
                }
            }
        }

        Duplicates(TrainingFiles?.Select(f => f?.FileId), "training_files", ".file_id");
        Duplicates(ValidationFiles, "validation_files", "");

        if (Suffix is { } suffix && (suffix.Length is 0 or > 18 || !suffix.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')))
        {
            problems.Add(new Problem("'suffix' must be 1 to 18 characters of letters, digits, '-', '_' or '.'.", Field: "suffix"));
        }

        if (RegisteredModelName is { } registeredName && !Atelier.Registry.RegisteredNames.IsValidName(registeredName))
        {
            problems.Add(new Problem($"'registered_model_name' must be 1 to {Atelier.Registry.RegisteredNames.MaxNameLength} characters of letters, digits, '.', '_', '-' or ':', starting with a letter or digit.", Field: "registered_model_name"));
        }

        if (JobType is not (null or "completion"))
        {
            problems.Add(new Problem($"'job_type' '{JobType}' is not supported; Atelier trains 'completion' jobs.", Field: "job_type"));
        }

        if (Integrations is { Count: > 0 })
        {
            problems.Add(new Problem("Integrations send training metrics to a third-party service; Atelier keeps them on site. Watch the job's events and checkpoints instead.", Field: "integrations"));
        }

        if (Repositories is { Count: > 0 })
        {
            problems.Add(new Problem("Repositories are not supported.", Field: "repositories"));
        }

        if (MaxCurationDropFraction is { } maxDropped && !(maxDropped is >= 0 and <= 1))
        {
            problems.Add(new Problem($"'max_curation_drop_fraction' must be between 0 and 1, not {maxDropped}.", Field: "max_curation_drop_fraction"));
        }

        if (ClassifierTargets is { Count: > 0 })
        {
            problems.Add(new Problem("Classifier targets are not supported; Atelier trains 'completion' jobs.", Field: "classifier_targets"));
        }

        if (InvalidSampleSkipPercentage is { } skip && (skip is < 0 or > 0.5 || double.IsNaN(skip)))
        {
            problems.Add(new Problem($"'invalid_sample_skip_percentage' must be between 0 and 0.5, not {skip}.", Field: "invalid_sample_skip_percentage"));
        }

        if (Hyperparameters is not { } h)
        {
            problems.Add(new Problem("'hyperparameters' is required.", Field: "hyperparameters"));
        }
        else
        {
            Range(h.TrainingSteps, 1, 1_000_000, "training_steps");
            Range(h.LearningRate, 1e-8, 1, "learning_rate");
            Range(h.WeightDecay, 0, 1, "weight_decay");
            Range(h.WarmupFraction, 0, 1, "warmup_fraction");
            Range(h.Epochs, 0.01, 1000, "epochs");
            Range(h.SeqLen, 16, 1 << 20, "seq_len");
            Range(h.FimRatio, 0, 1, "fim_ratio");
            if (h.TrainingSteps is null && h.Epochs is null)
            {
                problems.Add(new Problem("Give 'training_steps' or 'epochs'.", Field: "hyperparameters.training_steps"));
            }
            else if (h.TrainingSteps is not null && h.Epochs is not null)
            {
                // Each one alone decides when training stops; with both, one would be silently ignored.
                problems.Add(new Problem("Give 'training_steps' or 'epochs', not both: each one alone decides how long the job trains.", Field: "hyperparameters.training_steps, hyperparameters.epochs"));
            }
        }

        if (problems.Count > 0)
        {
            throw new ValidationFailedException($"The fine-tuning job request is invalid: {problems[0].Message}", problems, problems.Count, "invalid_request");
        }

        // The same file twice would weight it twice without saying so, and a thousand copies
        // multiply the work of every step that reads the files.
        void Duplicates(IEnumerable<string?>? ids, string list, string suffix)
        {
            var first = new Dictionary<string, int>(StringComparer.Ordinal);
            var i = 0;
            foreach (var id in ids ?? [])
            {
                if (id is not null && !first.TryAdd(id, i))
                {
                    problems.Add(new Problem($"File '{id}' is listed again at index {i} (first at index {first[id]}); list each file once (use 'weight' to weight it).", Field: $"{list}[{i}]{suffix}"));
                }

                i++;
            }
        }

        void Range(double? value, double min, double max, string field)
        {
            if (value is { } v && (double.IsNaN(v) || v < min || v > max))
            {
                problems.Add(new Problem($"'{field}' must be between {min} and {max}, not {v}.", Field: "hyperparameters." + field));
            }
        }
    }
}
