using System.CommandLine;
using System.Globalization;
using Atelier.Core.IO;
using Atelier.Data.Tokenization;
using Atelier.Modeling.Mistral;
using Atelier.Modeling.SafeTensors;

namespace Atelier.Cli;

/// <summary>
/// <c>atelier models download-adapter</c> and <c>atelier models export --merged</c>: a fine-tuned model's
/// adapter, alone or folded into its base model, as files that mistral-inference and
/// <c>atelier models generate</c> load.
/// </summary>
internal static class ModelExportCommands
{
    public static Command DownloadAdapter(ClientOptions client)
    {
        var id = new Argument<string>("id") { Description = "The fine-tuned model (ft:...)." };
        var output = new Option<FileInfo>("--output", "-o") { Description = "Where to write lora.safetensors (required; never overwritten).", Required = true };
        var command = new Command(
            "download-adapter",
            "Download a fine-tuned model's LoRA adapter as mistral-finetune's lora.safetensors in bf16 (GET /api/v1/models/{id}/adapter): "
            + "mistral-inference loads it into a bf16 base with model.load_lora(path, scaling=...), the scale being __metadata__'s lora_scaling; "
            + "'atelier models generate BASE_DIR --adapter FILE' runs it.");
        command.Arguments.Add(id);
        command.Options.Add(output);
        command.SetAction(async (parse, cancel) =>
        {
            var target = parse.GetValue(output)!;
            if (target.Exists)
            {
                throw new CliException($"{target.FullName} exists; choose another --output.");
            }

            using var api = client.Connect(parse);
            await DownloadAsync(api, $"/api/v1/models/{Uri.EscapeDataString(parse.GetValue(id)!)}/adapter", target.FullName, overwrite: false, cancel).ConfigureAwait(false);
            Console.WriteLine($"Wrote {AtelierCommands.Bytes(new FileInfo(target.FullName).Length)} to {target.FullName}.");
            return 0;
        });
        return command;
    }

