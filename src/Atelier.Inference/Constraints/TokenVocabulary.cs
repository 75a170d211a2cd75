using System.Numerics;

namespace Atelier.Inference.Constraints;

/// <summary>
/// A vocabulary as constrained decoding sees it: the bytes each token id decodes to, arranged in a byte
/// trie so that a step's mask walks the trie once against the grammar (a shared prefix is checked once
/// for every token under it) instead of checking each of up to 131k tokens from scratch. Build it once
/// per tokeniser and share it between requests: it is immutable and thread-safe.
/// </summary>
public sealed class TokenVocabulary
{
    // Trie nodes in preorder. Node 0 is the root (the empty prefix). The tokens of a node's subtree are
    // the contiguous range [_first[n], _end[n]) of _order, so a whole subtree is allowed with one loop.
    private readonly int[] _childStart;
    private readonly int[] _childCount;
    private readonly byte[] _edge;
    private readonly int[] _tokenStart;
    private readonly int[] _tokenCount;
    private readonly int[] _first;
    private readonly int[] _end;
    private readonly bool[] _stringSafe;
    private readonly int[] _maxChars;
    private readonly int[] _order;
    private readonly int[] _stopTokens;
    private readonly bool[] _isStop;
    private readonly byte[]?[] _bytes;

    /// <summary>Builds the view of a vocabulary.</summary>
    /// <param name="tokenBytes">
    /// Per token id, the bytes it decodes to (UTF-8, possibly a fragment of a character), or null for a
    /// control or special token, which constrained text never contains.
    /// </param>
    /// <param name="stopTokenIds">The ids that end a generation (EOS): allowed exactly when the grammar is complete.</param>
    public TokenVocabulary(IReadOnlyList<byte[]?> tokenBytes, IEnumerable<int> stopTokenIds)
    {
        ArgumentNullException.ThrowIfNull(tokenBytes);
        ArgumentNullException.ThrowIfNull(stopTokenIds);
        Size = tokenBytes.Count;
        _bytes = new byte[]?[Size];
        _isStop = new bool[Size];
        var stops = new List<int>();
        foreach (int id in stopTokenIds)
        {
            if ((uint)id >= (uint)Size)
            {
                throw new ArgumentOutOfRangeException(nameof(stopTokenIds), id, $"Stop token {id} is outside the vocabulary of {Size} tokens.");
            }

            if (!_isStop[id])
            {
                _isStop[id] = true;
                stops.Add(id);
            }
        }

        if (stops.Count == 0)
        {
            throw new ArgumentException("A constrained vocabulary needs at least one stop token: a complete value must be able to end the generation.", nameof(stopTokenIds));
        }

        _stopTokens = [.. stops];

        // Build a pointer trie first (children sorted by byte), then flatten it in preorder.
        var root = new BuildNode();
        int nodeCount = 1;
        int tokenTotal = 0;
        for (int id = 0; id < Size; id++)
        {
            byte[]? bytes = tokenBytes[id];
            // A stop token or an empty token never appears inside constrained text.
            if (bytes is null || bytes.Length == 0 || _isStop[id])
            {
                continue;
            }

            _bytes[id] = bytes;
            BuildNode node = root;
            foreach (byte b in bytes)
            {
                node.Children ??= new SortedList<byte, BuildNode>();
                if (!node.Children.TryGetValue(b, out BuildNode? child))
                {
                    child = new BuildNode();
                    node.Children.Add(b, child);
                    nodeCount++;
                }

                node = child;
            }

            (node.Tokens ??= []).Add(id);
            tokenTotal++;
        }

        _childStart = new int[nodeCount];
        _childCount = new int[nodeCount];
        _edge = new byte[nodeCount];
        _tokenStart = new int[nodeCount];
        _tokenCount = new int[nodeCount];
        _first = new int[nodeCount];
        _end = new int[nodeCount];
        _stringSafe = new bool[nodeCount];
        _maxChars = new int[nodeCount];
        _order = new int[tokenTotal];
        NodeCount = nodeCount;

        // Children of a node must be contiguous for the walk, so they are numbered level by level per
        // parent (breadth of one parent at a time) while tokens are ordered in preorder for the ranges.
        int nextNode = 1;
        int nextToken = 0;
        Flatten(root, 0, Utf8State.Start, 0, ref nextNode, ref nextToken);
    }

    /// <summary>Number of token ids (the length of a logits row this vocabulary masks; extra entries are masked).</summary>
    public int Size { get; }

    /// <summary>Nodes in the byte trie (a measure of the per-step walk's worst case).</summary>
    public int NodeCount { get; }

    /// <summary>The ids that end a generation.</summary>
    public ReadOnlySpan<int> StopTokens => _stopTokens;

