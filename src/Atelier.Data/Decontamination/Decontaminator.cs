using Atelier.Data.Model;

namespace Atelier.Data.Decontamination;

/// <summary>Options of the decontamination stage.</summary>
public sealed record DecontaminationOptions
{
    /// <summary>Words per n-gram (13 as in GPT-3's decontamination).</summary>
    public int NGramSize { get; init; } = 13;

    /// <summary>
    /// The roles of a conversation whose text is compared: what can leak an answer. User and
    /// assistant turns by default; system prompts and tool schemas are shared by almost every real
    /// dataset's training and validation files, so comparing them would call every example
    /// contaminated. Plain text examples are always compared whole.
    /// </summary>
    public IReadOnlyList<ChatRole> Roles { get; init; } = [ChatRole.User, ChatRole.Assistant];

    /// <summary>
    /// Eval items with fewer compared words than this are not indexed: an item of two or three words
    /// ("Yes, thanks") is a common phrase, and matching it whole would drop every training example
    /// that says it. Items between this and <see cref="NGramSize"/> words are matched whole.
    /// </summary>
    public int MinItemWords { get; init; } = 5;
}

/// <summary>An eval item a training example overlapped with.</summary>
/// <param name="File">The eval file.</param>
/// <param name="Line">Its 1-based line (or row).</param>
public sealed record EvalItemReference(string File, long Line);

/// <summary>
/// Decontamination by n-gram overlap over the text that can leak an answer (user and assistant
/// turns by default, never system prompts or tool schemas): every word n-gram of every eval item is
/// indexed (items shorter than n words, but not shorter than the minimum, are indexed as one gram
/// of their whole length); a training example whose compared text contains any indexed gram is
/// contaminated, and the first eval item holding that gram is named.
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
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MinItemWords, 1);
        ArgumentNullException.ThrowIfNull(options.Roles);
        if (options.Roles.Count == 0)
        {
            throw new ArgumentException("decontamination needs at least one role to compare", nameof(options));
        }

        Options = options;
        RoleMask = WordHasher.RoleMask(options.Roles);
    }

    /// <summary>The options.</summary>
    public DecontaminationOptions Options { get; }

    /// <summary>The mask of <see cref="DecontaminationOptions.Roles"/>, for <see cref="WordHasher"/>.</summary>
    internal int RoleMask { get; }

    /// <summary>Eval items indexed.</summary>
    public int ItemCount => _items.Count;

    /// <summary>Eval items too short to index (fewer than <see cref="DecontaminationOptions.MinItemWords"/> compared words).</summary>
    public int ShortItemCount { get; private set; }

    /// <summary>Distinct grams indexed.</summary>
    public int GramCount => _itemByGram.Count;

    /// <summary>Indexes one eval item (normalise it as the training data first).</summary>
    public void AddEvalItem(TrainingExample item)
    {
        ArgumentNullException.ThrowIfNull(item);
        var words = new List<ulong>();
        WordHasher.HashWords(item, words, RoleMask);
        if (words.Count == 0)
        {
            return;
        }

        if (words.Count < Options.MinItemWords)
        {
            ShortItemCount++;
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

    /// <summary>Hashes the compared words of a training example, for <see cref="FindOverlap"/>.</summary>
    public void HashWords(TrainingExample example, List<ulong> destination)
    {
        ArgumentNullException.ThrowIfNull(example);
        WordHasher.HashWords(example, destination, RoleMask);
    }

    /// <summary>
    /// Checks a training example given the hashes of its compared words (<see cref="HashWords"/>). Returns the eval item it overlaps with, or
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
