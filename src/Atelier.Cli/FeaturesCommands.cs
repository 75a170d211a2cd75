using System.CommandLine;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Spectre.Console;

namespace Atelier.Cli;

/// <summary>
/// <c>atelier features views|push|online|historical|training-sets</c>: the feature store over HTTP.
/// Definitions and queries are JSON files in the API's own shape, so what works with curl works here.
/// </summary>
internal static class FeaturesCommands
{
    public static Command Build(ClientOptions client)
    {
        var command = new Command("features", "The feature store: views, pushed rows, online lookups, point-in-time retrieval, training sets.");
        command.Subcommands.Add(Views(client));
        command.Subcommands.Add(Push(client));
        command.Subcommands.Add(Online(client));
        command.Subcommands.Add(Historical(client));
        command.Subcommands.Add(TrainingSets(client));
        return command;
    }

    private static Command Views(ClientOptions client)
    {
        var command = new Command("views", "Feature views: named, versioned schemas over pushed or dataset features.");
        var file = new Argument<FileInfo>("file") { Description = "A JSON view definition: {\"name\", \"entity_key\", \"timestamp_field\", \"fields\": [{\"name\", \"type\"}], ...}." };
        var create = new Command("create", "Create a view, or a new version of it when its schema changed.");
        create.Arguments.Add(file);
        create.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var view = await api.SendAsync(Post("/api/v1/features/views", ReadJson(parse.GetValue(file)!)), cancel).ConfigureAwait(false);
            return client.WantsJson(parse) ? AtelierCommands.Print(view) : Done($"View {view["name"]} version {view["version"]} ({view["id"]}).");
        });
        command.Subcommands.Add(create);

        var list = new Command("list", "List views, every version.");
        list.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = await api.GetJsonAsync("/api/v1/features/views", cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(body);
            }

            var table = new Table().AddColumns("name", "version", "entity key", "fields", "source", "policy");
            foreach (var v in body["data"]!.AsArray())
            {
                table.AddRow(
                    Markup.Escape(AtelierCommands.Str(v!["name"])),
                    AtelierCommands.Str(v["version"]),
                    Markup.Escape(AtelierCommands.Str(v["entity_key"])),
                    Markup.Escape(string.Join(", ", v["fields"]!.AsArray().Select(f => $"{f!["name"]}:{f["type"]}"))),
                    AtelierCommands.Str(v["source"]),
                    AtelierCommands.Str(v["policy"]));
            }

            AnsiConsole.Write(table);
            return 0;
        });
        command.Subcommands.Add(list);

        var name = new Argument<string>("name") { Description = "The view name." };
        var version = new Option<int?>("--version") { Description = "A version (the latest by default)." };
        var get = new Command("get", "Show a view and its log segments.");
        get.Arguments.Add(name);
        get.Options.Add(version);
        get.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var url = "/api/v1/features/views/" + Uri.EscapeDataString(parse.GetValue(name)!) + (parse.GetValue(version) is { } v ? $"?version={v}" : "");
            return AtelierCommands.Print(await api.GetJsonAsync(url, cancel).ConfigureAwait(false));
        });
        command.Subcommands.Add(get);
        return command;
    }

    private static Command Push(ClientOptions client)
    {
        var name = new Argument<string>("view") { Description = "The view to push to." };
        var file = new Argument<FileInfo>("file") { Description = "A JSONL file: one row object per line (entity key, event time, features)." };
        var batchSize = new Option<int>("--batch-size") { Description = "Rows per request; a bad row refuses its batch.", DefaultValueFactory = _ => 5_000 };
        var version = new Option<int?>("--version") { Description = "The view version (the latest by default)." };
        var command = new Command("push", "Push rows from a JSONL file to a view's log, in batches.");
        command.Arguments.Add(name);
        command.Arguments.Add(file);
        command.Options.Add(batchSize);
        command.Options.Add(version);
        command.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var source = parse.GetValue(file)!;
            if (!source.Exists)
            {
                throw new CliException($"{source.FullName} does not exist.");
            }

            var url = "/api/v1/features/views/" + Uri.EscapeDataString(parse.GetValue(name)!) + "/rows";
            int size = Math.Max(1, parse.GetValue(batchSize));
            long lineNumber = 0, pushed = 0, firstLine = 1;
            var rows = new JsonArray();
            using var reader = new StreamReader(source.FullName, Encoding.UTF8);
            while (await reader.ReadLineAsync(cancel).ConfigureAwait(false) is { } line)
            {
                lineNumber++;
                if (string.IsNullOrWhiteSpace(line))
                {
                    continue;
                }

                if (rows.Count == 0)
                {
                    firstLine = lineNumber;
                }

                try
                {
                    rows.Add(JsonNode.Parse(line) as JsonObject ?? throw new CliException($"{source.Name} line {lineNumber}: must be a JSON object."));
                }
                catch (JsonException e)
                {
                    throw new CliException($"{source.Name} line {lineNumber}: not valid JSON ({e.Message.Split('.')[0]}). {pushed} rows were pushed before it.");
                }

                if (rows.Count == size)
                {
                    pushed += await SendRowsAsync(api, url, rows, parse.GetValue(version), firstLine, pushed, cancel).ConfigureAwait(false);
                    rows = [];
                }
            }

            if (rows.Count > 0)
            {
                pushed += await SendRowsAsync(api, url, rows, parse.GetValue(version), firstLine, pushed, cancel).ConfigureAwait(false);
            }

            return Done($"Pushed {pushed} rows to {parse.GetValue(name)}.");
        });
        return command;
    }

    private static async Task<long> SendRowsAsync(ApiClient api, string url, JsonArray rows, int? version, long firstLine, long pushed, CancellationToken cancel)
    {
        var body = new JsonObject { ["rows"] = rows };
        if (version is { } v)
        {
            body["version"] = v;
        }

        int count = rows.Count;
        try
        {
            await api.SendAsync(Post(url, body), cancel).ConfigureAwait(false);
        }
        catch (CliException e)
        {
            throw new CliException($"{e.Message}\n(the batch starting at line {firstLine}; {pushed} rows were pushed before it, the batch itself wrote nothing)");
        }

        return count;
    }

    private static Command Online(ClientOptions client)
    {
        var name = new Argument<string>("view") { Description = "The view." };
        var keys = new Argument<string[]>("keys") { Description = "Entity keys to look up.", Arity = ArgumentArity.OneOrMore };
        var command = new Command("online", "The latest feature values of some keys (batch online lookup).");
        command.Arguments.Add(name);
        command.Arguments.Add(keys);
        command.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = new JsonObject { ["keys"] = new JsonArray([.. parse.GetValue(keys)!.Select(k => (JsonNode)k)]) };
            var result = await api.SendAsync(Post("/api/v1/features/views/" + Uri.EscapeDataString(parse.GetValue(name)!) + "/online", body), cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(result);
            }

            var table = new Table().AddColumns("key", "found", "event time", "features");
            foreach (var r in result["results"]!.AsArray())
            {
                table.AddRow(
                    Markup.Escape(AtelierCommands.Str(r!["entity_key"])),
                    AtelierCommands.Str(r["found"]),
                    AtelierCommands.Str(r["event_timestamp"]),
                    Markup.Escape(AtelierCommands.Str(r["features"])));
            }

            AnsiConsole.Write(table);
            return 0;
        });
        return command;
    }

    private static Command Historical(ClientOptions client)
    {
        var file = new Argument<FileInfo>("file") { Description = "A JSON request: {\"entity_rows\": [{\"entity_key\", \"event_timestamp\"}], \"features\": [\"view:field\"]}." };
        var output = new Option<FileInfo?>("--output", "-o") { Description = "Write Parquet to this file (never overwritten); without it, JSON is printed." };
        var command = new Command("historical", "Point-in-time correct retrieval: each entity row joined with the latest values at or before its time.");
        command.Arguments.Add(file);
        command.Options.Add(output);
        command.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = ReadJson(parse.GetValue(file)!);
            var target = parse.GetValue(output);
            body["format"] = target is null ? "json" : "parquet";
            if (target is null)
            {
                return AtelierCommands.Print(await api.SendAsync(Post("/api/v1/features/historical", body), cancel).ConfigureAwait(false));
            }

            using var response = await api.Http.SendAsync(Post("/api/v1/features/historical", body), HttpCompletionOption.ResponseHeadersRead, cancel).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                throw new CliException(ApiClient.Describe(response, await response.Content.ReadAsStringAsync(cancel).ConfigureAwait(false)));
            }

            await using var stream = new FileStream(target.FullName, FileMode.CreateNew, FileAccess.Write);
            await response.Content.CopyToAsync(stream, cancel).ConfigureAwait(false);
            return Done($"Wrote {AtelierCommands.Bytes(stream.Length)} of Parquet to {target.FullName}.");
        });
        return command;
    }

    private static Command TrainingSets(ClientOptions client)
    {
        var command = new Command("training-sets", "Training sets materialised from features into new dataset versions.");
        var file = new Argument<FileInfo>("file") { Description = "A JSON request: {\"name\", \"as_of\", \"features\", \"filters\", \"one_per\", \"prefer_highest\"}." };
        var create = new Command("create", "Materialise a filtered, point-in-time training set.");
        create.Arguments.Add(file);
        create.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var manifest = await api.SendAsync(Post("/api/v1/features/training-sets", ReadJson(parse.GetValue(file)!)), cancel).ConfigureAwait(false);
            return client.WantsJson(parse) ? AtelierCommands.Print(manifest) : Done($"Training set {manifest["name"]} version {manifest["version"]} ({manifest["id"]}).");
        });
        command.Subcommands.Add(create);

        var list = new Command("list", "List training sets, newest first.");
        list.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            return AtelierCommands.Print(await api.GetJsonAsync("/api/v1/features/training-sets", cancel).ConfigureAwait(false));
        });
        command.Subcommands.Add(list);

        var id = new Argument<string>("id") { Description = "The training set id." };
        var get = new Command("get", "Show a training set's manifest.");
        get.Arguments.Add(id);
        get.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            return AtelierCommands.Print(await api.GetJsonAsync("/api/v1/features/training-sets/" + Uri.EscapeDataString(parse.GetValue(id)!), cancel).ConfigureAwait(false));
        });
        command.Subcommands.Add(get);
        return command;
    }

    private static JsonObject ReadJson(FileInfo file)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllText(file.FullName)) as JsonObject ?? throw new CliException($"{file.FullName} must hold a JSON object.");
        }
        catch (JsonException e)
        {
            throw new CliException($"{file.FullName} is not valid JSON: {e.Message}");
        }
        catch (IOException e)
        {
            throw new CliException($"Cannot read {file.FullName}: {e.Message}");
        }
    }

    private static HttpRequestMessage Post(string url, JsonNode body) =>
        new(HttpMethod.Post, url) { Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json") };

    private static int Done(string message)
    {
        Console.WriteLine(message);
        return 0;
    }
}
