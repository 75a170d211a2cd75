using Atelier.Server.Hosting;
using Atelier.Storage.Placement;

namespace Atelier.Server.Files;

/// <summary>Removes files whose <c>expiry</c> has passed: their rows, then their bytes, audited.</summary>
public sealed partial class FileExpirySweeper(AtelierRuntime runtime, ILogger<FileExpirySweeper> logger) : BackgroundService
{
    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMinutes(1), runtime.Clock);
        do
        {
            foreach (var file in runtime.Files.Expired(500))
            {
                if (runtime.Files.DeleteExpired(file.WorkspaceId, file.Id) is null)
                {
                    continue;
                }

                await runtime.Guard.DeleteAsync(new ArtifactRef("file", file.Id, file.WorkspaceId), file.LocationId, "system:expiry", file.BlobKey, stoppingToken).ConfigureAwait(false);
                LogExpired(logger, file.Id);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "File {FileId} expired and was removed")]
    private static partial void LogExpired(ILogger logger, string fileId);
}
