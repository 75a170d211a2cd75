using System.CommandLine;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Spectre.Console;

namespace Atelier.Cli;

/// <summary>
/// <c>atelier registry list|versions|alias set|alias remove|alias history|evaluate|evaluations</c>: registered
/// model names, their versions and aliases (<c>/api/v1/registry/models</c>).
/// </summary>
internal static class RegistryCommands
{
    public static Command Build(ClientOptions client)
    {
        var command = new Command("registry", "Registered model names: versions in order, aliases (name@alias works wherever a model is named) with their history, and evaluations.");
        var name = new Argument<string>("name") { Description = "The registered name (a base model's id, or a fine-tune's, e.g. tiny-model:my-suffix)." };
        var alias = new Argument<string>("alias") { Description = "The alias: a-z, 0-9, '_' or '-', starting with a letter (e.g. production)." };
        var version = new Argument<int>("version") { Description = "The version number." };

        var list = new Command("list", "List the registered names you see, with their latest version and aliases.");
        list.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = await api.GetJsonAsync("/api/v1/registry/models", cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(body);
            }

            var table = new Table().AddColumns("name", "latest", "versions", "latest model", "aliases", "shared");
            table.Columns[0].NoWrap();
            foreach (var n in body["data"]!.AsArray())
            {
                table.AddRow(
                    Markup.Escape(AtelierCommands.Str(n!["name"])),
                    AtelierCommands.Str(n["latest_version"]),
                    AtelierCommands.Str(n["versions"]),
                    Markup.Escape(AtelierCommands.Str(n["latest_model_id"])),
                    Markup.Escape(Aliases(n["aliases"]!.AsArray())),
                    AtelierCommands.Str(n["shared"]));
            }

            AnsiConsole.Write(table);
            Console.WriteLine($"{body["data"]!.AsArray().Count} registered model(s).");
            return 0;
        });
        command.Subcommands.Add(list);

        var versions = new Command("versions", "List the versions of a registered name, oldest first.");
        versions.Arguments.Add(name);
        versions.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = await api.GetJsonAsync($"{Path(parse.GetValue(name)!)}/versions", cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(body);
            }

            // Narrow enough for an 80-column terminal next to a fine-tune's id; --json has the job and time too.
            var table = new Table().AddColumns("version", "aliases", "status", "model");
            table.Columns[3].NoWrap();
            foreach (var v in body["data"]!.AsArray())
            {
                table.AddRow(
                    AtelierCommands.Str(v!["version"]),
                    Markup.Escape(string.Join(", ", v["aliases"]!.AsArray().Select(a => AtelierCommands.Str(a)))),
                    AtelierCommands.Str(v["status"]),
                    Markup.Escape(AtelierCommands.Str(v["model_id"])));
            }

            AnsiConsole.Write(table);
            return 0;
        });
        command.Subcommands.Add(versions);

        var aliasCommand = new Command("alias", "Set, move, remove an alias, or show its history.");
        var reason = new Option<string?>("--reason") { Description = "Why (kept in the alias's history)." };
        var set = new Command("set", "Point an alias at a version (sets or moves it); the move is recorded and audited.");
        set.Arguments.Add(name);
        set.Arguments.Add(alias);
        set.Arguments.Add(version);
        set.Options.Add(reason);
        set.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = await api.SendAsync(
                new HttpRequestMessage(HttpMethod.Put, $"{Path(parse.GetValue(name)!)}/aliases/{Uri.EscapeDataString(parse.GetValue(alias)!)}")
                {
                    Content = JsonContent.Create(new { version = parse.GetValue(version), reason = parse.GetValue(reason) }),
                },
                cancel).ConfigureAwait(false);
            return client.WantsJson(parse) ? AtelierCommands.Print(body) : Moved(body);
        });
        aliasCommand.Subcommands.Add(set);

        var remove = new Command("remove", "Remove an alias; the removal is recorded and audited.");
        remove.Arguments.Add(name);
        remove.Arguments.Add(alias);
        remove.Options.Add(reason);
        remove.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var query = parse.GetValue(reason) is { } why ? "?reason=" + Uri.EscapeDataString(why) : "";
            var body = await api.SendAsync(new HttpRequestMessage(HttpMethod.Delete, $"{Path(parse.GetValue(name)!)}/aliases/{Uri.EscapeDataString(parse.GetValue(alias)!)}{query}"), cancel).ConfigureAwait(false);
            return client.WantsJson(parse) ? AtelierCommands.Print(body) : Moved(body);
        });
        aliasCommand.Subcommands.Add(remove);

        var history = new Command("history", "Every move of an alias, oldest first.");
        history.Arguments.Add(name);
        history.Arguments.Add(alias);
        history.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = await api.GetJsonAsync($"{Path(parse.GetValue(name)!)}/aliases/{Uri.EscapeDataString(parse.GetValue(alias)!)}/history", cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(body);
            }

            var table = new Table().AddColumns("#", "from", "to", "reason", "when", "by");
            foreach (var m in body["data"]!.AsArray())
            {
                table.AddRow(
                    AtelierCommands.Str(m!["seq"]),
                    Or(m["from_version"]),
                    Or(m["to_version"]),
                    Markup.Escape(AtelierCommands.Str(m["reason"])),
                    KeysCommands.Time(m["at"]?.GetValue<long>()),
                    Markup.Escape(AtelierCommands.Str(m["actor"])));
            }

            AnsiConsole.Write(table);
            return 0;
        });
        aliasCommand.Subcommands.Add(history);
        command.Subcommands.Add(aliasCommand);

        var file = new Option<string>("--file") { Description = "The validation file's id (uploaded with purpose fine-tune).", Required = true };
        var seqLen = new Option<int?>("--seq-len") { Description = "Tokens per window (default 2048, at most the model's context)." };
        var evaluate = new Command("evaluate", "Measure a version's loss and token accuracy on a validation file, and its base model's, and store the result with the version.");
        evaluate.Arguments.Add(name);
        evaluate.Arguments.Add(version);
        evaluate.Options.Add(file);
        evaluate.Options.Add(seqLen);
        evaluate.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = await api.SendAsync(
                new HttpRequestMessage(HttpMethod.Post, $"{Path(parse.GetValue(name)!)}/versions/{parse.GetValue(version).ToString(CultureInfo.InvariantCulture)}/evaluations")
                {
                    Content = JsonContent.Create(new { file_id = parse.GetValue(file), seq_len = parse.GetValue(seqLen) }),
                },
                cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(body);
            }

            var result = body["result"]!;
            Console.WriteLine($"{body["name"]} version {body["version"]} ({body["model_id"]}) on {body["file_id"]}, {result["windows"]} window(s):");
            Console.WriteLine($"  this version: loss {Number(result["model"]!["loss"])}, token accuracy {Number(result["model"]!["token_accuracy"])}");
            Console.WriteLine($"  base {result["base"]!["model_id"]}: loss {Number(result["base"]!["loss"])}, token accuracy {Number(result["base"]!["token_accuracy"])}");
            return 0;
        });
        command.Subcommands.Add(evaluate);

        var evaluations = new Command("evaluations", "List the stored evaluations of a version.");
        evaluations.Arguments.Add(name);
        evaluations.Arguments.Add(version);
        evaluations.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = await api.GetJsonAsync($"{Path(parse.GetValue(name)!)}/versions/{parse.GetValue(version).ToString(CultureInfo.InvariantCulture)}/evaluations", cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(body);
            }

            var table = new Table().AddColumns("id", "file", "loss", "accuracy", "base loss", "base accuracy", "when");
            foreach (var e in body["data"]!.AsArray())
            {
                var r = e!["result"]!;
                table.AddRow(
                    AtelierCommands.Str(e["id"]),
                    AtelierCommands.Str(e["file_id"]),
                    Number(r["model"]!["loss"]),
                    Number(r["model"]!["token_accuracy"]),
                    Number(r["base"]!["loss"]),
                    Number(r["base"]!["token_accuracy"]),
                    KeysCommands.Time(e["created_at"]?.GetValue<long>()));
            }

            AnsiConsole.Write(table);
            return 0;
        });
        command.Subcommands.Add(evaluations);
        return command;
    }

    private static string Path(string name) => "/api/v1/registry/models/" + Uri.EscapeDataString(name);

    private static string Aliases(JsonArray aliases) =>
        string.Join(", ", aliases.Select(a => $"{AtelierCommands.Str(a!["alias"])}={AtelierCommands.Str(a["version"])}"));

    private static string Or(JsonNode? node) => node is null ? "-" : AtelierCommands.Str(node);

    private static string Number(JsonNode? node) => node is null ? "-" : node.GetValue<double>().ToString("F4", CultureInfo.InvariantCulture);

    private static int Moved(JsonNode body)
    {
        var alias = $"{body["name"]}@{body["alias"]}";
        Console.WriteLine(body["changed"]!.GetValue<bool>()
            ? body["version"] is { } v ? $"{alias} -> version {v} (was {Or(body["move"]!["from_version"])})." : $"{alias} removed."
            : $"{alias} already points at version {body["version"]}; nothing changed.");
        return 0;
    }
}
