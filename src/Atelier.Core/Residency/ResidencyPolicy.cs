namespace Atelier.Core.Residency;

/// <summary>
/// Where an artifact may live: which jurisdictions and operators, how many replicas it needs, and
/// whether one of them must be on-prem. Policies only ever get stricter along lineage:
/// <see cref="Intersect"/> gives the policy of something derived from several inputs.
/// </summary>
public sealed record ResidencyPolicy
{
    /// <summary>The policy's name, as shown in refusals and audit events.</summary>
    public required string Name { get; init; }

    /// <summary>Country codes or blocs the bytes may live in; <c>*</c> allows every jurisdiction.</summary>
    public required IReadOnlyList<string> AllowedJurisdictions { get; init; }

    /// <summary>Operators allowed to hold the bytes; empty allows any operator.</summary>
    public IReadOnlyList<string> AllowedOperators { get; init; } = [];

    /// <summary>How many copies the artifact needs (the first placement counts as one).</summary>
    public int MinReplicas { get; init; } = 1;

    /// <summary>When true, at least one copy must be on-prem, and the first copy is written on-prem
    /// so that the artifact is never cloud-only, not even for a moment.</summary>
    public bool RequireOnPrem { get; init; }

    /// <summary>Judges one placement of the artifact at <paramref name="location"/>.</summary>
    /// <param name="location">Where the bytes would go.</param>
    /// <param name="existingCopies">Locations already holding a committed copy.</param>
    public PlacementDecision Evaluate(LocationDescriptor location, IReadOnlyCollection<LocationDescriptor>? existingCopies = null)
    {
        var inJurisdiction = false;
        foreach (var j in AllowedJurisdictions)
        {
            if (location.IsIn(j))
            {
                inJurisdiction = true;
                break;
            }
        }

        if (!inJurisdiction)
        {
            return PlacementDecision.Refuse(
                $"location jurisdiction {location.Country}{(location.Blocs.Count > 0 ? "/" + string.Join(",", location.Blocs) : "")} is not among the allowed [{string.Join(", ", AllowedJurisdictions)}]");
        }

        if (AllowedOperators.Count > 0 && !AllowedOperators.Contains(location.Operator, StringComparer.OrdinalIgnoreCase))
        {
            return PlacementDecision.Refuse(
                $"operator '{location.Operator}' is not among the allowed [{string.Join(", ", AllowedOperators)}]");
        }

        if (RequireOnPrem && !location.OnPrem)
        {
            var hasOnPrem = false;
            if (existingCopies is not null)
            {
                foreach (var copy in existingCopies)
                {
                    hasOnPrem |= copy.OnPrem;
                }
            }

            if (!hasOnPrem)
            {
                return PlacementDecision.Refuse("the policy requires an on-prem copy before any cloud copy (never cloud-only)");
            }
        }

        return PlacementDecision.Allow;
    }

    /// <summary>
    /// True when every placement this policy allows, <paramref name="other"/> allows too: its
    /// jurisdictions lie within the other's, its operators among the other's, it needs at least as
    /// many replicas and an on-prem copy whenever the other does. This is how a workspace's allowed
    /// policies bound the ones its members may choose.
    /// </summary>
    public bool IsNoLooserThan(ResidencyPolicy other)
    {
        ArgumentNullException.ThrowIfNull(other);
        foreach (var mine in AllowedJurisdictions)
        {
            if (!other.AllowedJurisdictions.Any(theirs => Jurisdictions.IsWithin(mine, theirs)))
            {
                return false;
            }
        }

        if (other.AllowedOperators.Count > 0
            && (AllowedOperators.Count == 0 || AllowedOperators.Any(o => !other.AllowedOperators.Contains(o, StringComparer.OrdinalIgnoreCase))))
        {
            return false;
        }

        return MinReplicas >= other.MinReplicas && (RequireOnPrem || !other.RequireOnPrem);
    }

    /// <summary>Separates the names of the policies a derived policy's name is made of.</summary>
    public const char DerivedNameSeparator = '&';

