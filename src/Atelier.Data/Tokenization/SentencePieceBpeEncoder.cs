using System.Text;

namespace Atelier.Data.Tokenization;

/// <summary>
/// The encoder of a SentencePiece BPE model, as Google's sentencepiece runs it (normalizer.cc,
/// bpe_model.cc, and the byte fallback of sentencepiece_processor.cc): the text is normalised
/// (spaces to <c>▁</c>, a dummy <c>▁</c> prefix), split into code points (user-defined pieces kept
/// whole), and adjacent symbols are merged best score first, the leftmost pair winning a tie; a
/// symbol the vocabulary lacks becomes its UTF-8 bytes as <c>&lt;0xNN&gt;</c> pieces. Microsoft.ML.Tokenizers
/// (2.0.1 and 3.0.0) breaks ties from the other end, so runs of three or more equal characters
/// (indentation, <c>-----</c>, repeated emoji) came out differently.
/// </summary>
internal sealed class SentencePieceBpeEncoder
{
    private const string SpaceSymbol = "\u2581";

    private readonly Dictionary<string, int> _pieces;            // NORMAL, USER_DEFINED and UNUSED pieces
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _pieceLookup;
    private readonly Dictionary<string, int> _reserved;          // CONTROL, UNKNOWN and BYTE pieces
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _reservedLookup;
    private readonly float[] _scores;
    private readonly bool[] _unused;
    private readonly bool _anyUnused;
    private readonly string[] _userDefined;                      // longest first
    private readonly int _unknownId;
    private readonly int[]? _byteIds;                            // null without byte fallback
    private readonly bool _addDummyPrefix;
    private readonly bool _removeExtraWhitespaces;
    private readonly bool _escapeWhitespaces;
    private readonly bool _whitespaceAsSuffix;

    private SentencePieceBpeEncoder(SentencePieceModelProto model)
    {
        _pieces = new Dictionary<string, int>(StringComparer.Ordinal);
        _reserved = new Dictionary<string, int>(StringComparer.Ordinal);
        _scores = new float[model.Pieces.Count];
        _unused = new bool[model.Pieces.Count];
        var userDefined = new List<string>();
        _unknownId = -1;
        for (int id = 0; id < model.Pieces.Count; id++)
        {
            (string piece, float score, SentencePieceType type) = model.Pieces[id];
            _scores[id] = score;
            bool normal = type is SentencePieceType.Normal or SentencePieceType.UserDefined or SentencePieceType.Unused;
            if (!(normal ? _pieces : _reserved).TryAdd(piece, id))
            {
                throw new InvalidDataException($"tokenizer.model: piece '{piece}' is defined twice.");
            }

            _unused[id] = type == SentencePieceType.Unused;
            _anyUnused |= _unused[id];
            if (type == SentencePieceType.UserDefined)
            {
                userDefined.Add(piece);
            }
            else if (type == SentencePieceType.Unknown)
            {
                _unknownId = id;
            }
        }

        if (_unknownId < 0)
        {
            throw new InvalidDataException("tokenizer.model: no <unk> piece.");
        }

        _pieceLookup = _pieces.GetAlternateLookup<ReadOnlySpan<char>>();
        _reservedLookup = _reserved.GetAlternateLookup<ReadOnlySpan<char>>();
        userDefined.Sort((a, b) => b.Length.CompareTo(a.Length));
        _userDefined = [.. userDefined];
        if (model.ByteFallback)
        {
            _byteIds = new int[256];
            for (int b = 0; b < 256; b++)
            {
                _byteIds[b] = _reserved.TryGetValue($"<0x{b:X2}>", out int id)
                    ? id
                    : throw new InvalidDataException($"tokenizer.model: byte_fallback is set but <0x{b:X2}> is missing.");
            }
        }

        _addDummyPrefix = model.AddDummyPrefix;
        _removeExtraWhitespaces = model.RemoveExtraWhitespaces;
        _escapeWhitespaces = model.EscapeWhitespaces;
        _whitespaceAsSuffix = model.TreatWhitespaceAsSuffix;
    }

