using Atelier.Core.Residency;
using Atelier.Storage.Blobs;

namespace Atelier.Storage.Placement;

/// <summary>The configured locations, each with the store that holds its bytes.</summary>
public sealed class StorageLocations
{
    private readonly Dictionary<string, (LocationDescriptor Descriptor, IBlobStore Store)> _byId = new(StringComparer.Ordinal);

    /// <summary>Opens the store of each location; relative local paths are under <paramref name="dataDirectory"/>.</summary>
    public StorageLocations(IEnumerable<LocationDescriptor> locations, string dataDirectory)
        : this(locations, dataDirectory, [new LocalDirectoryBlobStoreProvider()])
    {
    }

    /// <summary>
    /// Opens the store of each location with the provider of its kind, so that a new kind of
    /// storage (an S3-compatible bucket) is one more provider, not a change here.
    /// </summary>
    public StorageLocations(IEnumerable<LocationDescriptor> locations, string dataDirectory, IEnumerable<IBlobStoreProvider> providers)
    {
        ArgumentNullException.ThrowIfNull(locations);
        ArgumentNullException.ThrowIfNull(providers);
        var byKind = providers.ToDictionary(p => p.Kind);
        foreach (var location in locations)
        {
            var store = byKind.TryGetValue(location.Kind, out var provider)
                ? provider.Open(location, dataDirectory)
                : throw new NotSupportedException($"Location '{location.Id}' is of kind {location.Kind}, which no configured storage provider opens (available: {string.Join(", ", byKind.Keys)}).");
            if (!_byId.TryAdd(location.Id, (location, store)))
            {
                throw new InvalidOperationException($"Location id '{location.Id}' is configured twice.");
            }
        }
    }

    /// <summary>
    /// Uses stores built by the caller, one per location: for kinds this class cannot open itself,
    /// and for tests that wrap a store (e.g. one that fails like a full disk).
    /// </summary>
    public StorageLocations(IEnumerable<(LocationDescriptor Descriptor, IBlobStore Store)> stores)
    {
        ArgumentNullException.ThrowIfNull(stores);
        foreach (var (descriptor, store) in stores)
        {
            if (!_byId.TryAdd(descriptor.Id, (descriptor, store)))
            {
                throw new InvalidOperationException($"Location id '{descriptor.Id}' is configured twice.");
            }
        }
    }

    /// <summary>Every location, in configuration order.</summary>
    public IEnumerable<LocationDescriptor> All => _byId.Values.Select(v => v.Descriptor);

    /// <summary>The location with <paramref name="id"/>.</summary>
    public LocationDescriptor Describe(string id) => Get(id).Descriptor;

    /// <summary>True when a location with <paramref name="id"/> is configured.</summary>
    public bool Contains(string id) => _byId.ContainsKey(id);

    /// <summary>The store of the location with <paramref name="id"/>.</summary>
    internal IBlobStore Store(string id) => Get(id).Store;

    /// <summary>Keys of committed blobs at a location that start with <paramref name="prefix"/>, in ordinal order.</summary>
    public IAsyncEnumerable<string> ListKeysAsync(string locationId, string prefix, CancellationToken cancellationToken) =>
        Get(locationId).Store.ListAsync(prefix, cancellationToken);

    /// <summary>
    /// Removes orphaned partial writes in every location; returns how many were removed. Only safe
    /// when nothing is writing, i.e. at start-up before other writers begin.
    /// </summary>
    public async ValueTask<int> RemoveOrphansAsync(CancellationToken cancellationToken)
    {
        var removed = 0;
        foreach (var (_, store) in _byId.Values)
        {
            removed += await store.RemoveOrphansAsync(cancellationToken).ConfigureAwait(false);
        }

        return removed;
    }

    private (LocationDescriptor Descriptor, IBlobStore Store) Get(string id) =>
        _byId.TryGetValue(id, out var entry)
            ? entry
            : throw new KeyNotFoundException($"No location '{id}' is configured; configured: {string.Join(", ", _byId.Keys)}.");
}
