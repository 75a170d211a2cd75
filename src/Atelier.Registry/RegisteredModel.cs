namespace Atelier.Registry;

/// <summary>Whether a model is a base model or a fine-tuned one, as Mistral's <c>type</c> field says.</summary>
public enum ModelKind
{
    /// <summary>Full weights imported by an admin; visible to every workspace.</summary>
    Base,

    /// <summary>An adapter trained by a job on a base model; owned by one workspace.</summary>
    FineTuned,
}

/// <summary>What a model can do, flag for flag as Mistral's <c>ModelCapabilities</c>.</summary>
public sealed record ModelCapabilities
{
    /// <summary>Chat completions.</summary>
    public bool CompletionChat { get; init; }

    /// <summary>Tool calls.</summary>
    public bool FunctionCalling { get; init; }

    /// <summary>Reasoning traces.</summary>
    public bool Reasoning { get; init; }

    /// <summary>Fill-in-the-middle completions.</summary>
    public bool CompletionFim { get; init; }

    /// <summary>Can be the base of a fine-tuning job.</summary>
    public bool FineTuning { get; init; }

    /// <summary>Image input.</summary>
    public bool Vision { get; init; }

    /// <summary>Document OCR.</summary>
    public bool Ocr { get; init; }

    /// <summary>Classifier head.</summary>
    public bool Classification { get; init; }

    /// <summary>Moderation.</summary>
    public bool Moderation { get; init; }

    /// <summary>Audio input.</summary>
    public bool Audio { get; init; }

    /// <summary>Transcription.</summary>
    public bool AudioTranscription { get; init; }

    /// <summary>Streaming transcription.</summary>
    public bool AudioTranscriptionRealtime { get; init; }

    /// <summary>Speech synthesis.</summary>
    public bool AudioSpeech { get; init; }

    /// <summary>What an imported Mistral-architecture text model can do: chat, and be fine-tuned.</summary>
    public static ModelCapabilities TextBase { get; } = new() { CompletionChat = true, FineTuning = true };

    /// <summary>
    /// What an imported model can do with <paramref name="tokenizer"/>: chat and fine-tuning always; tool
    /// calls from v2 on (they need its control tokens); fill in the middle when it is a tekken tokeniser with <c>[PREFIX]</c> and <c>[SUFFIX]</c> (how
    /// mistral-common encodes FIM; Atelier does not render SentencePiece FIM prompts).
    /// </summary>
    public static ModelCapabilities Of(Atelier.Data.Tokenization.MistralTokenizerFile tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        var fim = tokenizer.Kind == Atelier.Data.Tokenization.MistralTokenizerKind.Tekken
            && tokenizer.SpecialTokens.ContainsKey("[PREFIX]") && tokenizer.SpecialTokens.ContainsKey("[SUFFIX]");
        // Tool calls need the control tokens of v2 and later ([TOOL_CALLS], [AVAILABLE_TOOLS]...).
        var tools = tokenizer.Version >= Atelier.Data.Tokenization.MistralTokenizerVersion.V2 && tokenizer.SpecialTokens.ContainsKey("[TOOL_CALLS]");
        return TextBase with { CompletionFim = fim, FunctionCalling = tools };
    }

    /// <summary>A fine-tuned model of <paramref name="root"/>: chat as its base does, no further fine-tuning.</summary>
    public static ModelCapabilities FineTunedOf(ModelCapabilities root)
    {
        ArgumentNullException.ThrowIfNull(root);
        return new() { CompletionChat = root.CompletionChat, FunctionCalling = root.FunctionCalling, CompletionFim = root.CompletionFim };
    }
}

/// <summary>One committed blob of a model.</summary>
/// <param name="Name">The file name inside a model directory, e.g. <c>consolidated.safetensors</c> or <c>lora.safetensors</c>.</param>
/// <param name="LocationId">The location holding the bytes.</param>
/// <param name="Key">The blob key within the location.</param>
/// <param name="Bytes">Size in bytes.</param>
/// <param name="Sha256">SHA-256 of the bytes, lower-case hex, as the placement guard recorded it.</param>
public sealed record ModelArtifact(string Name, string LocationId, string Key, long Bytes, string Sha256);

/// <summary>Where a model came from.</summary>
public sealed record ModelLineage
{
    /// <summary>For an imported base model: the directory it was imported from.</summary>
    public string? SourceDirectory { get; init; }

    /// <summary>Ids of the training files of the job.</summary>
    public IReadOnlyList<string> TrainingFileIds { get; init; } = [];

    /// <summary>Ids of the validation files of the job.</summary>
    public IReadOnlyList<string> ValidationFileIds { get; init; } = [];

    /// <summary>The dataset version the job trained on, when it used one.</summary>
    public string? DatasetId { get; init; }

    /// <summary>The checkpoint the adapter was taken from.</summary>
    public string? CheckpointId { get; init; }

    /// <summary>The version of the base weights trained on: SHA-256 of its <c>consolidated.safetensors</c>.</summary>
    public string? RootVersion { get; init; }
}

