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

    /// <summary>
    /// Edits the logits before each token is sampled (penalties, a grammar's mask), or null. The
    /// engine calls it on its own thread, once per generated token, with the tokens generated so far;
    /// an instance serves one request. An exception it throws fails that request only.
    /// </summary>
    public ILogitsProcessor? LogitsProcessor { get; init; }
}

/// <summary>
/// Shapes the distribution a request samples from: repetition penalties, or constrained decoding,
/// which masks every token a grammar does not allow next (and allows only a stop token once the
/// grammar is complete). It sees every sampling step of its request in order; after a preemption the
/// engine recomputes the cache but does not sample the kept tokens again.
/// </summary>
public interface ILogitsProcessor
{
    /// <summary>Edits <paramref name="logits"/> (one per vocabulary id) in place.</summary>
    /// <param name="generated">The tokens generated so far (not the prompt).</param>
    /// <param name="logits">The next token's logits.</param>
    void Process(ReadOnlySpan<int> generated, Span<float> logits);
}

/// <summary>Several logits processors applied in order (penalties, then a grammar's mask).</summary>
/// <param name="processors">The processors, first applied first.</param>
public sealed class LogitsProcessorChain(IReadOnlyList<ILogitsProcessor> processors) : ILogitsProcessor
{
    /// <inheritdoc />
    public void Process(ReadOnlySpan<int> generated, Span<float> logits)
    {
        foreach (var p in processors)
        {
            p.Process(generated, logits);
        }
    }
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
