using Atelier.Core.Residency;

namespace Atelier.Vectors.Collections;

/// <summary>The residency policy a name denotes (a name, or names joined by <c>&amp;</c> for their intersection).</summary>
/// <param name="name">The policy name a collection was created with.</param>
public delegate ResidencyPolicy ResidencyPolicyResolver(string name);