    /// <summary>Whether <paramref name="id"/> is a stop token.</summary>
    public bool IsStop(int id) => (uint)id < (uint)_isStop.Length && _isStop[id];

    /// <summary>The bytes of a text token, or null for a control, empty or stop token (or an id past the vocabulary).</summary>
    public byte[]? BytesOf(int id) => (uint)id < (uint)_bytes.Length ? _bytes[id] : null;

    internal int ChildStart(int node) => _childStart[node];

    internal int ChildCount(int node) => _childCount[node];

    internal byte Edge(int node) => _edge[node];

    internal ReadOnlySpan<int> TokensEndingAt(int node) => _order.AsSpan(_tokenStart[node], _tokenCount[node]);

    internal ReadOnlySpan<int> TokensUnder(int node) => _order.AsSpan(_first[node], _end[node] - _first[node]);

    /// <summary>
    /// Whether every token under <paramref name="node"/> is, from its first byte, text that can stand
    /// inside a JSON string as it is: no quote, backslash or control byte, and a valid UTF-8 prefix
    /// (it may end inside a character). Such a subtree is allowed whole in a string's content.
    /// </summary>
    internal bool IsStringSafe(int node) => _stringSafe[node];

    /// <summary>The most characters (code points begun) in a token under <paramref name="node"/>: what a length-bounded string must still have room for.</summary>
    internal int MaxCharsUnder(int node) => _maxChars[node];

    private bool Flatten(BuildNode node, int index, Utf8State utf8, int chars, ref int nextNode, ref int nextToken)
    {
        _first[index] = nextToken;
        _tokenStart[index] = nextToken;
        if (node.Tokens is { } tokens)
        {
            foreach (int id in tokens)
            {
                _order[nextToken++] = id;
            }
        }

        _tokenCount[index] = nextToken - _tokenStart[index];
        bool safe = utf8 != Utf8State.Invalid;
        int maxChars = chars;
        if (node.Children is { } children)
        {
            int start = nextNode;
            _childStart[index] = start;
            _childCount[index] = children.Count;
            nextNode += children.Count;
            for (int i = 0; i < children.Count; i++)
            {
                byte b = children.Keys[i];
                _edge[start + i] = b;
                Utf8State next = utf8 == Utf8State.Invalid || b is (byte)'"' or (byte)'\\' || b < 0x20 ? Utf8State.Invalid : Utf8Dfa.Step(utf8, b);
                // Every byte that is not a continuation byte begins a character.
                safe &= Flatten(children.Values[i], start + i, next, chars + (b is >= 0x80 and <= 0xBF ? 0 : 1), ref nextNode, ref nextToken);
                maxChars = Math.Max(maxChars, _maxChars[start + i]);
            }
        }

        _end[index] = nextToken;
        _stringSafe[index] = safe;
        _maxChars[index] = maxChars;
        return safe;
    }

    private sealed class BuildNode
    {
        public SortedList<byte, BuildNode>? Children;
        public List<int>? Tokens;
    }
}

/// <summary>A set of token ids, one bit each: what a step allows.</summary>
internal sealed class TokenMask(int size)
{
    private readonly ulong[] _bits = new ulong[(size + 63) >> 6];

    public int Size { get; } = size;

    public void Clear() => Array.Clear(_bits);

    public void Add(int id) => _bits[id >> 6] |= 1UL << (id & 63);

    public void AddAll(ReadOnlySpan<int> ids)
    {
        foreach (int id in ids)
        {
            _bits[id >> 6] |= 1UL << (id & 63);
        }
    }

    public bool Contains(int id) => (uint)id < (uint)Size && (_bits[id >> 6] & (1UL << (id & 63))) != 0;

    public int Count()
    {
        int count = 0;
        foreach (ulong word in _bits)
        {
            count += BitOperations.PopCount(word);
        }

        return count;
    }

    /// <summary>Sets every logit whose id is not in the set (and every id past it) to negative infinity.</summary>
    public void Apply(Span<float> logits)
    {
        int words = Math.Min(_bits.Length, (logits.Length + 63) >> 6);
        for (int w = 0; w < words; w++)
        {
            ulong word = _bits[w];
            if (word == ulong.MaxValue)
            {
                continue;
            }

            int baseId = w << 6;
            int end = Math.Min(64, logits.Length - baseId);
            for (int i = 0; i < end; i++)
            {
                if ((word & (1UL << i)) == 0)
                {
                    logits[baseId + i] = float.NegativeInfinity;
                }
            }
        }

        // Rows of an embedding padded past the tokeniser's vocabulary have no text: never allowed.
        if (logits.Length > words << 6)
        {
            logits[(words << 6)..].Fill(float.NegativeInfinity);
        }
    }
}
