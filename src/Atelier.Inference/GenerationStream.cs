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

    internal GenerationStream(ChannelReader<int> reader, Task<GenerationResult> completion)
    {
        _reader = reader;
        Completion = completion;
    }

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
