namespace Atelier.Vectors;

/// <summary>
/// How two vectors are compared. Every index reports a <em>distance</em>: smaller is closer, whatever the metric.
/// </summary>
public enum DistanceMetric
{
    /// <summary>Squared Euclidean distance, <c>sum((a - b)^2)</c>.</summary>
    L2 = 0,

    /// <summary>Inner product, reported as the distance <c>1 - dot(a, b)</c> (hnswlib's "ip" space).</summary>
    Dot = 1,

    /// <summary>Cosine, reported as <c>1 - cos(a, b)</c>. Indexes normalise vectors on insert and queries on search.</summary>
    Cosine = 2,
}
