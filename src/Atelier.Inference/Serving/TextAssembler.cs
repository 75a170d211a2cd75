using System.Text;
using Atelier.Data.Tokenization;

namespace Atelier.Inference.Serving;

/// <summary>
/// Turns generated token ids into text as they arrive: a token may end in the middle of a UTF-8
/// character (byte-level vocabularies) or change how the previous one reads (SentencePiece's leading
/// space), so each delta is the difference between decoding a short window with and without the new
/// tokens, emitted only once it no longer ends in a replacement character. Stop strings end the text
/// before them; the tail that might still become one is held back until it cannot.
/// </summary>
internal sealed class TextAssembler
{
    private readonly ITextTokenizer _tokenizer;
    private readonly IReadOnlyList<string> _stops;
    private readonly int _holdBack;
    private readonly List<int> _ids = [];
    private readonly StringBuilder _text = new();
    private int _prefixOffset;
    private int _readOffset;
    private int _emitted;

    public TextAssembler(ITextTokenizer tokenizer, IReadOnlyList<string> stops)
    {
        _tokenizer = tokenizer;
        _stops = stops;
        _holdBack = stops.Count == 0 ? 0 : stops.Max(s => s.Length) - 1;
    }

    /// <summary>Whether a stop string was found: the text ends before it, and nothing more is taken.</summary>
    public bool Stopped { get; private set; }

    /// <summary>The text so far (up to a stop string).</summary>
    public string Text => _text.ToString();

    /// <summary>Adds a token; returns the text that can be shown now (possibly empty).</summary>
    public string Push(int token)
    {
        if (Stopped)
        {
            return string.Empty;
        }

        _ids.Add(token);
        var before = _tokenizer.Decode(Window(_prefixOffset, _readOffset));
        var after = _tokenizer.Decode(Window(_prefixOffset, _ids.Count));
        if (after.Length <= before.Length || after.EndsWith('\uFFFD'))
        {
            return string.Empty;
        }

        _text.Append(after, before.Length, after.Length - before.Length);
        _prefixOffset = _readOffset;
        _readOffset = _ids.Count;
        return Release(final: false);
    }

    /// <summary>Ends the text: whatever was held back is released (a trailing partial character as decoded).</summary>
    public string Finish()
    {
        if (!Stopped && _readOffset < _ids.Count)
        {
            var before = _tokenizer.Decode(Window(_prefixOffset, _readOffset));
            var after = _tokenizer.Decode(Window(_prefixOffset, _ids.Count));
            if (after.Length > before.Length)
            {
                _text.Append(after, before.Length, after.Length - before.Length);
            }

            _readOffset = _ids.Count;
        }

        return Release(final: true);
    }

    private IEnumerable<int> Window(int from, int to)
    {
        for (var i = from; i < to; i++)
        {
            yield return _ids[i];
        }
    }

    private string Release(bool final)
    {
        if (!Stopped && _stops.Count > 0)
        {
            // Only where a stop could newly end: from the held-back tail on.
            var from = Math.Max(0, _emitted - _holdBack);
            var text = _text.ToString();
            var cut = -1;
            foreach (var stop in _stops)
            {
                var at = text.IndexOf(stop, from, StringComparison.Ordinal);
                if (at >= 0 && (cut < 0 || at < cut))
                {
                    cut = at;
                }
            }

            if (cut >= 0)
            {
                Stopped = true;
                _text.Length = cut;
                final = true;
            }
        }

        var end = final ? _text.Length : Math.Max(_emitted, _text.Length - _holdBack);
        if (end <= _emitted)
        {
            return string.Empty;
        }

        var delta = _text.ToString(_emitted, end - _emitted);
        _emitted = end;
        return delta;
    }
}
