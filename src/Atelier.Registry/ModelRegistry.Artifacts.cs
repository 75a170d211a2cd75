using Atelier.Core.Errors;

namespace Atelier.Registry;

public sealed partial class ModelRegistry
{
    /// <summary>The artifact name of a fine-tuned model's adapter, as mistral-finetune names the file.</summary>
    public const string AdapterArtifact = "lora.safetensors";

    /// <summary>
    /// The fine-tuned model <paramref name="modelId"/> of <paramref name="workspace"/> with its adapter artifact.
    /// </summary>
    /// <exception cref="NotFoundException">No such model, or another workspace's (indistinguishable, as everywhere).</exception>
    /// <exception cref="BadRequestException">It is a base model, which has no adapter (code <c>invalid_model_type</c>).</exception>
    /// <exception cref="StorageUnavailableException">The model's row names no adapter artifact.</exception>
    public async Task<(RegisteredModel Model, ModelArtifact Adapter)> FindAdapterAsync(string workspace, string modelId, CancellationToken ct)
    {
        var model = await FindAsync(workspace, modelId, ct).ConfigureAwait(false) ?? throw new NotFoundException("model", modelId);
        if (model.Kind != ModelKind.FineTuned)
        {
            throw new BadRequestException(
                $"Model '{model.Id}' is a base model: it has no adapter. Only fine-tuned models (ft:...) have one; a base model's files are at /api/v1/models/{model.Id}/files/{{name}}.",
                "invalid_model_type");
        }

        var adapter = model.Artifacts.FirstOrDefault(a => a.Name == AdapterArtifact)
            ?? throw new StorageUnavailableException($"Fine-tuned model '{model.Id}' has no '{AdapterArtifact}' artifact.");
        return (model, adapter);
    }

    /// <summary>Opens one committed artifact of a model for reading, from its start.</summary>
    /// <param name="model">A model the caller may see.</param>
    /// <param name="name">The artifact's name (<see cref="ModelArtifact.Name"/>).</param>
    /// <param name="ct">Cancellation.</param>
    /// <exception cref="NotFoundException">The model has no artifact of that name.</exception>
    /// <exception cref="StorageUnavailableException">Its bytes are missing from their location.</exception>
    public async Task<(ModelArtifact Artifact, Stream Content)> OpenArtifactAsync(RegisteredModel model, string name, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(name);
        var artifact = model.Artifacts.FirstOrDefault(a => a.Name == name) ?? throw new NotFoundException($"file of model '{model.Id}'", name);
        var stream = await _guard.OpenReadAsync(artifact.LocationId, artifact.Key, ct).ConfigureAwait(false)
            ?? throw new StorageUnavailableException($"File '{artifact.Name}' of model '{model.Id}' is missing from location '{artifact.LocationId}'.");
        return (artifact, stream);
    }

    /// <summary>
    /// A local file holding the artifact <paramref name="name"/> of <paramref name="model"/> (a fine-tuned
    /// model's adapter, for serving): the committed blob itself on a local-directory location (treat it
    /// as read-only), otherwise a copy made once in the cache directory, named by its content hash so a
    /// stale copy is never reused.
    /// </summary>
    /// <exception cref="NotFoundException">The model has no such artifact.</exception>
    /// <exception cref="StorageUnavailableException">Its bytes are missing from their location.</exception>
    public async ValueTask<string> LocalArtifactAsync(RegisteredModel model, string name, CancellationToken ct)
    {
        var (artifact, stream) = await OpenArtifactAsync(model, name, ct).ConfigureAwait(false);
        await using (stream.ConfigureAwait(false))
        {
            if (stream is FileStream file)
            {
                return file.Name;
            }

            if (_cacheDirectory is null)
            {
                throw new NotSupportedException($"The files of model '{model.Id}' are not local and the registry has no cache directory.");
            }

            var directory = Path.Combine(_cacheDirectory, "artifacts");
            Directory.CreateDirectory(directory);
            var target = Path.Combine(directory, artifact.Sha256 + ".bin");
            if (File.Exists(target))
            {
                return target;
            }

            var temp = target + ".tmp-" + Guid.NewGuid().ToString("N");
            try
            {
                await using (var output = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous))
                {
                    await stream.CopyToAsync(output, 1 << 20, ct).ConfigureAwait(false);
                    output.Flush(flushToDisk: true);
                }

                File.Move(temp, target, overwrite: true);
            }
            finally
            {
                File.Delete(temp);
            }

            return target;
        }
    }
}
