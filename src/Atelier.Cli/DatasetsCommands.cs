using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Spectre.Console;

namespace Atelier.Cli;

/// <summary><c>atelier datasets build|semantic-dedup|list|get|download|delete</c>.</summary>
internal static class DatasetsCommands
{
    public static Command Build(ClientOptions client)
    {
        var command = new Command("datasets", "Dataset versions: validated, deduplicated, decontaminated, tokenised and packed shards.");
        command.Subcommands.Add(Create(client));
        command.Subcommands.Add(SemanticDedup(client));
        command.Subcommands.Add(LocalTrainingCommands.BuildLocal());

        var list = new Command("list", "List dataset versions, newest first.");
        list.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = await api.GetJsonAsync("/api/v1/datasets", cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(body);
            }

            var table = new Table().AddColumns("id", "status", "name", "examples kept", "tokens", "created");
            table.Columns[0].NoWrap();
            table.Columns[1].NoWrap();
            foreach (var d in body["data"]!.AsArray())
            {
                table.AddRow(
                    AtelierCommands.Str(d!["id"]),
                    AtelierCommands.Str(d["status"]),
                    Markup.Escape(AtelierCommands.Str(d["name"])),
                    AtelierCommands.Str(d["progress"]?["examples_kept"]),
                    AtelierCommands.Str(d["progress"]?["tokens"]),
                    KeysCommands.Time(d["created_at"]!.GetValue<long>()));
            }

            AnsiConsole.Write(table);
            return 0;
        });
        command.Subcommands.Add(list);

        var id = new Argument<string>("id") { Description = "The dataset id." };
        var get = new Command("get", "Show a dataset: status, progress, counters, shards.");
        get.Arguments.Add(id);
        get.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            return AtelierCommands.Print(await api.GetJsonAsync($"/api/v1/datasets/{Uri.EscapeDataString(parse.GetValue(id)!)}", cancel).ConfigureAwait(false));
        });
        command.Subcommands.Add(get);

        var path = new Argument<string>("path") { Description = "The file: manifest.json, report.json, issues.jsonl, dropped.jsonl, shards/..., features/...", DefaultValueFactory = _ => "report.json" };
        var download = new Command("download", "Print a file of a built dataset (report.json by default) or save it with -o.");
        var output = new Option<FileInfo?>("--output", "-o") { Description = "Write to this file instead of standard output (never overwritten)." };
        download.Arguments.Add(id);
        download.Arguments.Add(path);
        download.Options.Add(output);
        download.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            using var response = await api.Http.GetAsync($"/api/v1/datasets/{Uri.EscapeDataString(parse.GetValue(id)!)}/files/{parse.GetValue(path)}", HttpCompletionOption.ResponseHeadersRead, cancel).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                throw new CliException(ApiClient.Describe(response, await response.Content.ReadAsStringAsync(cancel).ConfigureAwait(false)));
            }

            if (parse.GetValue(output) is { } target)
            {
                await using var file = new FileStream(target.FullName, FileMode.CreateNew, FileAccess.Write);
                await response.Content.CopyToAsync(file, cancel).ConfigureAwait(false);
                Console.WriteLine($"Wrote {AtelierCommands.Bytes(file.Length)} to {target.FullName}.");
            }
            else
            {
                await using var stdout = Console.OpenStandardOutput();
                await response.Content.CopyToAsync(stdout, cancel).ConfigureAwait(false);
            }

            return 0;
        });
        command.Subcommands.Add(download);

        var delete = new Command("delete", "Delete a finished dataset version and its bytes.");
        delete.Arguments.Add(id);
        delete.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            await api.SendAsync(new HttpRequestMessage(HttpMethod.Delete, $"/api/v1/datasets/{Uri.EscapeDataString(parse.GetValue(id)!)}"), cancel).ConfigureAwait(false);
            Console.WriteLine($"Deleted {parse.GetValue(id)}.");
            return 0;
        });
        command.Subcommands.Add(delete);
        return command;
    }

    private static Command Create(ClientOptions client)
    {
        var train = new Option<string[]>("--train") { Description = "Id of an uploaded fine-tune file to train on (repeat for several).", Required = true, AllowMultipleArgumentsPerToken = true };
        var validation = new Option<string[]>("--validation") { Description = "Id of a validation/eval file: overlapping training examples are dropped.", AllowMultipleArgumentsPerToken = true };
        var tokenizer = new Option<string>("--tokenizer") { Description = "o200k_base or cl100k_base, when no --model is given.", DefaultValueFactory = _ => "o200k_base" };
        var model = new Option<string?>("--model") { Description = "A registered base model: its own tokeniser and chat format build the shards, so jobs on it can train on this version (jobs create --dataset)." };
        var seqLen = new Option<int?>("--seq-len") { Description = "Window length of the packed shards (default 4096)." };
        var name = new Option<string?>("--name") { Description = "A display name." };
        var noWait = new Option<bool>("--no-wait") { Description = "Return once the build is queued." };
        var command = new Command("build", "Build a dataset version from uploaded files, showing live progress.");
        command.Options.Add(train);
        command.Options.Add(validation);
        command.Options.Add(tokenizer);
        command.Options.Add(model);
        command.Options.Add(seqLen);
        command.Options.Add(name);
        command.Options.Add(noWait);
        command.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var created = await api.SendAsync(
                new HttpRequestMessage(HttpMethod.Post, "/api/v1/datasets")
                {
                    Content = JsonContent.Create(new Dictionary<string, object?>
                    {
                        ["name"] = parse.GetValue(name),
                        ["training_files"] = parse.GetValue(train),
                        ["validation_files"] = parse.GetValue(validation) ?? [],
                        ["tokenizer"] = parse.GetValue(tokenizer),
                        ["model"] = parse.GetValue(model),
                        ["seq_len"] = parse.GetValue(seqLen),
                    }),
                },
                cancel).ConfigureAwait(false);
            var id = created["id"]!.GetValue<string>();
            if (parse.GetValue(noWait))
            {
                return client.WantsJson(parse) ? AtelierCommands.Print(created) : Done($"Queued {id}.");
            }

            var final = await WaitAsync(api, id, interactive: !Console.IsOutputRedirected && !client.WantsJson(parse), cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                AtelierCommands.Print(final);
            }
            else
            {
                var counters = final["summary"]?["manifest"]?["counters"];
                Console.WriteLine($"Dataset {id}: {final["status"]}" + (counters is null ? "" :
                    $", {counters["examples_kept"]} of {counters["examples_read"]} examples kept ({counters["exact_duplicates"]} exact and {counters["near_duplicates"]} near duplicates, {counters["contaminated"]} contaminated, {counters["issues"]} invalid), {counters["tokens"]} tokens in {counters["windows"]} windows."));
                if (final["error"] is { } error)
                {
                    Console.Error.WriteLine(error);
                }
            }

            return final["status"]!.GetValue<string>() == "succeeded" ? 0 : 1;
        });
        return command;
    }

    private static Command SemanticDedup(ClientOptions client)
    {
        var id = new Argument<string>("id") { Description = "The dataset to deduplicate (succeeded, built from files)." };
        var model = new Option<string>("--model") { Description = "Base model whose mean-pooled hidden states embed the examples.", Required = true };
        var threshold = new Option<double?>("--threshold") { Description = "Cosine similarity at or above which examples are duplicates (default 0.95)." };
        var evalFile = new Option<string[]>("--eval-file") { Description = "Id of an uploaded fine-tune file of eval items (repeat for several).", AllowMultipleArgumentsPerToken = true };
        var evalDataset = new Option<string?>("--eval-dataset") { Description = "A succeeded dataset whose kept examples are eval items." };
        var contamination = new Option<double?>("--contamination-threshold") { Description = "Cosine similarity to an eval item at or above which an example is dropped (default 0.9)." };
        var name = new Option<string?>("--name") { Description = "A display name." };
        var noWait = new Option<bool>("--no-wait") { Description = "Return once the build is queued." };
        var command = new Command("semantic-dedup", "Derive a dataset version: drop examples whose embeddings are near-identical (one kept per cluster) or too close to an eval item.");
        command.Arguments.Add(id);
        foreach (var option in new Option[] { model, threshold, evalFile, evalDataset, contamination, name, noWait })
        {
            command.Options.Add(option);
        }

        command.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var created = await api.SendAsync(
                new HttpRequestMessage(HttpMethod.Post, $"/api/v1/datasets/{Uri.EscapeDataString(parse.GetValue(id)!)}/semantic-dedup")
                {
                    Content = JsonContent.Create(new Dictionary<string, object?>
                    {
                        ["model"] = parse.GetValue(model),
                        ["threshold"] = parse.GetValue(threshold),
                        ["eval_files"] = parse.GetValue(evalFile) ?? [],
                        ["eval_dataset"] = parse.GetValue(evalDataset),
                        ["contamination_threshold"] = parse.GetValue(contamination),
                        ["name"] = parse.GetValue(name),
                    }),
                },
                cancel).ConfigureAwait(false);
            var newId = created["id"]!.GetValue<string>();
            if (parse.GetValue(noWait))
            {
                return client.WantsJson(parse) ? AtelierCommands.Print(created) : Done($"Queued {newId}.");
            }

            var final = await WaitAsync(api, newId, interactive: false, cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                AtelierCommands.Print(final);
            }
            else
            {
                var counters = final["summary"]?["semantic_dedup"]?["counters"];
                Console.WriteLine($"Dataset {newId}: {final["status"]}" + (counters is null ? "" :
                    $", {counters["examples_kept"]} of {counters["examples_in"]} examples kept ({counters["duplicates_dropped"]} semantic duplicates in {counters["clusters"]} clusters, {counters["contaminated"]} contaminated); details in semantic-dedup.json."));
                if (final["error"] is { } error)
                {
                    Console.Error.WriteLine(error);
                }
            }

            return final["status"]!.GetValue<string>() == "succeeded" ? 0 : 1;
        });
        return command;
    }

    private static int Done(string message)
    {
        Console.WriteLine(message);
        return 0;
    }

    private static async Task<JsonNode> WaitAsync(ApiClient api, string id, bool interactive, CancellationToken cancel)
    {
        var url = $"/api/v1/datasets/{Uri.EscapeDataString(id)}";
        if (!interactive)
        {
            while (true)
            {
                var body = await api.GetJsonAsync(url, cancel).ConfigureAwait(false);
                if (body["status"]!.GetValue<string>() is not ("queued" or "running"))
                {
                    return body;
                }

                await Task.Delay(500, cancel).ConfigureAwait(false);
            }
        }

        JsonNode? last = null;
        await AnsiConsole.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .StartAsync(async ctx =>
            {
                var task = ctx.AddTask("queued", maxValue: 1);
                var clock = Stopwatch.StartNew();
                while (true)
                {
                    last = await api.GetJsonAsync(url, cancel).ConfigureAwait(false);
                    var status = last["status"]!.GetValue<string>();
                    if (last["progress"] is { } p)
                    {
                        var read = p["bytes_read"]!.GetValue<long>();
                        var total = Math.Max(1, p["total_bytes"]!.GetValue<long>());
                        var seconds = Math.Max(0.001, clock.Elapsed.TotalSeconds);
                        task.MaxValue = total;
                        task.Value = Math.Min(read, total);
                        task.Description = string.Create(CultureInfo.InvariantCulture,
                            $"{p["stage"]}: {p["examples_read"]} examples ({p["examples_read"]!.GetValue<long>() / seconds:F0}/s, {read / 1048576.0 / seconds:F1} MB/s), {p["shards_written"]} shards");
                    }

                    if (status is not ("queued" or "running"))
                    {
                        task.Value = task.MaxValue;
                        return;
                    }

                    await Task.Delay(500, cancel).ConfigureAwait(false);
                }
            }).ConfigureAwait(false);
        return last!;
    }
}
