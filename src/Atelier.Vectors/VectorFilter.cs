namespace Atelier.Vectors;

/// <summary>
/// A predicate over vector ids that a search applies <em>during</em> graph traversal: non-matching vectors
/// still guide the walk but never enter the results.
/// </summary>
public interface IVectorFilter
{
    /// <summary>Whether the vector with this id may be returned.</summary>
    bool Matches(long id);

    /// <summary>
    /// How many ids match, when the filter knows it cheaply; indexes use it to switch to an exact scan
    /// over the matching ids when the filter is very selective. Null when unknown.
    /// </summary>
    int? MatchCount { get; }

    /// <summary>The matching ids when the filter can list them (for the exact scan); null otherwise.</summary>
    IEnumerable<long>? MatchingIds { get; }
}

/// <summary>A filter that matches an explicit set of ids (e.g. the result of a payload query).</summary>
public sealed class IdSetFilter : IVectorFilter
{
    private readonly HashSet<long> _ids;

    /// <summary>Creates a filter matching exactly <paramref name="ids"/>.</summary>
    public IdSetFilter(IEnumerable<long> ids) => _ids = [.. ids];

    /// <inheritdoc />
    public bool Matches(long id) => _ids.Contains(id);

    /// <inheritdoc />
    public int? MatchCount => _ids.Count;

    /// <inheritdoc />
    public IEnumerable<long>? MatchingIds => _ids;
}

/// <summary>A filter backed by a predicate whose selectivity is unknown (or given by the caller).</summary>
/// <param name="predicate">Returns true for ids that may be returned.</param>
/// <param name="estimatedMatches">An estimate of how many ids match, if the caller knows one.</param>
public sealed class PredicateFilter(Func<long, bool> predicate, int? estimatedMatches = null) : IVectorFilter
{
    /// <inheritdoc />
    public bool Matches(long id) => predicate(id);

    /// <inheritdoc />
    public int? MatchCount => estimatedMatches;

    /// <inheritdoc />
    public IEnumerable<long>? MatchingIds => null;
}
