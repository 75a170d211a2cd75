using Atelier.Catalog;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Registry;
using Atelier.Training.Datasets;

namespace Atelier.Features.Semantic;

/// <summary>
/// The body of <c>POST /api/v1/datasets/{id}/semantic-dedup</c>, stored (with the source id) as the
/// new dataset's request so a restart can resume it.
/// </summary>
public sealed record SemanticDedupRequest
{
    /// <summary>The operation; marks a derived dataset's stored request apart from a build from files.</summary>
    public const string OperationName = "semantic-dedup";

    /// <summary>Always <see cref="OperationName"/> in a stored request.</summary>
    public string? Operation { get; init; }

    /// <summary>The dataset to deduplicate (taken from the path).</summary>
    public string? SourceDataset { get; init; }

    /// <summary>The base model whose mean-pooled final hidden states are the embeddings.</summary>
    public string? Model { get; init; }

    /// <summary>Cosine similarity at or above which two training examples are duplicates, in (0, 1]. Default 0.95.</summary>
    public double? Threshold { get; init; }

    /// <summary>Ids of uploaded fine-tune files holding eval items.</summary>
    public IReadOnlyList<string> EvalFiles { get; init; } = [];

    /// <summary>A succeeded dataset whose kept examples are eval items.</summary>
    public string? EvalDataset { get; init; }

    /// <summary>Cosine similarity to the nearest eval item at or above which a training example is contaminated, in (0, 1]. Default 0.9.</summary>
    public double? ContaminationThreshold { get; init; }

    /// <summary>Tokens of each example (from its start) that the embedding sees. Default 512.</summary>
    public int? MaxTokens { get; init; }

    /// <summary>A display name.</summary>
    public string? Name { get; init; }

    /// <summary>The duplicate threshold in effect.</summary>
    public double EffectiveThreshold => Threshold ?? 0.95;

    /// <summary>The contamination threshold in effect.</summary>
    public double EffectiveContaminationThreshold => ContaminationThreshold ?? 0.9;

    /// <summary>The token limit in effect.</summary>
    public int EffectiveMaxTokens => MaxTokens ?? 512;
}

/// <summary>What a semantic-dedup request resolves to.</summary>
/// <param name="Source">The source dataset (succeeded, built from files).</param>
/// <param name="SourceRequest">The source's own build request.</param>
/// <param name="Model">The base model.</param>
/// <param name="EvalFiles">Eval files.</param>
/// <param name="EvalDataset">The eval dataset, if any.</param>
public sealed record ResolvedSemanticDedup(DatasetRecord Source, CreateDatasetRequest SourceRequest, RegisteredModel Model, IReadOnlyList<FileRecord> EvalFiles, DatasetRecord? EvalDataset)
{
    /// <summary>
    /// Checks a request: thresholds (422 naming the field), the source dataset and eval dataset
    /// (404 unknown, 409 not succeeded), the model (404 unknown, 422 not a base model), the eval files (404).
    /// </summary>
    public static async Task<ResolvedSemanticDedup> ResolveAsync(IDatasetRepository datasets, IFileRepository files, ModelRegistry registry, string workspaceId, SemanticDedupRequest request, CancellationToken cancel)
    {
        ArgumentNullException.ThrowIfNull(datasets);
        ArgumentNullException.ThrowIfNull(files);
        ArgumentNullException.ThrowIfNull(registry);
        ArgumentNullException.ThrowIfNull(request);
        CheckThreshold(request.Threshold, "threshold");
        CheckThreshold(request.ContaminationThreshold, "contamination_threshold");
        if (request.MaxTokens is < 1 or > 1 << 16)
        {
            throw Invalid($"'max_tokens' must be between 1 and {1 << 16}, not {request.MaxTokens}.", "max_tokens");
        }

        if (string.IsNullOrWhiteSpace(request.Model))
        {
            throw Invalid("'model' is required: the base model whose hidden states embed the examples.", "model");
        }

        var source = await SucceededAsync(datasets, workspaceId, request.SourceDataset ?? "", cancel).ConfigureAwait(false);
        var sourceRequest = ReadSourceRequest(source);
        var model = await registry.FindAsync(workspaceId, request.Model, cancel).ConfigureAwait(false) ?? throw new NotFoundException("model", request.Model);
        if (model.Kind != ModelKind.Base)
        {
            throw Invalid($"Model '{request.Model}' is a fine-tuned adapter; embeddings come from a base model.", "model");
        }

        var evalFiles = new List<FileRecord>(request.EvalFiles.Count);
        foreach (var id in request.EvalFiles)
        {
            var file = await files.GetAsync(workspaceId, id, cancel).ConfigureAwait(false) ?? throw new NotFoundException("file", id);
            evalFiles.Add(file.Purpose == "fine-tune" ? file : throw Invalid($"File '{id}' ({file.Filename}) has purpose '{file.Purpose}'; eval items are read from fine-tune files.", "eval_files"));
        }

        var evalDataset = request.EvalDataset is { } evalId ? await SucceededAsync(datasets, workspaceId, evalId, cancel).ConfigureAwait(false) : null;
        if (evalDataset is not null)
        {
            _ = ReadSourceRequest(evalDataset);
        }

        return new ResolvedSemanticDedup(source, sourceRequest, model, evalFiles, evalDataset);
    }

    private static async Task<DatasetRecord> SucceededAsync(IDatasetRepository datasets, string workspaceId, string id, CancellationToken cancel)
    {
        var record = await datasets.GetAsync(workspaceId, id, cancel).ConfigureAwait(false) ?? throw new NotFoundException("dataset", id);
        return record.Status == "succeeded" ? record : throw new ConflictException($"Dataset '{id}' is {record.Status}; semantic dedup reads a succeeded dataset.");
    }

    private static CreateDatasetRequest ReadSourceRequest(DatasetRecord record)
    {
        using var document = System.Text.Json.JsonDocument.Parse(record.RequestJson);
        if (document.RootElement.TryGetProperty("operation", out _))
        {
            // A derived version's examples live in filtered copies that are not kept; dedup its source instead.
            throw Invalid($"Dataset '{record.Id}' was derived by an operation; run semantic dedup on a dataset built from files.", "dataset");
        }

        return System.Text.Json.JsonSerializer.Deserialize<CreateDatasetRequest>(record.RequestJson, AtelierJson.Options)!;
    }

    private static void CheckThreshold(double? value, string field)
    {
        if (value is { } v && v is not (> 0 and <= 1))
        {
            throw Invalid($"'{field}' is a cosine similarity in (0, 1], not {v.ToString(System.Globalization.CultureInfo.InvariantCulture)}.", field);
        }
    }

    private static ValidationFailedException Invalid(string message, string field) =>
        new(message, [new Problem(message, Field: field)], 1, "invalid_request");
}
