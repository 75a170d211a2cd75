using System.Text;
using Atelier.Catalog;
using Atelier.Core;
using Atelier.Core.IO;
using Atelier.Storage.Audit;
using Atelier.Storage.Placement;

namespace Atelier.Server.Hosting;

/// <summary>What one start did to the data directory.</summary>
/// <param name="CreatedAdminKeyPath">Where the operator's key was written, when this start created it.</param>
/// <param name="RecoveredOrphans">How many partial writes and orphaned file blobs the start removed.</param>
public sealed record StartupReport(string? CreatedAdminKeyPath, int RecoveredOrphans);

/// <summary>
/// The start-up of one data directory, run once before the server takes a request: it restricts the
/// directory and loads its configuration, then repairs what a crash may have left (partial writes in
/// every location, file blobs that no catalog row references) and creates the platform operator's key
/// when there is none.
/// </summary>
/// <param name="options">The server's options: where the data directory is.</param>
/// <param name="locations">The configured locations.</param>
/// <param name="guard">The placement guard, which deletes orphans and audits it.</param>
/// <param name="files">The file repository: which blobs rows reference.</param>
/// <param name="keys">API keys and workspaces.</param>
/// <param name="audit">The audit log, which records the operator key's creation.</param>
public sealed class DataDirectoryStartup(ServerOptions options, StorageLocations locations, PlacementGuard guard, IFileRepository files, ApiKeyStore keys, AuditLog audit)
{
    /// <summary>The name of the file holding the first key: the platform operator's.</summary>
    public const string AdminKeyFile = "admin.key";

    /// <summary>What <see cref="RunAsync"/> did; null before it ran.</summary>
    public StartupReport? Report { get; private set; }

    /// <summary>
    /// Makes the data directory private (before anything is created in it: the catalog, the audit
    /// log, keys and blobs are 0600 in 0700) and loads its configuration, creating the default one
    /// when the directory is new.
    /// </summary>
    public static AtelierConfig Open(ServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        DataDirectoryPermissions.Restrict(options.DataDirectory);
        return AtelierConfig.LoadOrCreate(options.DataDirectory, options.DefaultCountry);
    }

    /// <summary>Recovers the locations, then creates the operator's key if there is none.</summary>
    public async Task<StartupReport> RunAsync(CancellationToken cancellationToken)
    {
        var recovered = await RecoverAsync(cancellationToken).ConfigureAwait(false);
        var created = await BootstrapOperatorKeyAsync(cancellationToken).ConfigureAwait(false);
        Report = new StartupReport(created, recovered);
        return Report;
    }

    private async Task<int> RecoverAsync(CancellationToken cancellationToken)
    {
        // Nothing else writes while the server starts, so every partial write is a crash leftover.
        var removed = await locations.RemoveOrphansAsync(cancellationToken).ConfigureAwait(false);

        // A crash between the blob's commit and its catalog row leaves a blob nothing points to.
        foreach (var location in locations.OwnedHere)
        {
            var referenced = await files.BlobKeysAsync(location.Id, cancellationToken).ConfigureAwait(false);
            var unreferenced = new List<string>();
            await foreach (var key in locations.ListKeysAsync(location.Id, "file/", cancellationToken).ConfigureAwait(false))
            {
                if (!referenced.Contains(key))
                {
                    unreferenced.Add(key);
                }
            }

            foreach (var key in unreferenced)
            {
                var id = key["file/".Length..];
                await guard.DeleteAsync(new ArtifactRef("file", id, "system"), location.Id, "system:recovery", key, cancellationToken).ConfigureAwait(false);
                removed++;
            }
        }

        return removed;
    }

    private async Task<string?> BootstrapOperatorKeyAsync(CancellationToken cancellationToken)
    {
        if ((await keys.ListAsync(null, cancellationToken).ConfigureAwait(false)).Count > 0)
        {
            return null;
        }

        var workspace = await keys.EnsureWorkspaceAsync("default", cancellationToken).ConfigureAwait(false);
        var (key, token) = await keys.CreateAsync(workspace, "operator", ApiKeyRoles.Operator, cancellationToken).ConfigureAwait(false);
        var path = Path.Combine(options.DataDirectory, AdminKeyFile);
        SecretFile.Write(path, Encoding.ASCII.GetBytes(token + "\n"), overwrite: true);
        await audit.AppendAsync(new AuditEvent { Type = "key_created", Workspace = workspace.Id, Actor = "system:bootstrap", ArtifactKind = "api_key", ArtifactId = key.Id, Detail = "the platform operator's key" }, CancellationToken.None)
            .ConfigureAwait(false);
        return path;
    }
}
