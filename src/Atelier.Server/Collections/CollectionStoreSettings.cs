using Atelier.Core;
using Atelier.Vectors.Collections;

namespace Atelier.Server.Collections;

/// <summary>The collection store's options as <c>atelier.json</c>'s <c>collections</c> section gives them.</summary>
public static class CollectionStoreSettings
{
    /// <summary>
    /// The options of <paramref name="section"/>, checked first (the server refuses to start on a bad value,
    /// naming the field); the defaults when the section is absent.
    /// </summary>
    /// <exception cref="InvalidOperationException">A value is out of range or a segment directory is missing or open to others.</exception>
    public static CollectionStoreOptions Of(CollectionsConfig? section)
    {
        if (section is null)
        {
            return new CollectionStoreOptions();
        }

        var directories = section.Validate();
        return new CollectionStoreOptions
        {
            MemoryBudgetBytes = section.MemoryBudgetBytes,
            VectorSegmentDirectories = directories,
            VectorCacheBytes = section.VectorCacheBytes,
            RerankMultiplier = section.RerankMultiplier,
            MinSnapshotLogBytes = section.MinSnapshotLogBytes,
        };
    }
}
