using Atelier.Modeling.Kernels;
using Atelier.Modeling.Tensors;

namespace Atelier.Modeling.Mistral;

/// <summary>
/// Incremental inference over one sequence with a key/value cache: prefill a prompt, then feed one
/// token at a time. Each call attends to everything cached so far (within the sliding window, when
/// the model has one), so the logits equal those of a full forward over the whole sequence.
/// </summary>
public sealed class InferenceSession : IDisposable
{
    private readonly MistralModel _model;
    private readonly Tensor[] _k;
    private readonly Tensor[] _v;

    internal InferenceSession(MistralModel model, int capacity)
    {
        if (capacity <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(capacity), "The cache needs room for at least one position.");
        }

        _model = model;
        Capacity = capacity;
        var a = model.Args;
        _k = new Tensor[a.NLayers];
        _v = new Tensor[a.NLayers];
        for (var l = 0; l < a.NLayers; l++)
        {
            _k[l] = Tensor.Uninitialized(capacity, a.KvWidth);
            _v[l] = Tensor.Uninitialized(capacity, a.KvWidth);
        }
    }

    /// <summary>Positions the cache can hold.</summary>
    public int Capacity { get; }

    /// <summary>Positions cached so far.</summary>
    public int Length { get; private set; }

    /// <summary>Forgets the sequence, keeping the allocated cache.</summary>
    public void Reset() => Length = 0;

    /// <summary>Feeds tokens and returns the logits that follow the last one.</summary>
    public float[] Append(ReadOnlySpan<int> tokens)
    {
        using var logits = Run(tokens, allLogits: false);
        return logits.Span.ToArray();
    }

    /// <summary>Feeds tokens and returns the logits after each of them, [T × vocab].</summary>
    public Tensor AppendAll(ReadOnlySpan<int> tokens) => Run(tokens, allLogits: true);

    private Tensor Run(ReadOnlySpan<int> tokens, bool allLogits)
    {
        var a = _model.Args;
        var rows = tokens.Length;
        if (rows == 0)
        {
            throw new ArgumentException("Feed at least one token.", nameof(tokens));
        }

        if (Length + rows > Capacity)
        {
            throw new InvalidOperationException($"The KV cache holds {Capacity} positions; {Length} are used and {rows} more were fed.");
        }

        var positions = new int[rows];
        var lo = new int[rows];
        var hi = new int[rows];
        for (var i = 0; i < rows; i++)
        {
            var p = Length + i;
            positions[i] = p;
            lo[i] = a.SlidingWindow is { } w ? Math.Max(0, p - w + 1) : 0;
            hi[i] = p;
        }

        var ctx = new MistralModel.AttentionContext
        {
            Rope = new RopeAngles(positions, a.HeadDim, a.RopeTheta),
            Lo = lo,
            Hi = hi,
            KCache = _k,
            VCache = _v,
            Past = Length,
        };

        var h = _model.Embed(tokens);
        for (var l = 0; l < a.NLayers; l++)
        {
            var next = _model.BlockForward(l, h, ctx, null);
            h.Dispose();
            h = next;
        }

        Length += rows;
        using (h)
        {
            if (allLogits)
            {
                using var hn = Tensor.Uninitialized(rows, a.Dim);
                return _model.Head(h, new float[rows], hn);
            }

            using var last = Tensor.FromSpan(h.Row(rows - 1), 1, a.Dim);
            using var lastNorm = Tensor.Uninitialized(1, a.Dim);
            return _model.Head(last, new float[1], lastNorm);
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var t in _k)
        {
            t.Dispose();
        }

        foreach (var t in _v)
        {
            t.Dispose();
        }
    }
}
