using System.Text.Json;
using System.Text.Json.Nodes;
using Atelier.Catalog;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Data.Building;
using Atelier.Training.Datasets;

namespace Atelier.Training.Execution;

/// <summary>
/// A built dataset version a job trains on (<c>dataset_id</c>): its record, its manifest and the
/// request it was built from. Its shards are used as they are, so they must be the job's model's
/// tokens at the job's window length.
/// </summary>
/// <param name="Record">The dataset's catalog record.</param>
/// <param name="Manifest">Its manifest (counters, options, shards).</param>
/// <param name="Request">The request it was built from.</param>
public sealed record JobDataset(DatasetRecord Record, DatasetManifest Manifest, CreateDatasetRequest Request)
{
    /// <summary>The caller's succeeded dataset version, or a 4xx that says why it cannot be trained on.</summary>
    public static async Task<JobDataset> ResolveAsync(IDatasetRepository datasets, string workspaceId, string datasetId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(datasets);
        var record = await datasets.GetAsync(workspaceId, datasetId, cancellationToken).ConfigureAwait(false) ?? throw new NotFoundException("dataset", datasetId);
        if (record.Status != "succeeded" || record.SummaryJson is null)
        {
            throw Refused($"Dataset '{datasetId}' is {record.Status}; a job can train on a dataset version once its build has succeeded.");
        }

        var manifest = JsonNode.Parse(record.SummaryJson)?["manifest"].Deserialize<DatasetManifest>(AtelierJson.Options)
            ?? throw new InvalidDataException($"Dataset '{datasetId}' has no manifest in the catalog.");
        var request = JsonSerializer.Deserialize<CreateDatasetRequest>(record.RequestJson, AtelierJson.Options)!;
        return new JobDataset(record, manifest, request);
    }

    /// <summary>The ids of the files a dataset was built from (its lineage), for the job's <c>training_files</c>.</summary>
    public static async Task<IReadOnlyList<string>> SourceFilesAsync(IDatasetRepository datasets, string workspaceId, string datasetId, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(datasets);
        var record = await datasets.GetAsync(workspaceId, datasetId, cancellationToken).ConfigureAwait(false);
        return record is null ? [] : JsonSerializer.Deserialize<CreateDatasetRequest>(record.RequestJson, AtelierJson.Options)!.TrainingFiles;
    }

    /// <summary>
    /// Checks that the version holds the tokens the job's model reads (same tokeniser, so the same
    /// ids and chat format) at the window length the job asks for.
    /// </summary>
    public void CheckFor(string modelId, string tokenizerIdentity, int? seqLen)
    {
        if (Manifest.Tokenizer != tokenizerIdentity)
        {
            var built = Request.Model is { } m ? $"model '{m}'" : $"'{Request.Tokenizer}'";
            throw Refused($"Dataset '{Record.Id}' was built with the tokeniser of {built}, not with that of model '{modelId}': its token ids mean nothing to this model. Build it with the model's tokeniser ('model': '{modelId}', or atelier datasets build --model {modelId}).");
        }

        if (seqLen is { } asked && asked != Manifest.Options.SequenceLength)
        {
            throw new ValidationFailedException(
                $"Dataset '{Record.Id}' is packed in windows of {Manifest.Options.SequenceLength} tokens; 'seq_len' {asked} differs. Leave 'seq_len' out or build the dataset with seq_len {asked}.",
                [new Problem($"must be {Manifest.Options.SequenceLength}, the dataset's window length, or absent", Field: "hyperparameters.seq_len")],
                1,
                "invalid_request");
        }
    }

    private static ValidationFailedException Refused(string message) =>
        new(message, [new Problem(message, Field: "dataset_id")], 1, "invalid_request");
}
