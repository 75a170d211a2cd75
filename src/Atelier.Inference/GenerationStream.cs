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

    /// <inheritdoc />
    public IAsyncEnumerator<int> GetAsyncEnumerator(CancellationToken cancellationToken = default)
        => _reader.ReadAllAsync(cancellationToken).GetAsyncEnumerator(cancellationToken);
}