    /// <summary>
    /// The encoder of a serialised <c>ModelProto</c>, or null when the model is not BPE (unigram models
    /// stay on Microsoft.ML.Tokenizers).
    /// </summary>
    /// <exception cref="NotSupportedException">A BPE model with a normalisation rule other than identity.</exception>
    public static SentencePieceBpeEncoder? TryCreate(ReadOnlySpan<byte> modelProto)
    {
        SentencePieceModelProto model = SentencePieceModelProto.Parse(modelProto);
        if (model.ModelType != 2)
        {
            return null;
        }

        if (model.HasCharsMap)
        {
            throw new NotSupportedException("tokenizer.model: BPE models with a normalisation rule other than identity (a precompiled_charsmap) are not supported.");
        }

        return new SentencePieceBpeEncoder(model);
    }

    /// <summary>Appends the ids of <paramref name="text"/> (no BOS or EOS).</summary>
    public void Encode(string text, List<int> destination)
    {
        string normalized = Normalize(text);
        if (normalized.Length == 0)
        {
            return;
        }

        Symbol[] symbols = Split(normalized);
        Merge(normalized, symbols, out Dictionary<string, (string Left, string Right)>? reverseMerges);
        for (int index = 0; index != -1; index = symbols[index].Next)
        {
            Emit(normalized.AsSpan(symbols[index].Start, symbols[index].Length), reverseMerges, destination);
        }
    }

    // normalizer.cc's Normalize with an empty charsmap: code points copied as they are, ' ' written
    // as ▁, a ▁ before the text (or after it, with treat_whitespace_as_suffix), extra spaces removed
    // only when the model asks for it. Lone surrogates become U+FFFD, as in the UTF-8 the reference reads.
    private string Normalize(string text)
    {
        int start = 0;
        if (_removeExtraWhitespaces)
        {
            while (start < text.Length && text[start] == ' ')
            {
                start++;
            }
        }

        if (start == text.Length)
        {
            return "";
        }

        string space = _escapeWhitespaces ? SpaceSymbol : " ";
        var builder = new StringBuilder(text.Length + 2);
        if (!_whitespaceAsSuffix && _addDummyPrefix)
        {
            builder.Append(space);
        }

        bool previousSpace = _removeExtraWhitespaces;
        for (int i = start; i < text.Length; i++)
        {
            char c = text[i];
            if (c == ' ')
            {
                if (!previousSpace)
                {
                    builder.Append(space);
                }

                previousSpace = _removeExtraWhitespaces;
                continue;
            }

            previousSpace = false;
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                builder.Append(c).Append(text[++i]);
            }
            else
            {
                builder.Append(char.IsSurrogate(c) ? '\uFFFD' : c);
            }
        }

        if (_removeExtraWhitespaces)
        {
            while (builder.Length >= space.Length && builder.ToString(builder.Length - space.Length, space.Length) == space)
            {
                builder.Length -= space.Length;
            }
        }

        if (_whitespaceAsSuffix && _addDummyPrefix)
        {
            builder.Append(space);
        }