    public static Command Export(ClientOptions client)
    {
        var id = new Argument<string>("id") { Description = "The fine-tuned model (ft:...)." };
        var merged = new Option<bool>("--merged") { Description = "Fold the adapter into the base weights (W + scaling·B·A): the one export there is, so required." };
        var output = new Option<DirectoryInfo>("--out") { Description = "The model directory to create (must not exist); it appears whole or not at all.", Required = true };
        var baseDir = new Option<DirectoryInfo?>("--base")
        {
            Description = "A local copy of the base model's directory, used instead of downloading the base weights from the server (the adapter is still downloaded).",
        };
        var command = new Command(
            "export",
            "Write a fine-tuned model as a whole Mistral-format model directory (params.json, consolidated.safetensors with the adapter merged, the tokeniser), "
            + "which 'atelier models generate' and mistral-inference load like any base model. The adapter comes from the server at its training precision; "
            + "the base model's files are downloaded from the server too (GET /api/v1/models/{base}/files/{name}) unless --base names a local copy. "
            + "The merge runs here, in float32 (it needs memory for the whole base model), and the weights are written in the base model's dtype.");
        command.Arguments.Add(id);
        command.Options.Add(merged);
        command.Options.Add(output);
        command.Options.Add(baseDir);
        command.SetAction(async (parse, cancel) =>
        {
            if (!parse.GetValue(merged))
            {
                throw new CliException("Only merged exports exist: pass --merged. For the adapter alone, use 'atelier models download-adapter'.");
            }

            var target = Path.GetFullPath(parse.GetValue(output)!.FullName.TrimEnd(Path.DirectorySeparatorChar));
            if (Directory.Exists(target) || File.Exists(target))
            {
                throw new CliException($"{target} exists; choose a new --out directory.");
            }

            var localBase = parse.GetValue(baseDir);
            if (localBase is not null && !File.Exists(Path.Combine(localBase.FullName, "params.json")))
            {
                throw new CliException($"{localBase.FullName} is not a model directory: it needs params.json, consolidated.safetensors and a tokeniser.");
            }

            var modelId = parse.GetValue(id)!;
            using var api = client.Connect(parse);
            var model = await api.GetJsonAsync($"/api/v1/models/{Uri.EscapeDataString(modelId)}", cancel).ConfigureAwait(false);
            if (AtelierCommands.Str(model["type"]) != "fine-tuned")
            {
                throw new CliException($"Model '{modelId}' is a base model; only a fine-tuned model (ft:...) has an adapter to merge.");
            }

            var root = AtelierCommands.Str(model["root"]);
            var parent = Path.GetDirectoryName(target)!;
            Directory.CreateDirectory(parent);

            // Everything is written into a hidden sibling and renamed at the end, so the directory under
            // its name is either complete or absent, whatever fails (a download, a mismatched base, a full disk).
            var temp = Path.Combine(parent, $".{Path.GetFileName(target)}.{Guid.NewGuid():N}.tmp");
            Directory.CreateDirectory(temp);
            try
            {
                var adapterPath = Path.Combine(temp, ".adapter.safetensors");
                await DownloadAsync(api, $"/api/v1/models/{Uri.EscapeDataString(model["id"]!.GetValue<string>())}/files/lora.safetensors", adapterPath, overwrite: true, cancel).ConfigureAwait(false);

                string weightsDir;
                if (localBase is not null)
                {
                    weightsDir = localBase.FullName;
                    foreach (var name in MistralTokenizerFile.FindAll(weightsDir).Append("params.json"))
                    {
                        File.Copy(Path.Combine(weightsDir, name), Path.Combine(temp, name));
                    }
                }
                else
                {
                    var baseModel = await api.GetJsonAsync($"/api/v1/models/{Uri.EscapeDataString(root)}", cancel).ConfigureAwait(false);
                    foreach (var artifact in baseModel["artifacts"]!.AsArray())
                    {
                        var name = artifact!["name"]!.GetValue<string>();
                        if (Path.GetFileName(name) != name || name.StartsWith('.'))
                        {
                            throw new CliException($"The server lists a file '{name}' for base model '{root}', which is not a plain file name.");
                        }

                        await DownloadAsync(api, $"/api/v1/models/{Uri.EscapeDataString(root)}/files/{Uri.EscapeDataString(name)}", Path.Combine(temp, name), overwrite: false, cancel).ConfigureAwait(false);
                    }

                    weightsDir = temp;
                }

                var (args, dtype) = Merge(weightsDir, adapterPath, Path.Combine(temp, "consolidated.safetensors"));
                File.Delete(adapterPath);
                AtomicFile.FsyncDirectory(temp);
                Directory.Move(temp, target);
                AtomicFile.FsyncDirectory(parent);
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"Wrote {model["id"]} merged into {root} to {target}: {args.NLayers} layers, dim {args.Dim}, weights in {SafeTensorDTypes.Name(dtype)}."));
                return 0;
            }
            catch
            {
                // A failure to clean up must not hide the failure that got here.
                try
                {
                    Directory.Delete(temp, recursive: true);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    Console.Error.WriteLine($"warning: could not remove {temp}: {e.Message}");
                }

                throw;
            }
        });
        return command;
    }

    /// <summary>Loads the base weights and the adapter, merges them and writes the merged weights in the base's dtype.</summary>
    private static (MistralArgs Args, SafeTensorDType DType) Merge(string baseDir, string adapterPath, string outputWeights)
    {
        try
        {
            using var model = MistralModel.Load(baseDir);
            model.Adapter = LoraAdapter.LoadFile(model.Args, adapterPath);
            using (model.MergeAdapter())
            {
            }

            // Written over the downloaded base weights when they are in the same directory: the tensors
            // are in memory by now, and the write is a temporary file renamed over the old one.
            var dtype = model.Weights.StorageDType;
            model.Weights.Save(outputWeights, dtype);
            return (model.Args, dtype);
        }
        catch (Exception e) when (e is ModelFormatException or SafeTensorsFormatException)
        {
            throw new CliException($"The adapter does not fit the base model: {e.Message}");
        }
    }

    /// <summary>Streams a download to a file written beside its name and renamed, so a failure leaves no partial file.</summary>
    internal static async Task DownloadAsync(ApiClient api, string path, string target, bool overwrite, CancellationToken cancel)
    {
        using var response = await api.Http.GetAsync(path, HttpCompletionOption.ResponseHeadersRead, cancel).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            throw new CliException(ApiClient.Describe(response, await response.Content.ReadAsStringAsync(cancel).ConfigureAwait(false)));
        }

        try
        {
            await AtomicFile.WriteAsync(target, file => response.Content.CopyToAsync(file, cancel), cancel, overwrite: overwrite).ConfigureAwait(false);
        }
        catch (IOException) when (!overwrite && File.Exists(target))
        {
            throw new CliException($"{target} exists; choose another name.");
        }
    }

    /// <summary>Loads an adapter file for <c>models generate --adapter</c>, with a mismatch reported as a usage error.</summary>
    internal static LoraAdapter LoadAdapter(MistralArgs args, FileInfo file)
    {
        if (!file.Exists)
        {
            throw new CliException($"No such adapter file: {file.FullName}");
        }

        try
        {
            return LoraAdapter.LoadFile(args, file.FullName);
        }
        catch (Exception e) when (e is ModelFormatException or SafeTensorsFormatException)
        {
            throw new CliException($"The adapter does not fit the model: {e.Message}");
        }
    }
}
