using Atelier.Core.Errors;

namespace Atelier.Registry;

public sealed partial class ModelRegistry
{
    /// <summary>
    /// The local directory holding a base model's files under their own names (<c>params.json</c>,
    /// <c>consolidated.safetensors</c>, <c>tekken.json</c> or <c>tokenizer.model[.vN]</c>), ready for
    /// <c>MistralModel.Load</c>. On a local-directory location these are the committed blobs themselves:
    /// treat the directory as read-only.
    /// </summary>
    /// <exception cref="ArgumentException">The model is not a base model.</exception>
    /// <exception cref="NotSupportedException">Its blobs are not plain local files; use <see cref="ModelDirectoryAsync"/>.</exception>
    /// <exception cref="StorageUnavailableException">A blob is missing.</exception>
    public async ValueTask<string> LocalModelDirectoryAsync(RegisteredModel model, CancellationToken ct) =>
        await TryLocalDirectoryAsync(model, ct).ConfigureAwait(false)
        ?? throw new NotSupportedException($"The files of model '{model.Id}' are not plain local files; use ModelDirectoryAsync, which copies them to a local cache.");

    /// <summary>
    /// Like <see cref="LocalModelDirectoryAsync"/>, but when the blobs are not plain local files (e.g. an
    /// S3-compatible location), copies them once into the cache directory and returns that.
    /// </summary>
    public async ValueTask<string> ModelDirectoryAsync(RegisteredModel model, CancellationToken ct)
    {
        if (await TryLocalDirectoryAsync(model, ct).ConfigureAwait(false) is { } local)
        {
            return local;
        }

        if (_cacheDirectory is null)
        {
            throw new NotSupportedException($"The files of model '{model.Id}' are not local and the registry has no cache directory.");
        }

        // One directory per content version, so a re-imported model under the same id never reuses stale bytes.
        var version = model.Artifacts.First(a => a.Name == ModelDirectoryValidator.Weights).Sha256[..16];
        var target = Path.Combine(_cacheDirectory, $"{model.Id}-{version}");
        if (Directory.Exists(target))
        {
            return target;
        }

        var temp = target + ".tmp-" + Guid.NewGuid().ToString("N");
        Directory.CreateDirectory(temp);
        try
        {
            foreach (var artifact in model.Artifacts)
            {
                var stream = await _guard.OpenReadAsync(artifact.LocationId, artifact.Key, ct).ConfigureAwait(false)
                    ?? throw new StorageUnavailableException($"File '{artifact.Name}' of model '{model.Id}' is missing from location '{artifact.LocationId}'.");
                await using (stream.ConfigureAwait(false))
                await using (var output = new FileStream(Path.Combine(temp, artifact.Name), FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous))
                {
                    await stream.CopyToAsync(output, 1 << 20, ct).ConfigureAwait(false);
                    output.Flush(flushToDisk: true);
                }
            }

            Directory.Move(temp, target);
        }
        catch (IOException) when (Directory.Exists(target))
        {
            // Another caller materialised it first.
            Directory.Delete(temp, recursive: true);
        }
        catch
        {
            Directory.Delete(temp, recursive: true);
            throw;
        }

        return target;
    }

    private async ValueTask<string?> TryLocalDirectoryAsync(RegisteredModel model, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(model);
        if (model.Kind != ModelKind.Base)
        {
            throw new ArgumentException($"Model '{model.Id}' is fine-tuned: load its root '{model.Root}' and apply its adapter artifacts.", nameof(model));
        }

        string? directory = null;
        foreach (var artifact in model.Artifacts)
        {
            var stream = await _guard.OpenReadAsync(artifact.LocationId, artifact.Key, ct).ConfigureAwait(false)
                ?? throw new StorageUnavailableException($"File '{artifact.Name}' of model '{model.Id}' is missing from location '{artifact.LocationId}'.");
            await using (stream.ConfigureAwait(false))
            {
                // A local-directory store hands out FileStreams on the committed file itself.
                if (stream is not FileStream file || Path.GetFileName(file.Name) != artifact.Name)
                {
                    return null;
                }

                var parent = Path.GetDirectoryName(file.Name);
                if (directory is not null && parent != directory)
                {
                    return null;
                }

                directory = parent;
            }
        }

        return directory;
    }
}
