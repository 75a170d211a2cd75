namespace Atelier.Core.Residency;

/// <summary>
/// Which countries the blocs that policies name contain, so that a policy naming a country can be
/// compared with one naming its bloc. Locations carry their blocs themselves; this table is only
/// for comparing policies.
/// </summary>
public static class Jurisdictions
{
    private static readonly HashSet<string> EuMembers = new(StringComparer.OrdinalIgnoreCase)
    {
        "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT",
        "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE",
    };

    private static readonly HashSet<string> EeaOnly = new(StringComparer.OrdinalIgnoreCase) { "IS", "LI", "NO" };

    /// <summary>
    /// True when everything in <paramref name="inner"/> (a country code, a bloc or <c>*</c>) is
    /// also in <paramref name="outer"/>: equal names, <c>*</c> as the outer, a member country of
    /// an outer bloc, or the EU inside the EEA.
    /// </summary>
    public static bool IsWithin(string inner, string outer)
    {
        ArgumentNullException.ThrowIfNull(inner);
        ArgumentNullException.ThrowIfNull(outer);
        if (outer == "*" || string.Equals(inner, outer, StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }

        if (inner == "*")
        {
            return false;
        }

        return outer.ToUpperInvariant() switch
        {
            "EU" => EuMembers.Contains(inner),
            "EEA" => EuMembers.Contains(inner) || EeaOnly.Contains(inner) || string.Equals(inner, "EU", StringComparison.OrdinalIgnoreCase),
            _ => false,
        };
    }
}
