using System.Threading.Channels;
using Atelier.Inference.KvCache;
using Atelier.Modeling.Mistral;
using Atelier.Modeling.Sampling;

namespace Atelier.Inference;

/// <summary>The engine's state for one request. Only the engine loop touches it, except <see cref="CancelRequested"/>.</summary>
internal sealed class Sequence
{
    private readonly int[] _tokens;
    private volatile bool _cancelRequested;

    public Sequence(long id, GenerationRequest request, CancellationToken cancellationToken)
    {
        Id = id;
        Request = request;
        CancellationToken = cancellationToken;
        // Room for every token it may ever hold, so a step hands the runner a slice without copying.
        _tokens = new int[request.Prompt.Count + request.MaxTokens];
        foreach (var t in request.Prompt)
        {
            _tokens[TokenCount++] = t;
        }

        PromptLength = TokenCount;
        Sampler = new Sampler(request.Sampling);
        Output = Channel.CreateUnbounded<int>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        Completion = new TaskCompletionSource<GenerationResult>(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>Arrival order: the scheduler's priority (lower first) and its preemption order (highest first).</summary>
    public long Id { get; }

    public GenerationRequest Request { get; }

    public CancellationToken CancellationToken { get; }

    public CancellationTokenRegistration Registration { get; set; }

    /// <summary>The prompt, then every generated token.</summary>
    public ReadOnlySpan<int> Tokens => _tokens.AsSpan(0, TokenCount);

    public int TokenCount { get; private set; }

    public int PromptLength { get; }

    public int Generated => TokenCount - PromptLength;

    /// <summary>A run of the tokens, for one step's batch item.</summary>
    public ReadOnlyMemory<int> TokenRun(int start, int count) => _tokens.AsMemory(start, count);

    /// <summary>Appends a generated token.</summary>
    public void Append(int token) => _tokens[TokenCount++] = token;

    /// <summary>The sequence's KV blocks in position order.</summary>
    public List<int> Blocks { get; } = [];

    /// <summary>Positions whose keys and values are in the cache.</summary>
    public int Computed { get; set; }

    /// <summary>Keys of the full blocks so far (a hash chain), computed as blocks fill.</summary>
    public List<PrefixKey> BlockKeys { get; } = [];

    /// <summary>How many of <see cref="Blocks"/> are registered in (or came from) the prefix cache.</summary>
    public int RegisteredBlocks { get; set; }

    /// <summary>Prompt tokens found in the prefix cache at the first admission; null until admitted.</summary>
    public int? CachedPromptTokens { get; set; }

    public int Preemptions { get; set; }

    public LoraAdapter? Adapter { get; set; }

    public bool Running { get; set; }

    public bool Finished { get; set; }

    public Sampler Sampler { get; }

    public Channel<int> Output { get; }

    public TaskCompletionSource<GenerationResult> Completion { get; }

    public bool CancelRequested => _cancelRequested;

    public void RequestCancel() => _cancelRequested = true;

    /// <summary>The key of full block <paramref name="index"/>, extending the chain as needed (its tokens must be final).</summary>
    public PrefixKey KeyOfBlock(int index, int blockSize)
    {
        while (BlockKeys.Count <= index)
        {
            var parent = BlockKeys.Count == 0 ? PrefixKey.Root(Request.AdapterId, Request.CacheSalt) : BlockKeys[^1];
            var start = BlockKeys.Count * blockSize;
            BlockKeys.Add(PrefixKey.Next(parent, _tokens.AsSpan(start, blockSize)));
        }

        return BlockKeys[index];
    }
}
