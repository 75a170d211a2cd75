using Atelier.Core.Errors;

namespace Atelier.Catalog;

/// <summary>
/// Who derives from an artifact: the dataset versions and fine-tuning jobs whose stored requests
/// name it as an input. Deletions ask the same question inside their own atomic step
/// (<see cref="IFileRepository.DeleteAsync"/>, <see cref="IDatasetRepository.DeleteAsync"/>), so an
/// artifact is removed only when nothing in the catalog still needs it.
/// </summary>
/// <remarks>
/// Inputs are read from the requests as the API stored them (snake_case JSON): a dataset's
/// <c>training_files</c>, <c>validation_files</c> and <c>eval_files</c> (file ids),
/// <c>source_dataset</c> and <c>eval_dataset</c> (dataset ids) and <c>model</c>; a job's
/// <c>training_files[].file_id</c>, <c>validation_files</c> and <c>dataset_id</c>, and its resolved
/// <c>model</c> column.
/// </remarks>
public interface ILineageRepository
{
    /// <summary>The dataset versions and jobs of the workspace that use file <paramref name="fileId"/>, directly or through a dataset; oldest first.</summary>
    Task<IReadOnlyList<DerivedArtifact>> DerivedFromFileAsync(string workspaceId, string fileId, CancellationToken cancellationToken = default);

    /// <summary>The dataset versions (semantic dedup of it) and jobs of the workspace that use dataset <paramref name="datasetId"/>; oldest first.</summary>
    Task<IReadOnlyList<DerivedArtifact>> DerivedFromDatasetAsync(string workspaceId, string datasetId, CancellationToken cancellationToken = default);
}
