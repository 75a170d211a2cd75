using Atelier.Core.Residency;
using Atelier.Storage.Blobs;

namespace Atelier.Storage.Placement;

/// <summary>The configured locations, each with the store that holds its bytes.</summary>
public sealed class StorageLocations
{
    private readonly Dictionary<string, (LocationDescriptor Descriptor, IBlobStore Store)> _byId = new(StringComparer.Ordinal);

    /// <summary>Opens the store of each location; relative local paths are under <paramref name="dataDirectory"/>.</summary>
    public StorageLocations(IEnumerable<LocationDescriptor> locations, string dataDirectory)
    {
        ArgumentNullException.ThrowIfNull(locations);
        foreach (var location in locations)
        {
            IBlobStore store = location.Kind switch
            {
                LocationKind.LocalDirectory => new LocalDirectoryBlobStore(location.Id, Path.Combine(dataDirectory, location.Uri)),
                _ => throw new NotSupportedException($"Location '{location.Id}' is of kind {location.Kind}, which this build does not support yet."),
            };
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

    /// <summary>Keys of committed blobs at a location that start with <paramref name="prefix"/>.</summary>
    public IEnumerable<string> ListKeys(string locationId, string prefix) => Get(locationId).Store.EnumerateKeys(prefix);

    /// <summary>Removes orphaned partial writes in every location; returns how many were removed.</summary>
    public int RemoveOrphans() => _byId.Values.Sum(v => v.Store.RemoveOrphans());

    private (LocationDescriptor Descriptor, IBlobStore Store) Get(string id) =>
        _byId.TryGetValue(id, out var entry)
            ? entry
            : throw new KeyNotFoundException($"No location '{id}' is configured; configured: {string.Join(", ", _byId.Keys)}.");
}
