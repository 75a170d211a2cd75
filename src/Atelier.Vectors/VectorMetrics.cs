namespace Atelier.Vectors;

/// <summary>The metrics Atelier.Vectors publishes.</summary>
public static class VectorMetrics
{
    /// <summary>
    /// The name of the <see cref="System.Diagnostics.Metrics.Meter"/> that collection stores publish on, per
    /// open collection: full-vector cache hit ratio, disk reads, live vectors.
    /// </summary>
    public const string MeterName = "Atelier.Vectors";
}
