using Atelier.Catalog;
using Atelier.Core.Errors;
using Atelier.Storage.Placement;

namespace Atelier.Training.Datasets;

/// <summary>Reading the committed bytes of uploaded files through the placement guard.</summary>
public static class UploadedFiles
{
    /// <summary>Opens the committed bytes of an uploaded file for reading.</summary>
    /// <exception cref="StorageUnavailableException">Its bytes are missing from its location.</exception>
    public static async ValueTask<Stream> OpenFileAsync(this PlacementGuard guard, FileRecord file, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(guard);
        ArgumentNullException.ThrowIfNull(file);
        return await guard.OpenReadAsync(file.LocationId, file.BlobKey, cancellationToken).ConfigureAwait(false)
            ?? throw new StorageUnavailableException($"The bytes of file '{file.Id}' are missing from location '{file.LocationId}'.");
    }
}
