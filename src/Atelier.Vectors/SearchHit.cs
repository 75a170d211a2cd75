namespace Atelier.Vectors;

/// <summary>One search result: the caller's id for the vector and its distance to the query (smaller is closer).</summary>
/// <param name="Id">The id the vector was added with.</param>
/// <param name="Distance">The exact distance under the index metric.</param>
public readonly record struct SearchHit(long Id, float Distance);
