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
        : this(locations, dataDirectory, providers, null)
    {
    }

    /// <summary>
    /// Opens the locations as seen from one node of a cluster: a local directory of another node
    /// (its <see cref="LocationDescriptor.Node"/> names that node) is not on this machine, so it is
    /// read by streaming from its owner (<see cref="RemoteNodeBlobStore"/>) and never written here.
    /// Every other location is opened by its provider.
    /// </summary>
    /// <param name="locations">The configured locations (one list, the same on every node).</param>
    /// <param name="dataDirectory">Relative local paths are under it.</param>
    /// <param name="providers">Open each kind of location.</param>
    /// <param name="cluster">This node and how it reaches the others; null in the embedded mode, where every location is this machine's.</param>
    public StorageLocations(IEnumerable<LocationDescriptor> locations, string dataDirectory, IEnumerable<IBlobStoreProvider> providers, ClusterView? cluster)
    {
        ArgumentNullException.ThrowIfNull(locations);
        ArgumentNullException.ThrowIfNull(providers);
        var byKind = providers.ToDictionary(p => p.Kind);
        LocalNode = cluster?.Node;
        foreach (var location in locations)
        {
            var store = cluster is not null && IsOtherNodesDrive(location, cluster.Node)
                ? new RemoteNodeBlobStore(location.Id, location.Node!, cluster.Directory, cluster.Http)
                : byKind.TryGetValue(location.Kind, out var provider)
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

    /// <summary>This node's name in a cluster; null in the embedded mode.</summary>
    public string? LocalNode { get; }

    /// <summary>Every location, in configuration order.</summary>
    public IEnumerable<LocationDescriptor> All => _byId.Values.Select(v => v.Descriptor);

    /// <summary>
    /// The locations only this node writes: every one in the embedded mode; in a cluster, this
    /// node's own drives. Start-up sweeps (blobs without a catalog row, a crash's partial writes) run
    /// over these alone, so they never take another node's write in progress for garbage; what a
    /// crash leaves on a shared location stays there (decision 0020).
    /// </summary>
    public IEnumerable<LocationDescriptor> OwnedHere => All.Where(l => !IsElsewhere(l.Id) && !IsShared(l.Id));

    /// <summary>The location with <paramref name="id"/>.</summary>
    public LocationDescriptor Describe(string id) => Get(id).Descriptor;

    /// <summary>True when a location with <paramref name="id"/> is configured.</summary>
    public bool Contains(string id) => _byId.ContainsKey(id);

    /// <summary>
    /// True when the location is a drive of another node of the cluster: this node reads it through
    /// its owner and never writes it (writers pick another location; start-up sweeps leave it alone).
    /// </summary>
    public bool IsElsewhere(string id) => Get(id).Store is RemoteNodeBlobStore;

    /// <summary>
    /// True when more than one node writes the location: an S3-compatible bucket, or a directory that
    /// no node owns, in a cluster. A start-up sweep there must not take another node's write in
    /// progress for a crash's leftovers.
    /// </summary>
    public bool IsShared(string id)
    {
        var descriptor = Describe(id);
        return LocalNode is not null && (descriptor.Kind != LocationKind.LocalDirectory || descriptor.Node is null);
    }

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
        foreach (var (descriptor, store) in _byId.Values)
        {
            // A directory every node writes (a shared mount) holds other nodes' writes in progress,
            // which look like a crash's leftovers: it is swept by no one at start. An S3 location
            // sweeps only uploads older than its age limit (decision 0017).
            if (IsShared(descriptor.Id) && descriptor.Kind == LocationKind.LocalDirectory)
            {
                continue;
            }

            removed += await store.RemoveOrphansAsync(cancellationToken).ConfigureAwait(false);
        }

        return removed;
    }

    private static bool IsOtherNodesDrive(LocationDescriptor location, string node) =>
        location.Kind == LocationKind.LocalDirectory && location.Node is { } owner && owner != node;

    private (LocationDescriptor Descriptor, IBlobStore Store) Get(string id) =>
        _byId.TryGetValue(id, out var entry)
            ? entry
            : throw new KeyNotFoundException($"No location '{id}' is configured; configured: {string.Join(", ", _byId.Keys)}.");
}

/// <summary>A node's view of the cluster, as storage needs it.</summary>
/// <param name="Node">This node's name.</param>
/// <param name="Directory">Finds other nodes' blob endpoints.</param>
/// <param name="Http">The client that streams from them.</param>
public sealed record ClusterView(string Node, INodeBlobDirectory? Directory, HttpClient Http);
