using Atelier.Core.Errors;

namespace Atelier.Registry;

public sealed partial class ModelRegistry
{
    /// <summary>
    /// A local file holding the artifact <paramref name="name"/> of <paramref name="model"/> (a fine-tuned
    /// model's <c>lora.safetensors</c>, for serving): the committed blob itself on a local-directory
    /// location (treat it as read-only), otherwise a copy made once in the cache directory, named by
    /// its content hash so a stale copy is never reused.
    /// </summary>
    /// <exception cref="NotFoundException">The model has no such artifact.</exception>
    /// <exception cref="StorageUnavailableException">Its bytes are missing from their location.</exception>
    public async ValueTask<string> LocalArtifactAsync(RegisteredModel model, string name, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(model);
        var artifact = model.Artifacts.FirstOrDefault(a => a.Name == name) ?? throw new NotFoundException("model artifact", $"{model.Id}/{name}");
        var stream = await _guard.OpenReadAsync(artifact.LocationId, artifact.Key, ct).ConfigureAwait(false)
            ?? throw new StorageUnavailableException($"File '{artifact.Name}' of model '{model.Id}' is missing from location '{artifact.LocationId}'.");
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
