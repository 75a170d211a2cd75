using Atelier.Catalog;
using Atelier.Storage.Audit;

namespace Atelier.Server.Hosting;

/// <summary>
/// Runs the catalog changes that free space (deletions). When the catalog's disk is full, it gives up
/// the audit log's space reserve and tries once more, so deleting works on a full disk and space can
/// be freed; the deletion's audit event then has room too (see docs/decisions/0002).
/// </summary>
/// <param name="audit">The audit log, whose reserve is given up.</param>
public sealed class FreeingSpace(AuditLog audit)
{
    /// <summary>Runs <paramref name="change"/>, once more after giving up the reserve if the catalog's disk was full.</summary>
    public async Task<T> RunAsync<T>(Func<Task<T>> change)
    {
        ArgumentNullException.ThrowIfNull(change);
        try
        {
            return await change().ConfigureAwait(false);
        }
        catch (CatalogStorageFullException) when (audit.Reserve?.Release() == true)
        {
            return await change().ConfigureAwait(false);
        }
    }
}
