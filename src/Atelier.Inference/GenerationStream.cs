using System.Threading.Channels;

namespace Atelier.Inference;

/// <summary>
/// The tokens of one generation as they are produced, and its outcome. Enumerate it once; it ends when
/// the generation ends, and throws <see cref="OperationCanceledException"/> when the request was cancelled
/// (or the failure, when it failed).
/// </summary>
public sealed class GenerationStream : IAsyncEnumerable<int>
{
    private readonly ChannelReader<int> _reader;
    private readonly Sequence _sequence;

    internal GenerationStream(Sequence sequence)
    {
        _sequence = sequence;
        _reader = sequence.Output.Reader;
        Completion = sequence.Completion.Task;
    }

    /// <summary>
    /// Prompt tokens whose keys and values came from the prefix cache, known once the first token has
    /// been read (0 before): what a caller that stops early, without a <see cref="Completion"/> result,
    /// still reports.
    /// </summary>
    public int CachedPromptTokens => _sequence.CachedPromptTokens ?? 0;

    /// <summary>Completes when the generation ends: with its result, cancelled, or faulted.</summary>
    public Task<GenerationResult> Completion { get; }

    /// <summary>
    /// Enumerates the tokens. <paramref name="cancellationToken"/> stops only the enumeration; to stop
    /// the generation and free its cache, cancel the token given to <see cref="InferenceEngine.Submit"/>
    /// (a host passes the request's abort token to both).
    /// </summary>
    public IAsyncEnumerator<int> GetAsyncEnumerator(CancellationToken cancellationToken = default)
        => _reader.ReadAllAsync(cancellationToken).GetAsyncEnumerator(cancellationToken);
}
