using Atelier.Features.Schema;

namespace Atelier.Features.Offline;

/// <summary>One row of an entity dataframe: the entity and the instant its features are wanted at.</summary>
/// <param name="EntityKey">The entity key.</param>
/// <param name="Timestamp">The point in time; no value with a later event time may be joined.</param>
public sealed record EntityRow(string EntityKey, DateTimeOffset Timestamp);

/// <summary>
/// A view's rows arranged for point-in-time lookups: per entity key, its values sorted by event
/// time and then by their order in the log. <see cref="TryAsOf"/> is Feast's
/// <c>get_historical_features</c> rule: the latest value whose event time is at or before T, and
/// (with a TTL) not older than T minus the TTL; never a value from after T.
/// </summary>
public sealed class ViewTimeline
{
    private readonly Dictionary<string, Entry[]> _byKey;

    private ViewTimeline(Dictionary<string, Entry[]> byKey) => _byKey = byKey;

    /// <summary>The keys with at least one value.</summary>
    public IEnumerable<string> Keys => _byKey.Keys;

    /// <summary>Arranges <paramref name="rows"/> (each with its log ordinal); only <paramref name="keys"/> when given.</summary>
    public static ViewTimeline Build(IEnumerable<(FeatureRow Row, long Ordinal)> rows, IReadOnlySet<string>? keys = null)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var lists = new Dictionary<string, List<Entry>>(StringComparer.Ordinal);
        foreach (var (row, ordinal) in rows)
        {
            if (keys is not null && !keys.Contains(row.EntityKey))
            {
                continue;
            }

            if (!lists.TryGetValue(row.EntityKey, out var list))
            {
                lists[row.EntityKey] = list = [];
            }

            list.Add(new Entry(row.EventTime.UtcTicks, ordinal, row));
        }

        var byKey = new Dictionary<string, Entry[]>(lists.Count, StringComparer.Ordinal);
        foreach (var (key, list) in lists)
        {
            var entries = list.ToArray();
            Array.Sort(entries, static (a, b) => a.Ticks != b.Ticks ? a.Ticks.CompareTo(b.Ticks) : a.Ordinal.CompareTo(b.Ordinal));
            byKey[key] = entries;
        }

        return new ViewTimeline(byKey);
    }

    /// <summary>The value of <paramref name="key"/> as of <paramref name="asOf"/>, or false when there is none (or it is older than <paramref name="ttl"/>).</summary>
    public bool TryAsOf(string key, DateTimeOffset asOf, TimeSpan? ttl, out FeatureRow row)
    {
        row = null!;
        if (!_byKey.TryGetValue(key, out var entries))
        {
            return false;
        }

        // The last entry with Ticks <= T: binary search for the first entry after T.
        var t = asOf.UtcTicks;
        int lo = 0, hi = entries.Length;
        while (lo < hi)
        {
            var mid = (lo + hi) >>> 1;
            if (entries[mid].Ticks <= t)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }

        if (lo == 0)
        {
            return false;
        }

        var found = entries[lo - 1];
        if (ttl is { } limit && t - found.Ticks > limit.Ticks)
        {
            return false;
        }

        row = found.Row;
        return true;
    }

    private readonly record struct Entry(long Ticks, long Ordinal, FeatureRow Row);
}

/// <summary>A reference to one feature: <c>view:feature</c>, or <c>view@2:feature</c> for a given version.</summary>
/// <param name="View">The view name.</param>
/// <param name="Version">The version; the latest when null.</param>
/// <param name="Feature">The feature name.</param>
public sealed record FeatureReference(string View, int? Version, string Feature)
{
    /// <summary>Parses <c>view:feature</c> or <c>view@version:feature</c>; throws a bad-request error naming the text otherwise.</summary>
    public static FeatureReference Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var colon = text.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0 || colon == text.Length - 1)
        {
            throw new Core.Errors.BadRequestException($"Feature reference '{text}' must be 'view:feature' or 'view@version:feature'.", "invalid_feature_reference");
        }

        var view = text[..colon];
        int? version = null;
        var at = view.IndexOf('@', StringComparison.Ordinal);
        if (at >= 0)
        {
            if (!int.TryParse(view.AsSpan(at + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var v) || v < 1)
            {
                throw new Core.Errors.BadRequestException($"Feature reference '{text}' has a bad version; expected 'view@2:feature'.", "invalid_feature_reference");
            }

            version = v;
            view = view[..at];
        }

        return new FeatureReference(view, version, text[(colon + 1)..]);
    }

    /// <inheritdoc />
    public override string ToString() => Version is null ? $"{View}:{Feature}" : $"{View}@{Version}:{Feature}";
}