/// <summary>A model in the registry.</summary>
public sealed record RegisteredModel
{
    /// <summary>The id callers use as <c>model</c>: <c>[a-z0-9._-]</c> for base models, <c>ft:...</c> for fine-tuned ones.</summary>
    public required string Id { get; init; }

    /// <summary>The owning workspace's id; null for base models, which every workspace sees.</summary>
    public string? WorkspaceId { get; init; }

    /// <summary>Base or fine-tuned.</summary>
    public required ModelKind Kind { get; init; }

    /// <summary>A display name.</summary>
    public string? Name { get; init; }

    /// <summary>A description.</summary>
    public string? Description { get; init; }

    /// <summary>For a fine-tuned model: the id of its base model.</summary>
    public string? Root { get; init; }

    /// <summary>For a fine-tuned model: the job that trained it.</summary>
    public string? JobId { get; init; }

    /// <summary>Unix seconds.</summary>
    public required long CreatedAt { get; init; }

    /// <summary>Archived fine-tuned models stay listed and usable, flagged as archived.</summary>
    public bool Archived { get; init; }

    /// <summary>The longest context the model takes, in tokens.</summary>
    public required int MaxContextLength { get; init; }

    /// <summary>What it can do.</summary>
    public required ModelCapabilities Capabilities { get; init; }

    /// <summary>The residency policy of its bytes (names joined with <c>&amp;</c> for an intersection).</summary>
    public required string Policy { get; init; }

    /// <summary>Its committed blobs: the model directory of a base model, the adapter of a fine-tuned one.</summary>
    public required IReadOnlyList<ModelArtifact> Artifacts { get; init; }

    /// <summary>Other names that resolve to this model.</summary>
    public IReadOnlyList<string> Aliases { get; init; } = [];

    /// <summary>Where it came from.</summary>
    public ModelLineage Lineage { get; init; } = new();

    /// <summary>Mistral's <c>owned_by</c>: <c>atelier</c> for base models, the workspace name for fine-tuned ones.</summary>
    public required string OwnedBy { get; init; }

    /// <summary>The actor that registered it.</summary>
    public required string CreatedBy { get; init; }

    /// <summary>Mistral's wire name of <see cref="Kind"/>: <c>base</c> or <c>fine-tuned</c>.</summary>
    public string Type => Kind == ModelKind.Base ? "base" : "fine-tuned";
}

/// <summary>What a finished fine-tuning job registers.</summary>
public sealed record FineTunedModelRegistration
{
    /// <summary>The workspace id of the job (the model belongs to it).</summary>
    public required string Workspace { get; init; }

    /// <summary>The job's id (a UUID). Registering the same job twice returns the first model.</summary>
    public required string JobId { get; init; }

    /// <summary>The base model the job trained on; must be a registered base model.</summary>
    public required string BaseModelId { get; init; }

    /// <summary>Mistral's <c>suffix</c>: 1 to 18 of <c>[A-Za-z0-9._-]</c>, or null.</summary>
    public string? Suffix { get; init; }

    /// <summary>
    /// The adapter blobs, already committed through the placement guard by the job (e.g. under
    /// <c>job/&lt;jobid&gt;/</c>). The model owns them from now on: deleting the model deletes them.
    /// </summary>
    public required IReadOnlyList<ModelArtifact> Artifacts { get; init; }

    /// <summary>The residency policy name of the adapter (at least as strict as the training data's).</summary>
    public required string PolicyName { get; init; }

    /// <summary>Training files, dataset and checkpoint it came from.</summary>
    public ModelLineage Lineage { get; init; } = new();

    /// <summary>A display name; null leaves it unset.</summary>
    public string? Name { get; init; }

    /// <summary>A description.</summary>
    public string? Description { get; init; }

    /// <summary>The actor recorded as its creator and in the audit log.</summary>
    public string Actor { get; init; } = "system:training";

    /// <summary>
    /// The registered name the model becomes the next version of; null for
    /// <see cref="ModelRegistry.DefaultFineTunedName"/> (<c>&lt;base&gt;:&lt;suffix&gt;</c>).
    /// </summary>
    public string? RegisteredName { get; init; }
}

/// <summary>What <see cref="ModelRegistry.ImportBaseModelAsync"/> imports.</summary>
public sealed record BaseModelImport
{
    /// <summary>A directory in Mistral's consolidated format on the server's machine (absolute path).</summary>
    public required string SourceDirectory { get; init; }

    /// <summary>The model id (<c>[a-z0-9._-]</c>); the lower-cased directory name when null.</summary>
    public string? Id { get; init; }

    /// <summary>A display name.</summary>
    public string? Name { get; init; }

    /// <summary>A description.</summary>
    public string? Description { get; init; }

    /// <summary>Overrides the context length read from <c>params.json</c> (<c>max_seq_len</c>, else 32768).</summary>
    public int? MaxContextLength { get; init; }

    /// <summary>Other names that resolve to the model, e.g. <c>mistral-tiny-latest</c>.</summary>
    public IReadOnlyList<string> Aliases { get; init; } = [];
}
