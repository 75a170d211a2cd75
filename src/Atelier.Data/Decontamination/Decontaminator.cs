using Atelier.Data.Model;

namespace Atelier.Data.Decontamination;

/// <summary>Options of the decontamination stage.</summary>
public sealed record DecontaminationOptions
{
    /// <summary>Words per n-gram (13 as in GPT-3's decontamination).</summary>
    public int NGramSize { get; init; } = 13;
}

/// <summary>An eval item a training example overlapped with.</summary>
/// <param name="File">The eval file.</param>
/// <param name="Line">Its 1-based line (or row).</param>
public sealed record EvalItemReference(string File, long Line);

/// <summary>
/// Decontamination by n-gram overlap: every word n-gram of every eval item is indexed (items
/// shorter than n words are indexed as one gram of their whole length); a training example that
/// contains any indexed gram is contaminated, and the first eval item holding that gram is named.
/// Lookups are pure and thread-safe once built.
/// </summary>
public sealed class Decontaminator
{
    private readonly Dictionary<ulong, int> _itemByGram = [];
    private readonly List<EvalItemReference> _items = [];
    private readonly SortedSet<int> _shortLengths = [];

    /// <summary>Creates an empty index.</summary>
    public Decontaminator(DecontaminationOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.NGramSize, 1);
        Options = options;
    }

    /// <summary>The options.</summary>
    public DecontaminationOptions Options { get; }

    /// <summary>Eval items indexed.</summary>
    public int ItemCount => _items.Count;

    /// <summary>Distinct grams indexed.</summary>
    public int GramCount => _itemByGram.Count;

    /// <summary>Indexes one eval item (normalise it as the training data first).</summary>
    public void AddEvalItem(TrainingExample item)
    {
        ArgumentNullException.ThrowIfNull(item);
        var words = new List<ulong>();
        WordHasher.HashWords(item, words);
        if (words.Count == 0)
        {
            return;
        }

        int index = _items.Count;
        _items.Add(new EvalItemReference(item.SourceFile, item.Line));
        var grams = new List<ulong>();
        if (words.Count < Options.NGramSize)
        {
            _shortLengths.Add(words.Count);
        }

        WordHasher.HashNGrams(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(words), Options.NGramSize, grams);
        foreach (ulong gram in grams)
        {
            _itemByGram.TryAdd(gram, index);
        }
    }

    /// <summary>
    /// Checks a training example given its word hashes. Returns the eval item it overlaps with, or
    /// null. <paramref name="scratch"/> is reused between calls by one thread.
    /// </summary>
    public EvalItemReference? FindOverlap(ReadOnlySpan<ulong> words, List<ulong> scratch)
    {
        ArgumentNullException.ThrowIfNull(scratch);
        if (_items.Count == 0 || words.IsEmpty)
        {
            return null;
        }

        scratch.Clear();
        if (words.Length >= Options.NGramSize)
        {
            WordHasher.HashNGrams(words, Options.NGramSize, scratch);
        }

        foreach (int length in _shortLengths)
        {
            if (length <= words.Length)
            {
                WordHasher.HashNGrams(words, length, scratch);
            }
        }

        foreach (ulong gram in scratch)
        {
            if (_itemByGram.TryGetValue(gram, out int item))
            {
                return _items[item];
            }
        }

        return null;
    }
}
