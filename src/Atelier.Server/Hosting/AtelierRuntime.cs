using System.Security.Cryptography;
using System.Text;
using Atelier.Catalog;
using Atelier.Catalog.Sqlite;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Core.IO;
using Atelier.Storage.Audit;
using Atelier.Storage.Placement;

namespace Atelier.Server.Hosting;

/// <summary>Where and how one Atelier server runs.</summary>
public sealed record ServerOptions
{
    /// <summary>The data directory: catalog, configuration, locations, audit log, keys.</summary>
    public required string DataDirectory { get; init; }

    /// <summary>Overrides the configured bind address.</summary>
    public string? Bind { get; init; }

    /// <summary>Overrides the configured port (0 picks a free one).</summary>
    public int? Port { get; init; }

    /// <summary>The country of the default location when the data directory is new (ISO 3166-1 alpha-2).</summary>
    public string DefaultCountry { get; init; } = "FR";

    /// <summary>The clock; tests pass a fake one.</summary>
    public TimeProvider Clock { get; init; } = TimeProvider.System;
}

/// <summary>
/// Everything one server process owns: configuration, catalog, locations, placement guard and
/// audit log, opened from the data directory. Opening also repairs what a crash may have left:
/// partial writes in every location and blobs that no catalog row references.
/// </summary>
public sealed class AtelierRuntime : IDisposable
{
    /// <summary>The name of the file holding the first key: the platform operator's.</summary>
    public const string AdminKeyFile = "admin.key";

    private AtelierRuntime(ServerOptions options, AtelierConfig config, SqliteCatalog catalog, PolicyCatalog policies, StorageLocations locations, AuditLog audit)
    {
        Options = options;
        Config = config;
        Catalog = catalog;
        Locations = locations;
        Audit = audit;
        Guard = new PlacementGuard(locations, audit);
        Keys = new ApiKeyStore(catalog.Keys, options.Clock);
        Policies = policies;
        Topology = new Atelier.Core.Topology.TopologyMap(config.Sites);
        UrlSigningKey = LoadOrCreateSecret(Path.Combine(options.DataDirectory, "url-signing.key"));
        AuditSigner = AuditHeadSigner.LoadOrCreate(Path.Combine(options.DataDirectory, AuditHeadSigner.FileName));
    }

    /// <summary>Options the server was started with.</summary>
    public ServerOptions Options { get; }

    /// <summary>The installation's configuration.</summary>
    public AtelierConfig Config { get; }

    /// <summary>The catalog: the embedded SQLite one, composed here and nowhere else.</summary>
    public SqliteCatalog Catalog { get; }

    /// <summary>The configured locations.</summary>
    public StorageLocations Locations { get; }

    /// <summary>The audit log.</summary>
    public AuditLog Audit { get; }

    /// <summary>The only way to write bytes.</summary>
    public PlacementGuard Guard { get; }

    /// <summary>API keys and workspaces.</summary>
    public ApiKeyStore Keys { get; }

    /// <summary>Uploaded files.</summary>
    public IFileRepository Files => Catalog.Files;

    /// <summary>Dataset versions.</summary>
    public IDatasetRepository Datasets => Catalog.Datasets;

    /// <summary>Fine-tuning jobs.</summary>
    public IJobRepository Jobs => Catalog.Jobs;

    /// <summary>Residency policies and which of them each workspace may use.</summary>
    public PolicyCatalog Policies { get; }

    /// <summary>Sites, racks and nodes.</summary>
    public Atelier.Core.Topology.TopologyMap Topology { get; }

    /// <summary>The name of this node in the topology (the machine's name).</summary>
    public string NodeName => Environment.MachineName;

    /// <summary>
    /// The policy named <paramref name="name"/>; a name joined with <c>&amp;</c> is the intersection of
    /// those policies, as derived artifacts (a dataset of several files) carry.
    /// </summary>
    public Atelier.Core.Residency.ResidencyPolicy ResolvePolicy(string name) => Policies.Resolve(name);

    /// <summary>
    /// Runs a catalog change that frees space (a deletion). When the disk is full, it gives up the
    /// audit log's space reserve and tries once more, so deleting works on a full disk and space can
    /// be freed; the deletion's audit event then has room too (see docs/decisions/0002).
    /// </summary>
    public async Task<T> FreeingSpaceAsync<T>(Func<Task<T>> change)
    {
        ArgumentNullException.ThrowIfNull(change);
        try
        {
            return await change().ConfigureAwait(false);
        }
        catch (CatalogStorageFullException) when (Audit.Reserve?.Release() == true)
        {
            return await change().ConfigureAwait(false);
        }
    }

