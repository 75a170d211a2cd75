namespace Atelier.Core.Residency;

/// <summary>The kinds of place bytes can live.</summary>
public enum LocationKind
{
    /// <summary>A directory on a local or node-local filesystem (e.g. an NVMe drive).</summary>
    LocalDirectory,

    /// <summary>A bucket on an S3-compatible object store (<c>"kind": "s3"</c> in <c>atelier.json</c>).</summary>
    [System.Text.Json.Serialization.JsonStringEnumMemberName("s3")]
    S3Bucket,
}

/// <summary>
/// A place bytes can live, with the facts a residency policy is judged against: its jurisdiction
/// (an ISO 3166 country code and the blocs it belongs to), its site and rack, whether it is
/// on-prem, and who operates it.
/// </summary>
public sealed record LocationDescriptor
{
    /// <summary>Stable id, e.g. <c>local</c> or <c>paris-nvme0</c>.</summary>
    public required string Id { get; init; }

    /// <summary>What kind of store it is.</summary>
    public LocationKind Kind { get; init; } = LocationKind.LocalDirectory;

    /// <summary>
    /// For a local directory: its path. For S3: the endpoint, bucket and optional key prefix,
    /// <c>http(s)://host:port/bucket[/prefix]</c> (path-style addressing).
    /// </summary>
    public required string Uri { get; init; }

    /// <summary>For an S3 location: its region and where its credentials come from; absent for other kinds.</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)]
    public S3LocationSettings? S3 { get; init; }

    /// <summary>ISO 3166-1 alpha-2 country code, upper case (e.g. <c>FR</c>).</summary>
    public required string Country { get; init; }

    /// <summary>Blocs the country belongs to, e.g. <c>EU</c>, <c>EEA</c>.</summary>
    public IReadOnlyList<string> Blocs { get; init; } = [];

    /// <summary>The site (data centre), e.g. <c>paris-dc1</c>.</summary>
    public string? Site { get; init; }

    /// <summary>The rack within the site.</summary>
    public string? Rack { get; init; }

    /// <summary>The node whose drive this is, for a node-local location; the scheduler trains next to it.</summary>
    public string? Node { get; init; }

    /// <summary>True when the hardware is the organisation's own (not a cloud provider's).</summary>
    public bool OnPrem { get; init; } = true;

    /// <summary>Who operates the location, e.g. the organisation's name or a cloud provider.</summary>
    public string Operator { get; init; } = "self";

    /// <summary>True when <paramref name="jurisdiction"/> (a country code, a bloc, or <c>*</c>) covers this location.</summary>
    public bool IsIn(string jurisdiction)
    {
        if (jurisdiction == "*" || string.Equals(jurisdiction, Country, StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }

        foreach (var bloc in Blocs)
        {
            if (string.Equals(jurisdiction, bloc, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>A short human description for error messages and listings.</summary>
    public string Describe() =>
        $"{Id} ({Country}{(Blocs.Count > 0 ? "/" + string.Join(",", Blocs) : "")}, {(OnPrem ? "on-prem" : "cloud")}, operator {Operator})";
}