    /// <summary>
    /// The policy name of an artifact derived from inputs with these policies (policies follow
    /// lineage): every distinct named policy once, in ordinal order, joined with
    /// <see cref="DerivedNameSeparator"/>. Inputs that are themselves derived contribute their parts;
    /// null or empty names are skipped. The same inputs in any order give the same name, which is
    /// what the catalog stores and <see cref="Resolve"/> reads back.
    /// </summary>
    public static string DeriveName(IEnumerable<string?> inputPolicyNames)
    {
        ArgumentNullException.ThrowIfNull(inputPolicyNames);
        var parts = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var name in inputPolicyNames)
        {
            if (!string.IsNullOrEmpty(name))
            {
                parts.UnionWith(PartsOf(name));
            }
        }

        return parts.Count > 0
            ? string.Join(DerivedNameSeparator, parts)
            : throw new ArgumentException("a derived policy needs at least one input policy", nameof(inputPolicyNames));
    }

    /// <summary>The names of the policies a (possibly derived) policy name is made of.</summary>
    public static IReadOnlyList<string> PartsOf(string name)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        return name.Split(DerivedNameSeparator, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    }

    /// <summary>
    /// The policy a stored name stands for: a configured policy, or for a derived name the
    /// intersection of its parts, each found with <paramref name="lookup"/>.
    /// </summary>
    public static ResidencyPolicy Resolve(string name, Func<string, ResidencyPolicy> lookup)
    {
        ArgumentNullException.ThrowIfNull(lookup);
        ResidencyPolicy? policy = null;
        foreach (var part in PartsOf(name))
        {
            var next = lookup(part);
            policy = policy is null ? next : policy.Intersect(next);
        }

        return policy ?? throw new ArgumentException($"'{name}' names no policy", nameof(name));
    }

    /// <summary>
    /// The policy of an artifact derived from this one and <paramref name="other"/>: jurisdictions
    /// and operators both allow, the larger replica count, on-prem if either requires it.
    /// </summary>
    public ResidencyPolicy Intersect(ResidencyPolicy other)
    {
        ArgumentNullException.ThrowIfNull(other);
        if (ReferenceEquals(this, other) || this == other)
        {
            return this;
        }

        return new ResidencyPolicy
        {
            Name = DeriveName([Name, other.Name]),
            AllowedJurisdictions = IntersectJurisdictions(AllowedJurisdictions, other.AllowedJurisdictions),
            AllowedOperators = IntersectOperators(AllowedOperators, other.AllowedOperators),
            MinReplicas = Math.Max(MinReplicas, other.MinReplicas),
            RequireOnPrem = RequireOnPrem || other.RequireOnPrem,
        };
    }

    private static string[] IntersectJurisdictions(IReadOnlyList<string> a, IReadOnlyList<string> b)
    {
        if (a.Contains("*"))
        {
            return [.. b];
        }

        if (b.Contains("*"))
        {
            return [.. a];
        }

        // A country and a bloc do not intersect symbolically without a membership table, so keep
        // only the names both sides list: the result is never looser than either input.
        return [.. a.Where(j => b.Contains(j, StringComparer.OrdinalIgnoreCase))];
    }

    private static string[] IntersectOperators(IReadOnlyList<string> a, IReadOnlyList<string> b)
    {
        if (a.Count == 0)
        {
            return [.. b];
        }

        if (b.Count == 0)
        {
            return [.. a];
        }

        var both = a.Where(o => b.Contains(o, StringComparer.OrdinalIgnoreCase)).ToArray();

        // An empty list means "any operator", so an empty intersection must not become that:
        // keep a name no location has, which allows none.
        return both.Length > 0 ? both : ["(none)"];
    }
}

/// <summary>The outcome of judging one placement.</summary>
/// <param name="Allowed">Whether the bytes may be written.</param>
/// <param name="Reason">Why not, when refused.</param>
public readonly record struct PlacementDecision(bool Allowed, string? Reason)
{
    /// <summary>The placement is allowed.</summary>
    public static PlacementDecision Allow => new(true, null);

    /// <summary>The placement is refused for <paramref name="reason"/>.</summary>
    public static PlacementDecision Refuse(string reason) => new(false, reason);
}