        return builder.ToString();
    }

    // One symbol per code point, except that a user-defined piece (the longest that matches) is one
    // frozen symbol that never merges.
    private Symbol[] Split(string normalized)
    {
        var symbols = new List<Symbol>(normalized.Length);
        int i = 0;
        while (i < normalized.Length)
        {
            int length = char.IsHighSurrogate(normalized[i]) && i + 1 < normalized.Length ? 2 : 1;
            bool freeze = false;
            foreach (string piece in _userDefined)
            {
                if (normalized.AsSpan(i).StartsWith(piece, StringComparison.Ordinal))
                {
                    length = piece.Length;
                    freeze = true;
                    break;
                }
            }

            int index = symbols.Count;
            symbols.Add(new Symbol { Start = i, Length = length, Prev = index - 1, Next = i + length < normalized.Length ? index + 1 : -1, Freeze = freeze });
            i += length;
        }

        return [.. symbols];
    }

    // bpe_model.cc's main loop: the agenda holds every adjacent pair that is a piece, best score
    // first and leftmost first among equal scores; a pair whose symbols changed since it was queued
    // (one emptied or grown) is stale and skipped.
    private void Merge(string normalized, Symbol[] symbols, out Dictionary<string, (string Left, string Right)>? reverseMerges)
    {
        reverseMerges = null;
        var agenda = new PriorityQueue<(int Left, int Right, int Length), (float Score, int Left)>(symbols.Length, AgendaOrder.Instance);
        for (int i = 1; i < symbols.Length; i++)
        {
            MaybeAddPair(normalized, symbols, agenda, i - 1, i, ref reverseMerges);
        }

        while (agenda.TryDequeue(out (int Left, int Right, int Length) top, out _))
        {
            ref Symbol left = ref symbols[top.Left];
            ref Symbol right = ref symbols[top.Right];
            if (left.Length == 0 || right.Length == 0 || left.Length + right.Length != top.Length)
            {
                continue;
            }

            left.Length += right.Length;
            left.Next = right.Next;
            if (right.Next >= 0)
            {
                symbols[right.Next].Prev = top.Left;
            }

            right.Length = 0;
            MaybeAddPair(normalized, symbols, agenda, left.Prev, top.Left, ref reverseMerges);
            MaybeAddPair(normalized, symbols, agenda, top.Left, left.Next, ref reverseMerges);
        }
    }

    private void MaybeAddPair(
        string normalized,
        Symbol[] symbols,
        PriorityQueue<(int Left, int Right, int Length), (float Score, int Left)> agenda,
        int left,
        int right,
        ref Dictionary<string, (string Left, string Right)>? reverseMerges)
    {
        if (left < 0 || right < 0 || symbols[left].Freeze || symbols[right].Freeze)
        {
            return;
        }

        int length = symbols[left].Length + symbols[right].Length;
        ReadOnlySpan<char> piece = normalized.AsSpan(symbols[left].Start, length);
        if (!_pieceLookup.TryGetValue(piece, out int id))
        {
            return;
        }

        agenda.Enqueue((left, right, length), (_scores[id], left));

        // A merge through an UNUSED piece is undone at the end (resegmentation), so remember its parts.
        if (_unused[id])
        {
            reverseMerges ??= new Dictionary<string, (string Left, string Right)>(StringComparer.Ordinal);
            reverseMerges[piece.ToString()] = (
                normalized.Substring(symbols[left].Start, symbols[left].Length),
                normalized.Substring(symbols[right].Start, symbols[right].Length));
        }
    }

    // bpe_model.cc's resegment, then sentencepiece_processor.cc's byte fallback for unknown pieces.
    private void Emit(ReadOnlySpan<char> piece, Dictionary<string, (string Left, string Right)>? reverseMerges, List<int> destination)
    {
        int id = PieceToId(piece);
        if (_anyUnused && _unused[id] && reverseMerges is not null
            && reverseMerges.GetAlternateLookup<ReadOnlySpan<char>>().TryGetValue(piece, out (string Left, string Right) parts))
        {
            Emit(parts.Left, reverseMerges, destination);
            Emit(parts.Right, reverseMerges, destination);
            return;
        }

        if (id != _unknownId || _byteIds is null)
        {
            destination.Add(id);
            return;
        }

        // An unknown piece is a single code point (merged and user-defined pieces are known).
        int maxBytes = Encoding.UTF8.GetMaxByteCount(piece.Length);
        Span<byte> utf8 = maxBytes <= 64 ? stackalloc byte[64] : new byte[maxBytes];
        int written = Encoding.UTF8.GetBytes(piece, utf8);
        for (int b = 0; b < written; b++)
        {
            destination.Add(_byteIds[utf8[b]]);
        }
    }

    // model_interface.cc's PieceToId: reserved pieces first, then the others, else <unk>.
    private int PieceToId(ReadOnlySpan<char> piece) =>
        _reservedLookup.TryGetValue(piece, out int id) || _pieceLookup.TryGetValue(piece, out id) ? id : _unknownId;

    private struct Symbol
    {
        public int Start;
        public int Length;
        public int Prev;
        public int Next;
        public bool Freeze;
    }

    private sealed class AgendaOrder : IComparer<(float Score, int Left)>
    {
        public static readonly AgendaOrder Instance = new();

        public int Compare((float Score, int Left) x, (float Score, int Left) y)
        {
            if (x.Score > y.Score)
            {
                return -1;
            }

            if (x.Score < y.Score)
            {
                return 1;
            }

            return x.Left.CompareTo(y.Left);
        }
    }
}