    /// <summary>The key that signs download URLs.</summary>
    public byte[] UrlSigningKey { get; }

    /// <summary>The key that signs exported audit heads.</summary>
    public AuditHeadSigner AuditSigner { get; }

    /// <summary>The clock.</summary>
    public TimeProvider Clock => Options.Clock;

    /// <summary>Where the operator's key was written, when this start created it.</summary>
    public string? CreatedAdminKeyPath { get; private set; }

    /// <summary>How many partial writes and orphaned blobs the start removed.</summary>
    public int RecoveredOrphans { get; private set; }

    /// <summary>
    /// Opens the data directory, creating and migrating what is missing, and removes what a crash
    /// left in the locations (partial writes, blobs without a catalog row) before anything writes.
    /// </summary>
    public static async Task<AtelierRuntime> OpenAsync(ServerOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);

        // Before anything is created: the catalog, the audit log, keys and blobs are private (0600 in 0700).
        DataDirectoryPermissions.Restrict(options.DataDirectory);
        var config = AtelierConfig.LoadOrCreate(options.DataDirectory, options.DefaultCountry);
        var catalog = SqliteCatalog.Open(Path.Combine(options.DataDirectory, "catalog.db"), options.Clock);
        var policies = await PolicyCatalog.LoadAsync(catalog.Policies, config.Policies, config.Defaults.FilePolicy, options.Clock, cancellationToken).ConfigureAwait(false);
        var locations = new StorageLocations(config.Locations, options.DataDirectory);
        var audit = new AuditLog(Path.Combine(options.DataDirectory, "audit"), options.Clock, AuditLog.DefaultReserveBytes);
        var runtime = new AtelierRuntime(options, config, catalog, policies, locations, audit);
        try
        {
            await runtime.RecoverAsync(cancellationToken).ConfigureAwait(false);
            await runtime.BootstrapAdminKeyAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            runtime.Dispose();
            throw;
        }

        return runtime;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        Audit.Dispose();
        AuditSigner.Dispose();
    }

    private async Task RecoverAsync(CancellationToken cancellationToken)
    {
        // Nothing else writes while the server starts, so every partial write is a crash leftover.
        var removed = await Locations.RemoveOrphansAsync(cancellationToken).ConfigureAwait(false);

        // A crash between the blob's commit and its catalog row leaves a blob nothing points to.
        foreach (var location in Locations.All)
        {
            var referenced = await Files.BlobKeysAsync(location.Id, cancellationToken).ConfigureAwait(false);
            var unreferenced = new List<string>();
            await foreach (var key in Locations.ListKeysAsync(location.Id, "file/", cancellationToken).ConfigureAwait(false))
            {
                if (!referenced.Contains(key))
                {
                    unreferenced.Add(key);
                }
            }

            foreach (var key in unreferenced)
            {
                var id = key["file/".Length..];
                await Guard.DeleteAsync(new ArtifactRef("file", id, "system"), location.Id, "system:recovery", key, cancellationToken).ConfigureAwait(false);
                removed++;
            }
        }

        RecoveredOrphans = removed;
    }

    private async Task BootstrapAdminKeyAsync(CancellationToken cancellationToken)
    {
        if ((await Keys.ListAsync(null, cancellationToken).ConfigureAwait(false)).Count > 0)
        {
            return;
        }

        var workspace = await Keys.EnsureWorkspaceAsync("default", cancellationToken).ConfigureAwait(false);
        var (key, token) = await Keys.CreateAsync(workspace, "operator", ApiKeyRoles.Operator, cancellationToken).ConfigureAwait(false);
        var path = Path.Combine(Options.DataDirectory, AdminKeyFile);
        WriteSecretFile(path, Encoding.ASCII.GetBytes(token + "\n"), overwrite: true);
        await Audit.AppendAsync(new AuditEvent { Type = "key_created", Workspace = workspace.Id, Actor = "system:bootstrap", ArtifactKind = "api_key", ArtifactId = key.Id, Detail = "the platform operator's key" }, CancellationToken.None)
            .ConfigureAwait(false);
        CreatedAdminKeyPath = path;
    }

    private static byte[] LoadOrCreateSecret(string path) => SecretFile.LoadOrCreate(path, 32);

    private static void WriteSecretFile(string path, byte[] content, bool overwrite) => SecretFile.Write(path, content, overwrite);
}
