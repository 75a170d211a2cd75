using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Spectre.Console;

namespace Atelier.Cli;

/// <summary><c>atelier jobs create|list|get|start|cancel|watch</c> and <c>atelier checkpoints list|get|restore|delete</c>.</summary>
internal static class JobsCommands
{
    private static readonly string[] Final = ["SUCCESS", "FAILED", "FAILED_VALIDATION", "CANCELLED"];

    public static Command Build(ClientOptions client)
    {
        var command = new Command("jobs", "Fine-tuning jobs (the same API the Mistral SDK uses: /v1/fine_tuning/jobs).");
        var id = new Argument<string>("id") { Description = "The job id." };

        var model = new Option<string>("--model") { Description = "The base model to fine-tune: an id (see models list), name@alias or name@N.", Required = true };
        var train = new Option<string[]>("--train") { Description = "Training file ids (repeat for several); or give --dataset.", AllowMultipleArgumentsPerToken = true };
        var dataset = new Option<string?>("--dataset") { Description = "A dataset version built with this model (datasets build --model) to train on instead of --train files." };
        var validation = new Option<string[]>("--validation") { Description = "Validation file ids (repeat for several): their loss and token accuracy are measured at each checkpoint.", AllowMultipleArgumentsPerToken = true };
        var steps = new Option<int?>("--steps") { Description = "Optimiser steps to train; give this or --epochs." };
        var epochs = new Option<double?>("--epochs") { Description = "Passes over the training data (may be fractional), instead of --steps." };
        var learningRate = new Option<double>("--learning-rate") { Description = "Peak learning rate (warmup, then cosine decay).", DefaultValueFactory = _ => 1e-4 };
        var seqLen = new Option<int?>("--seq-len") { Description = "Tokens per packed sequence (default 2048)." };
        var suffix = new Option<string?>("--suffix") { Description = "Suffix of the fine-tuned model's name (ft:BASE:SUFFIX:...) and of its registered name." };
        var noStart = new Option<bool>("--no-start") { Description = "Validate the data only; the job waits for 'jobs start'." };
        var seed = new Option<ulong?>("--seed") { Description = "Seed of the adapter's initial weights and of the data order: the same seed and data train the same adapter, bit for bit (default 0)." };
        var watchAfter = new Option<bool>("--watch") { Description = "After creating it, follow the job step by step until it ends (as 'jobs watch')." };
        var create = new Command("create", "Create a fine-tuning job.");
        foreach (var option in new Option[] { model, train, dataset, validation, steps, epochs, learningRate, seqLen, suffix, noStart, seed, watchAfter })
        {
            create.Options.Add(option);
        }

        create.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var trainFiles = parse.GetValue(train) ?? [];
            if (trainFiles.Length == 0 == (parse.GetValue(dataset) is null))
            {
                Console.Error.WriteLine("Give the training data as --train FILE_ID (repeatable) or as --dataset DATASET_ID, not both.");
                return 2;
            }

            var body = new JsonObject
            {
                ["model"] = parse.GetValue(model),
                ["training_files"] = trainFiles.Length == 0 ? null : new JsonArray([.. trainFiles.Select(f => (JsonNode)new JsonObject { ["file_id"] = f, ["weight"] = 1 })]),
                ["dataset_id"] = parse.GetValue(dataset),
                ["validation_files"] = new JsonArray([.. (parse.GetValue(validation) ?? []).Select(f => (JsonNode)JsonValue.Create(f))]),
                ["hyperparameters"] = new JsonObject
                {
                    ["training_steps"] = parse.GetValue(steps),
                    ["epochs"] = parse.GetValue(epochs),
                    ["learning_rate"] = parse.GetValue(learningRate),
                    ["seq_len"] = parse.GetValue(seqLen),
                },
                ["suffix"] = parse.GetValue(suffix),
                ["auto_start"] = !parse.GetValue(noStart),
                ["seed"] = parse.GetValue(seed),
            };
            var job = await api.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/fine_tuning/jobs") { Content = Json(body) }, cancel).ConfigureAwait(false);
            if (!parse.GetValue(watchAfter))
            {
                return client.WantsJson(parse) ? AtelierCommands.Print(job) : Summary(job);
            }

            return await WatchAsync(api, AtelierCommands.Str(job["id"]), cancel).ConfigureAwait(false);
        });
        command.Subcommands.Add(create);

        var status = new Option<string?>("--status") { Description = "Only jobs in this status (e.g. RUNNING)." };
        var list = new Command("list", "List jobs, newest first.");
        list.Options.Add(status);
        list.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var query = parse.GetValue(status) is { } s ? "?status=" + Uri.EscapeDataString(s) : "";
            var body = await api.GetJsonAsync("/v1/fine_tuning/jobs" + query, cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(body);
            }

            var table = new Table().AddColumns("id", "status", "model", "steps", "trained tokens", "fine-tuned model", "created");
            table.Columns[0].NoWrap();
            foreach (var j in body["data"]!.AsArray())
            {
                table.AddRow(
                    AtelierCommands.Str(j!["id"]),
                    AtelierCommands.Str(j["status"]),
                    Markup.Escape(AtelierCommands.Str(j["model"])),
                    AtelierCommands.Str(j["hyperparameters"]?["training_steps"]),
                    AtelierCommands.Str(j["trained_tokens"]),
                    Markup.Escape(AtelierCommands.Str(j["fine_tuned_model"])),
                    KeysCommands.Time(j["created_at"]!.GetValue<long>()));
            }

            AnsiConsole.Write(table);
            return 0;
        });
        command.Subcommands.Add(list);

        var get = new Command("get", "Show a job with its events and checkpoints.");
        get.Arguments.Add(id);
        get.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var job = await api.GetJsonAsync($"/v1/fine_tuning/jobs/{Uri.EscapeDataString(parse.GetValue(id)!)}", cancel).ConfigureAwait(false);
            return client.WantsJson(parse) ? AtelierCommands.Print(job) : Summary(job);
        });
        command.Subcommands.Add(get);

        foreach (var (verb, help) in new[] { ("start", "Start a validated job."), ("cancel", "Cancel a job.") })
        {
            var action = new Command(verb, help);
            action.Arguments.Add(id);
            action.SetAction(async (parse, cancel) =>
            {
                using var api = client.Connect(parse);
                var job = await api.SendAsync(new HttpRequestMessage(HttpMethod.Post, $"/v1/fine_tuning/jobs/{Uri.EscapeDataString(parse.GetValue(id)!)}/{verb}"), cancel).ConfigureAwait(false);
                return client.WantsJson(parse) ? AtelierCommands.Print(job) : Summary(job);
            });
            command.Subcommands.Add(action);
        }

        var watch = new Command("watch", "Follow a job until it ends: status, checkpoints and a live loss curve.");
        watch.Arguments.Add(id);
        watch.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            return await WatchAsync(api, parse.GetValue(id)!, cancel).ConfigureAwait(false);
        });
        command.Subcommands.Add(watch);
        return command;
    }

    public static Command Checkpoints(ClientOptions client)
    {
        var command = new Command("checkpoints", "Committed checkpoints of fine-tuning jobs (/api/v1/checkpoints).");
        var job = new Argument<string>("job") { Description = "The job id." };
        var step = new Argument<long>("step") { Description = "The checkpoint's step." };

        var list = new Command("list", "List a job's committed checkpoints (or every job's).");
        var jobOption = new Option<string?>("--job") { Description = "Only this job's." };
        list.Options.Add(jobOption);
        list.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var query = parse.GetValue(jobOption) is { } j ? "?job_id=" + Uri.EscapeDataString(j) : "";
            var body = await api.GetJsonAsync("/api/v1/checkpoints" + query, cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(body);
            }

            var table = new Table().AddColumns("id", "step", "train loss", "valid loss", "valid accuracy", "size", "locations");
            table.Columns[0].NoWrap();
            foreach (var c in body["data"]!.AsArray())
            {
                table.AddRow(
                    AtelierCommands.Str(c!["id"]),
                    AtelierCommands.Str(c["step_number"]),
                    Number(c["metrics"]?["train_loss"]),
                    Number(c["metrics"]?["valid_loss"]),
                    Number(c["metrics"]?["valid_mean_token_accuracy"]),
                    AtelierCommands.Bytes(c["bytes"]!.GetValue<long>()),
                    string.Join(", ", c["locations"]!.AsArray().Select(l => AtelierCommands.Str(l))));
            }

            AnsiConsole.Write(table);
            return 0;
        });
        command.Subcommands.Add(list);

        var get = new Command("get", "Show a checkpoint: entries, chunks, locations.");
        get.Arguments.Add(job);
        get.Arguments.Add(step);
        get.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            return AtelierCommands.Print(await api.GetJsonAsync($"/api/v1/checkpoints/{Uri.EscapeDataString(parse.GetValue(job)!)}/{parse.GetValue(step)}", cancel).ConfigureAwait(false));
        });
        command.Subcommands.Add(get);

        var steps = new Option<int?>("--steps") { Description = "Training steps of the new job (default: the source job's)." };
        var restore = new Command("restore", "Create a new job that starts from this checkpoint.");
        restore.Arguments.Add(job);
        restore.Arguments.Add(step);
        restore.Options.Add(steps);
        restore.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = new JsonObject { ["training_steps"] = parse.GetValue(steps) };
            var created = await api.SendAsync(
                new HttpRequestMessage(HttpMethod.Post, $"/api/v1/checkpoints/{Uri.EscapeDataString(parse.GetValue(job)!)}/{parse.GetValue(step)}/restore") { Content = Json(body) },
                cancel).ConfigureAwait(false);
            return client.WantsJson(parse) ? AtelierCommands.Print(created) : Summary(created);
        });
        command.Subcommands.Add(restore);

        var delete = new Command("delete", "Delete a checkpoint of a job that is not training.");
        delete.Arguments.Add(job);
        delete.Arguments.Add(step);
        delete.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            return AtelierCommands.Print(await api.SendAsync(new HttpRequestMessage(HttpMethod.Delete, $"/api/v1/checkpoints/{Uri.EscapeDataString(parse.GetValue(job)!)}/{parse.GetValue(step)}"), cancel).ConfigureAwait(false));
        });
        command.Subcommands.Add(delete);
        return command;
    }

    private static async Task<int> WatchAsync(ApiClient api, string id, CancellationToken cancel)
    {
        var path = $"/v1/fine_tuning/jobs/{Uri.EscapeDataString(id)}";
        JsonNode job = await api.GetJsonAsync(path, cancel).ConfigureAwait(false);
        var steps = new List<JsonNode>();
        var gate = new object();
        await AnsiConsole.Live(Render(job, steps)).StartAsync(async live =>
        {
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancel);

            // Each step as the server streams it (GET /api/v1/jobs/{id}/metrics/stream), and the
            // job itself once a second for its status, events and checkpoints.
            var streaming = StreamStepsAsync(api, id, row =>
            {
                lock (gate)
                {
                    steps.Add(row);
                    live.UpdateTarget(Render(job, steps));
                }
            }, stop.Token);
            while (!Final.Contains(AtelierCommands.Str(job["status"])))
            {
                await Task.Delay(1000, cancel).ConfigureAwait(false);
                var now = await api.GetJsonAsync(path, cancel).ConfigureAwait(false);
                lock (gate)
                {
                    job = now;
                    live.UpdateTarget(Render(job, steps));
                }
            }

            // The stream ends by itself once the job is final and every step is sent.
            await streaming.WaitAsync(TimeSpan.FromSeconds(30), cancel).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            await stop.CancelAsync().ConfigureAwait(false);
            lock (gate)
            {
                live.UpdateTarget(Render(job, steps));
            }
        }).ConfigureAwait(false);
        return AtelierCommands.Str(job["status"]) == "SUCCESS" ? 0 : 1;
    }

    /// <summary>Reads the job's metrics stream and hands each step's row to <paramref name="step"/>; a server without the stream leaves the watch to its polling.</summary>
    private static async Task StreamStepsAsync(ApiClient api, string id, Action<JsonNode> step, CancellationToken cancel)
    {
        try
        {
            using var response = await api.Http.GetAsync($"/api/v1/jobs/{Uri.EscapeDataString(id)}/metrics/stream", HttpCompletionOption.ResponseHeadersRead, cancel).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                return;
            }

            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel).ConfigureAwait(false));
            string? name = null;
            while (await reader.ReadLineAsync(cancel).ConfigureAwait(false) is { } line)
            {
                if (line.StartsWith("event: ", StringComparison.Ordinal))
                {
                    name = line["event: ".Length..];
                }
                else if (line.StartsWith("data: ", StringComparison.Ordinal) && name == "step" && JsonNode.Parse(line["data: ".Length..]) is { } row)
                {
                    step(row);
                }
            }
        }
        catch (Exception e) when (e is HttpRequestException or IOException or OperationCanceledException or System.Text.Json.JsonException)
        {
            // The watch goes on from the job's checkpoints.
        }
    }

    private static Rows Render(JsonNode job) => Render(job, []);

    private static Rows Render(JsonNode job, List<JsonNode> steps)
    {
        var checkpoints = job["checkpoints"]?.AsArray().Select(c => c!).OrderBy(c => c["step_number"]!.GetValue<long>()).ToArray() ?? [];
        var total = job["hyperparameters"]?["training_steps"]?.GetValue<int?>();
        var done = steps.Count > 0 ? steps[^1]["step"]!.GetValue<long>() : checkpoints.Length == 0 ? 0 : checkpoints[^1]["step_number"]!.GetValue<long>();
        var progress = "";
        if (steps.Count > 0)
        {
            var last = steps[^1];
            var elapsed = last["elapsed_seconds"]!.GetValue<double>();
            var rate = last["tokens_per_second"]!.GetValue<double>();
            progress = string.Create(CultureInfo.InvariantCulture, $"  elapsed {Duration(elapsed)}  {rate:F0} tokens/s");
            if (total is { } t && done > 0 && done < t)
            {
                progress += "  ETA " + Duration(elapsed / done * (t - done));
            }
        }

        var header = new Markup(string.Create(CultureInfo.InvariantCulture,
            $"[bold]{Markup.Escape(AtelierCommands.Str(job["id"]))}[/]  {Markup.Escape(AtelierCommands.Str(job["status"]))}  step {done}/{total?.ToString(CultureInfo.InvariantCulture) ?? "?"}{progress}  model {Markup.Escape(AtelierCommands.Str(job["fine_tuned_model"] ?? job["model"]))}\n"));

        // Per step when the server streams them, else per checkpoint.
        var losses = steps.Count > 0
            ? [.. steps.Select(r => r["train_loss"]!.GetValue<double>())]
            : checkpoints.Select(c => c["metrics"]?["train_loss"]?.GetValue<double?>()).Where(l => l is not null).Select(l => l!.Value).ToArray();
        var valid = checkpoints.Select(c => c["metrics"]?["valid_loss"]?.GetValue<double?>()).Where(l => l is not null).Select(l => l!.Value).ToArray();
        var curve = new Markup(
            "train loss " + Sparkline(losses) + (losses.Length > 0 ? string.Create(CultureInfo.InvariantCulture, $"  {losses[^1]:F4}") : "") + "\n" +
            "valid loss " + Sparkline(valid) + (valid.Length > 0 ? string.Create(CultureInfo.InvariantCulture, $"  {valid[^1]:F4}") : "") + "\n");
        var table = new Table().AddColumns("step", "train loss", "valid loss", "valid accuracy");
        foreach (var c in checkpoints.TakeLast(10))
        {
            table.AddRow(AtelierCommands.Str(c["step_number"]), Number(c["metrics"]?["train_loss"]), Number(c["metrics"]?["valid_loss"]), Number(c["metrics"]?["valid_mean_token_accuracy"]));
        }

        return new Rows(header, curve, table);
    }

    private static string Duration(double seconds) =>
        TimeSpan.FromSeconds(Math.Max(0, seconds)) is var d && d.TotalHours >= 1
            ? d.ToString(@"h\:mm\:ss", CultureInfo.InvariantCulture)
            : d.ToString(@"m\:ss", CultureInfo.InvariantCulture);

    /// <summary>A one-line curve of <paramref name="values"/>, scaled between their minimum and maximum.</summary>
    internal static string Sparkline(IReadOnlyList<double> values)
    {
        const string bars = "▁▂▃▄▅▆▇█";
        if (values.Count == 0)
        {
            return "(no checkpoint yet)";
        }

        var (min, max) = (values.Min(), values.Max());
        var text = new StringBuilder(values.Count);
        foreach (var v in values.TakeLast(60))
        {
            text.Append(max > min ? bars[(int)Math.Round((v - min) / (max - min) * (bars.Length - 1))] : bars[0]);
        }

        return text.ToString();
    }

    private static int Summary(JsonNode job)
    {
        AnsiConsole.Write(Render(job));
        if (job["error"] is { } error)
        {
            AnsiConsole.MarkupLine("[red]" + Markup.Escape(AtelierCommands.Str(error)) + "[/]");
        }

        return 0;
    }

    private static string Number(JsonNode? value) =>
        value?.GetValue<double?>() is { } d ? d.ToString("F4", CultureInfo.InvariantCulture) : "";

    private static StringContent Json(JsonNode body) => new(body.ToJsonString(), Encoding.UTF8, "application/json");
}
