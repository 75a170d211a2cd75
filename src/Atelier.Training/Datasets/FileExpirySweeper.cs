using Atelier.Catalog;
using Atelier.Storage.Placement;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Atelier.Training.Datasets;

/// <summary>Removes uploaded files whose <c>expiry</c> has passed: their rows, then their bytes, audited.</summary>
/// <param name="files">The file catalog.</param>
/// <param name="guard">The placement guard, which deletes the bytes and audits it.</param>
/// <param name="clock">The clock the sweep runs on, once a minute.</param>
/// <param name="logger">The log.</param>
public sealed partial class FileExpirySweeper(IFileRepository files, PlacementGuard guard, TimeProvider clock, ILogger<FileExpirySweeper> logger) : BackgroundService
{
    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMinutes(1), clock);
        do
        {
            foreach (var file in await files.ExpiredAsync(500, stoppingToken).ConfigureAwait(false))
            {
                if (await files.DeleteExpiredAsync(file.WorkspaceId, file.Id, stoppingToken).ConfigureAwait(false) is null)
                {
                    continue;
                }

                await guard.DeleteAsync(new ArtifactRef("file", file.Id, file.WorkspaceId), file.LocationId, "system:expiry", file.BlobKey, stoppingToken).ConfigureAwait(false);
                LogExpired(logger, file.Id);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "File {FileId} expired and was removed")]
    private static partial void LogExpired(ILogger logger, string fileId);
}
