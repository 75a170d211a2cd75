using Atelier.Modeling.Sampling;

namespace Atelier.Inference;

/// <summary>One generation: a prompt in token ids and how to continue it.</summary>
/// <param name="Prompt">The prompt's token ids (at least one).</param>
/// <param name="MaxTokens">The most tokens to generate (at least one).</param>
public sealed record GenerationRequest(IReadOnlyList<int> Prompt, int MaxTokens)
{
    /// <summary>The LoRA adapter to generate with (loaded through the engine's loader), or null for the base model.</summary>
    public string? AdapterId { get; init; }

    /// <summary>Temperature, top-p and seed. With a seed, the tokens do not depend on what else the engine runs.</summary>
    public SamplingOptions Sampling { get; init; } = new();

    /// <summary>Token ids that end the generation; the stop token is the last token streamed.</summary>
    public IReadOnlyCollection<int>? StopTokenIds { get; init; }

    /// <summary>
    /// Scopes the prefix cache (one salt per workspace): requests share cached blocks only when their
    /// salts are equal, so one tenant cannot probe another's prompts through a faster first token.
    /// </summary>
    public string CacheSalt { get; init; } = "";
}

/// <summary>Why a generation ended.</summary>
public enum FinishReason
{
    /// <summary>A stop token was generated.</summary>
    Stop,

    /// <summary><see cref="GenerationRequest.MaxTokens"/> tokens were generated.</summary>
    Length,
}

/// <summary>The outcome of a finished generation.</summary>
/// <param name="FinishReason">Why it ended.</param>
/// <param name="PromptTokens">Tokens in the prompt.</param>
/// <param name="CachedPromptTokens">Prompt tokens whose keys and values came from the prefix cache at the first admission.</param>
/// <param name="CompletionTokens">Tokens generated.</param>
/// <param name="Preemptions">How often the sequence was preempted (its cache freed and recomputed later) for lack of KV blocks.</param>
public sealed record GenerationResult(FinishReason FinishReason, int PromptTokens, int CachedPromptTokens, int CompletionTokens, int Preemptions);
