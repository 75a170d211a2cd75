using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using Atelier.Modeling.Mistral;
using Atelier.Modeling.Sampling;
using Spectre.Console;

namespace Atelier.Cli;

/// <summary>
/// <c>atelier models import|list|get|delete|archive|unarchive|download-adapter|export</c> against a running
/// server, and <c>init-tiny|generate|finetune</c> on local model directories in Mistral's consolidated format.
/// </summary>
internal static class ModelsCommands
{
    public static Command Build(ClientOptions client)
    {
        var command = new Command("models", "The model registry (base and fine-tuned models), and local model directories in Mistral's consolidated format (params.json, consolidated.safetensors, tekken.json).");
        AddRegistryCommands(command, client);

        var dir = new Argument<DirectoryInfo>("dir") { Description = "The model directory." };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the random weights: the same seed writes the same model, bit for bit.", DefaultValueFactory = _ => 0 };
        var tinyTokenizer = new Option<string>("--tokenizer")
        {
            Description = "The tokeniser: tekken-v7 (tekken.json), sentencepiece-v3 (tokenizer.model.v3) or sentencepiece-v1 (tokenizer.model).",
            DefaultValueFactory = _ => "tekken-v7",
        }.OneOf("tekken-v7", "sentencepiece-v3", "sentencepiece-v1");
        var init = new Command("init-tiny", "Write a small, valid model directory (random weights, a byte-level tokeniser) for tests and demos.");
        init.Arguments.Add(dir);
        init.Options.Add(seed);
        init.Options.Add(tinyTokenizer);
        init.SetAction(parse =>
        {
            var target = parse.GetValue(dir)!;
            if (target.Exists && target.EnumerateFileSystemInfos().Any())
            {
                throw new CliException($"{target.FullName} is not empty; choose a new directory.");
            }

            var kind = parse.GetValue(tinyTokenizer) switch
            {
                "sentencepiece-v3" => TinyTokenizer.SentencePieceV3,
                "sentencepiece-v1" => TinyTokenizer.SentencePieceV1,
                _ => TinyTokenizer.TekkenV7,
            };
            var args = TinyModelWriter.Write(target.FullName, seed: parse.GetValue(seed), tokenizer: kind);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"Wrote a tiny Mistral model to {target.FullName}: dim {args.Dim}, {args.NLayers} layers, {args.NHeads} heads ({args.NKvHeads} kv), vocab {args.VocabSize}."));
            return 0;
        });
        command.Subcommands.Add(init);

        var prompt = new Option<string>("--prompt") { Description = "The text to continue (the model's BOS is put before it).", Required = true };
        var maxTokens = new Option<int>("--max-tokens") { Description = "The most tokens to generate; generation stops earlier at the model's EOS.", DefaultValueFactory = _ => 32 };
        var temperature = new Option<float>("--temperature") { Description = "Sampling temperature: 0 (the default) decodes greedily (always the likeliest token); higher values sample more freely.", DefaultValueFactory = _ => 0f };
        var topP = new Option<float>("--top-p") { Description = "Nucleus sampling: sample only among the likeliest tokens whose probabilities add up to this (1 = all); used when --temperature > 0.", DefaultValueFactory = _ => 1f };
        var samplingSeed = new Option<ulong>("--seed") { Description = "Seed of the sampler (with --temperature > 0): the same model, prompt and seed give the same text. It does not change the model's weights.", DefaultValueFactory = _ => 0 };
        var adapter = new Option<FileInfo?>("--adapter")
        {
            Description = "A LoRA adapter to generate with (lora.safetensors in F32, F16 or BF16, as 'models finetune', 'models download-adapter' or mistral-finetune write it). "
                + "Its rank and scale come from its metadata (lora_rank, lora_alpha), else from the lora section of a params.json beside it (mistral-finetune's).",
        };
        var generate = new Command("generate", "Load a model directory, optionally with a LoRA adapter, and continue a prompt (greedy, or sampled with a seed). Works offline.");
        generate.Arguments.Add(dir);
        generate.Options.Add(adapter);
        generate.Options.Add(prompt);
        generate.Options.Add(maxTokens);
        generate.Options.Add(temperature);
        generate.Options.Add(topP);
        generate.Options.Add(samplingSeed);
        generate.SetAction(parse =>
        {
            var model = parse.GetValue(dir)!;
            if (!File.Exists(Path.Combine(model.FullName, "params.json")))
            {
                throw new CliException($"{model.FullName} is not a model directory: it needs params.json, consolidated.safetensors and tekken.json or tokenizer.model.");
            }

            var tokenizer = ModelTokenizerLoader.Load(model);
            using var loaded = MistralModel.Load(model.FullName);
            if (parse.GetValue(adapter) is { } adapterFile)
            {
                loaded.Adapter = ModelExportCommands.LoadAdapter(loaded.Args, adapterFile);
            }

            var ids = new List<int> { tokenizer.Control.Bos };
            tokenizer.Encode(parse.GetValue(prompt)!, ids);
            var clock = Stopwatch.StartNew();
            var output = Generator.Generate(
                loaded,
                ids.ToArray(),
                parse.GetValue(maxTokens),
                new SamplingOptions(parse.GetValue(temperature), parse.GetValue(topP), parse.GetValue(samplingSeed)),
                [tokenizer.Control.Eos]);
            var seconds = clock.Elapsed.TotalSeconds;
            var text = tokenizer.Decode(output);
            if (client.WantsJson(parse))
            {
                // JSON escapes every control character itself.
                AtelierCommands.Print(new System.Text.Json.Nodes.JsonObject { ["text"] = text, ["tokens"] = output.Length, ["seconds"] = Math.Round(seconds, 3) });
                return 0;
            }

            // A random or fine-tuned model can produce any byte: written raw, an escape sequence
            // would drive the user's terminal.
            Console.WriteLine(Printable.Escape(text));
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{output.Length} tokens in {seconds:F2} s ({output.Length / Math.Max(seconds, 1e-9):F1} tokens/s)"));
            return 0;
        });
        command.Subcommands.Add(generate);
        command.Subcommands.Add(LocalTrainingCommands.Finetune());
        command.Subcommands.Add(ModelExportCommands.DownloadAdapter(client));
        command.Subcommands.Add(ModelExportCommands.Export(client));
        return command;
    }

    private static void AddRegistryCommands(Command command, ClientOptions client)
    {
        var source = new Argument<DirectoryInfo>("dir") { Description = "A model directory (params.json, consolidated.safetensors, tekken.json or tokenizer.model) on the server's machine, under one of its import roots (models.import_roots; default <data>/import)." };
        var name = new Option<string?>("--name") { Description = "The model id: a-z, 0-9, '.', '_', '-' (default: the directory's name, lower-cased)." };
        var description = new Option<string?>("--description") { Description = "A description." };
        var policy = new Option<string?>("--policy") { Description = "Residency policy of its bytes (default: the configured file policy)." };
        var location = new Option<string?>("--location") { Description = "Location to place its bytes (default: the configured file location)." };
        var maxContext = new Option<int?>("--max-context-length") { Description = "Context length to advertise (default: params.json's max_seq_len, else 32768)." };
        var alias = new Option<string[]>("--alias") { Description = "Another name that resolves to the model (repeat for several).", AllowMultipleArgumentsPerToken = true };
        var import = new Command("import", "Register a base model (operator): the server validates the directory and copies it through the placement guard; it is visible to every workspace.");
        import.Arguments.Add(source);
        import.Options.Add(name);
        import.Options.Add(description);
        import.Options.Add(policy);
        import.Options.Add(location);
        import.Options.Add(maxContext);
        import.Options.Add(alias);
        import.SetAction(async (parse, cancel) =>
        {
            var dir = parse.GetValue(source)!;
            if (!dir.Exists)
            {
                throw new CliException($"No such directory: {dir.FullName}");
            }

            using var api = client.Connect(parse);
            var body = await api.SendAsync(
                new HttpRequestMessage(HttpMethod.Post, "/api/v1/models/import")
                {
                    Content = JsonContent.Create(new Dictionary<string, object?>
                    {
                        ["path"] = dir.FullName,
                        ["name"] = parse.GetValue(name),
                        ["description"] = parse.GetValue(description),
                        ["policy"] = parse.GetValue(policy),
                        ["location"] = parse.GetValue(location),
                        ["max_context_length"] = parse.GetValue(maxContext),
                        ["aliases"] = parse.GetValue(alias) ?? [],
                    }),
                },
                cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(body);
            }

            var artifacts = body["artifacts"]!.AsArray();
            var bytes = artifacts.Sum(a => a!["bytes"]!.GetValue<long>());
            var where = string.Join(", ", artifacts.Select(a => AtelierCommands.Str(a!["location_id"])).Distinct());
            Console.WriteLine($"Imported base model {body["id"]}: {artifacts.Count} files, {AtelierCommands.Bytes(bytes)} at {where} under policy {body["policy"]}, context {body["max_context_length"]}.");
            return 0;
        });
        command.Subcommands.Add(import);

        var list = new Command("list", "List base models and your workspace's fine-tuned models.");
        list.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = await api.GetJsonAsync("/v1/models", cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(body);
            }

            var table = new Table().AddColumns("id", "type", "root", "archived", "context", "name", "created");
            table.Columns[0].NoWrap();
            foreach (var m in body["data"]!.AsArray())
            {
                table.AddRow(
                    Markup.Escape(AtelierCommands.Str(m!["id"])),
                    AtelierCommands.Str(m["type"]),
                    Markup.Escape(AtelierCommands.Str(m["root"])),
                    AtelierCommands.Str(m["archived"]),
                    AtelierCommands.Str(m["max_context_length"]),
                    Markup.Escape(AtelierCommands.Str(m["name"])),
                    KeysCommands.Time(m["created"]?.GetValue<long>()));
            }

            AnsiConsole.Write(table);
            Console.WriteLine($"{body["data"]!.AsArray().Count} model(s).");
            return 0;
        });
        command.Subcommands.Add(list);

        var id = new Argument<string>("id") { Description = "The model id." };
        var get = new Command("get", "Show a model with its policy, artifacts and lineage.");
        get.Arguments.Add(id);
        get.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            return AtelierCommands.Print(await api.GetJsonAsync($"/api/v1/models/{Uri.EscapeDataString(parse.GetValue(id)!)}", cancel).ConfigureAwait(false));
        });
        command.Subcommands.Add(get);

        var baseModel = new Option<bool>("--base") { Description = "Delete a base model (operator; refused while fine-tuned models of it exist)." };
        var delete = new Command("delete", "Delete a fine-tuned model (or, with --base, a base model) and its bytes.");
        delete.Arguments.Add(id);
        delete.Options.Add(baseModel);
        delete.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var path = parse.GetValue(baseModel) ? "/api/v1/models/" : "/v1/models/";
            var body = await api.SendAsync(new HttpRequestMessage(HttpMethod.Delete, path + Uri.EscapeDataString(parse.GetValue(id)!)), cancel).ConfigureAwait(false);
            return client.WantsJson(parse) ? AtelierCommands.Print(body) : Done($"Deleted {body["id"]}.");
        });
        command.Subcommands.Add(delete);

        foreach (var (verb, method, help) in new[] { ("archive", HttpMethod.Post, "Archive a fine-tuned model."), ("unarchive", HttpMethod.Delete, "Unarchive a fine-tuned model.") })
        {
            var archive = new Command(verb, help);
            archive.Arguments.Add(id);
            archive.SetAction(async (parse, cancel) =>
            {
                using var api = client.Connect(parse);
                var body = await api.SendAsync(new HttpRequestMessage(method, $"/v1/fine_tuning/models/{Uri.EscapeDataString(parse.GetValue(id)!)}/archive"), cancel).ConfigureAwait(false);
                return client.WantsJson(parse) ? AtelierCommands.Print(body) : Done($"{body["id"]}: archived {body["archived"]}.");
            });
            command.Subcommands.Add(archive);
        }
    }

    private static int Done(string message)
    {
        Console.WriteLine(message);
        return 0;
    }
}
