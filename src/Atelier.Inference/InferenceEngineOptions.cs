namespace Atelier.Inference;

/// <summary>How an <see cref="InferenceEngine"/> spends its memory and its steps.</summary>
public sealed record InferenceEngineOptions
{
    /// <summary>Bytes for the KV cache pool, allocated once when the engine starts (keys and values of every layer).</summary>
    public long KvCacheBytes { get; init; } = 256L << 20;

    /// <summary>Positions per KV block (16, as vLLM: small enough to waste little, large enough to amortise a table lookup).</summary>
    public int BlockSize { get; init; } = 16;

    /// <summary>
    /// Tokens one step may run, decode rows and prefill chunks together: a long prompt is prefilled in
    /// chunks of what is left after the running decodes, so it never stalls them.
    /// </summary>
    public int MaxBatchTokens { get; init; } = 512;

    /// <summary>Sequences that may run at once.</summary>
    public int MaxRunningSequences { get; init; } = 64;

    /// <summary>LoRA adapters kept in memory at once (least recently used unpinned ones are evicted).</summary>
    public int AdapterPoolCapacity { get; init; } = 8;

    /// <summary>Whether full blocks are shared between requests with the same prefix, adapter and salt.</summary>
    public bool PrefixCaching { get; init; } = true;

    internal void Validate()
    {
        if (KvCacheBytes <= 0 || BlockSize <= 0 || MaxBatchTokens <= 0 || MaxRunningSequences <= 0 || AdapterPoolCapacity <= 0)
        {
            throw new ArgumentException("Inference engine options must all be positive.");
        }
    }
}
