using System.CommandLine;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Atelier.Core.IO;
using Atelier.Training.Erasure;
using Spectre.Console;

namespace Atelier.Cli;

/// <summary>
/// <c>atelier lineage ID</c> (the lineage graph as a tree) and <c>atelier erasure plan|run|show|verify</c>
/// (erasing a file and everything made from it, and checking the signed report).
/// </summary>
internal static class LineageCommands
{
    /// <summary>The exit code of a report that does not verify.</summary>
    public const int Invalid = 3;

    public static Command Lineage(ClientOptions client)
    {
        var id = new Argument<string>("id") { Description = "The artifact's id (a model may be named by an alias)." };
        var kind = new Option<string>("--kind") { Description = "file, dataset, job, checkpoint, model, collection, feature_view or training_set.", DefaultValueFactory = _ => "model" };
        var downstream = new Option<bool>("--downstream") { Description = "Show what was made from it, instead of what it was made from." };
        var depth = new Option<int?>("--depth") { Description = "How many edges deep (default 10)." };
        var command = new Command("lineage", "Show an artifact's lineage as a tree: what it was made from, or (--downstream) what was made from it, with each node's residency policy and locations.");
        command.Arguments.Add(id);
        command.Options.Add(kind);
        command.Options.Add(downstream);
        command.Options.Add(depth);
        command.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var query = "?direction=" + (parse.GetValue(downstream) ? "downstream" : "upstream") + (parse.GetValue(depth) is { } d ? "&depth=" + d : "");
            var graph = await api.GetJsonAsync($"/api/v1/lineage/{Uri.EscapeDataString(parse.GetValue(kind)!)}/{Uri.EscapeDataString(parse.GetValue(id)!)}{query}", cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(graph);
            }

            var lines = TreeLines(graph);
            if (Console.IsOutputRedirected)
            {
                foreach (var (level, text) in lines)
                {
                    Console.WriteLine(new string(' ', level * 2) + text);
                }

                return 0;
            }

            var tree = new Tree(Markup.Escape(lines[0].Text));
            var parents = new Stack<(int Level, IHasTreeNodes Node)>();
            parents.Push((0, tree));
            foreach (var (level, text) in lines.Skip(1))
            {
                while (parents.Peek().Level >= level)
                {
                    parents.Pop();
                }

                parents.Push((level, parents.Peek().Node.AddNode(Markup.Escape(text))));
            }

            AnsiConsole.Write(tree);
            return 0;
        });
        return command;
    }

    /// <summary>The graph as indented lines from its root: each node once in full, a repeat as a reference.</summary>
    internal static List<(int Level, string Text)> TreeLines(JsonNode graph)
    {
        var nodes = graph["nodes"]!.AsArray().ToDictionary(n => n!["ref"]!.GetValue<string>(), n => n!, StringComparer.Ordinal);
        var downstream = graph["direction"]?.GetValue<string>() == "downstream";
        var children = graph["edges"]!.AsArray()
            .Select(e => (From: e!["from"]!.GetValue<string>(), To: e["to"]!.GetValue<string>(), Relation: e["relation"]!.GetValue<string>()))
            .ToLookup(e => downstream ? e.From : e.To, StringComparer.Ordinal);
        var lines = new List<(int, string)>();
        var shown = new HashSet<string>(StringComparer.Ordinal);
        var root = graph["root"]!.GetValue<string>();
        Add(root, null, 0);
        return lines;

        void Add(string reference, string? relation, int level)
        {
            var prefix = relation is null ? "" : $"[{relation}] ";
            if (!shown.Add(reference) || !nodes.TryGetValue(reference, out var node))
            {
                lines.Add((level, $"{prefix}{reference} (shown above)"));
                return;
            }

            lines.Add((level, prefix + Describe(node)));
            foreach (var edge in children[reference])
            {
                Add(downstream ? edge.To : edge.From, edge.Relation, level + 1);
            }
        }
    }

    private static string Describe(JsonNode node)
    {
        var text = new StringBuilder().Append(node["kind"]!.GetValue<string>()).Append(' ').Append(node["id"]!.GetValue<string>());
        if (node["name"] is { } name && name.GetValue<string>() != node["id"]!.GetValue<string>())
        {
            text.Append(" \"").Append(name.GetValue<string>()).Append('"');
        }

        if (node["status"] is { } status)
        {
            text.Append(' ').Append(status.GetValue<string>());
        }

        if (node["residency_policy"] is { } policy)
        {
            text.Append(" policy=").Append(policy.GetValue<string>());
        }

        var locations = node["locations"]?.AsArray().Select(l => l!.GetValue<string>()).ToList() ?? [];
        if (locations.Count > 0)
        {
            text.Append(" at ").Append(string.Join(",", locations));
        }

        if (node["tainted"]?.GetValue<bool>() == true)
        {
            text.Append(" TAINTED by ").Append(node["erasure_id"]!.GetValue<string>());
        }

        return text.ToString();
    }

    public static Command Erasure(ClientOptions client)
    {
        var command = new Command("erasure", "Erase a file and everything made from it (GDPR article 17), and keep the signed report.");
        command.Subcommands.Add(Start(client, "plan", "Show what erasing the file would do to every artifact made from it (changes nothing; any key).", dryRun: true));
        command.Subcommands.Add(Start(client, "run", "Erase the file: rebuild its dataset versions without it, delete jobs' data and checkpoints, taint its models, delete its bytes everywhere; prints the signed report (an admin key).", dryRun: false));

        var id = new Argument<string>("erasure-id") { Description = "The erasure's id (er-...)." };
        var output = new Option<FileInfo?>("--output", "-o") { Description = "Write the report to this file (never overwritten)." };
        var show = new Command("show", "Show an erasure: its signed report once done, else its plan and status.");
        show.Arguments.Add(id);
        show.Options.Add(output);
        show.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var report = await api.GetJsonAsync($"/api/v1/erasure/{Uri.EscapeDataString(parse.GetValue(id)!)}", cancel).ConfigureAwait(false);
            return Write(report, parse.GetValue(output));
        });
        command.Subcommands.Add(show);

        var file = new Argument<FileInfo>("report") { Description = "The report file (from 'erasure show -o' or 'erasure run -o')." };
        var publicKey = new Option<string?>("--public-key") { Description = "The base64 public key (SubjectPublicKeyInfo) the report must be signed with, e.g. from a kept audit head; without it, the key the report carries." };
        var verify = new Command("verify", "Check an erasure report's signature here, without the server.");
        verify.Arguments.Add(file);
        verify.Options.Add(publicKey);
        verify.SetAction(async (parse, cancel) =>
        {
            var path = parse.GetValue(file)!.FullName;
            JsonObject report;
            try
            {
                report = JsonNode.Parse(await File.ReadAllTextAsync(path, cancel).ConfigureAwait(false)) as JsonObject
                    ?? throw new CliException($"{path} is not an erasure report (a JSON object).");
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Text.Json.JsonException)
            {
                throw new CliException($"Cannot read the erasure report {path}: {e.Message}");
            }

            byte[] pinned = [];
            if (parse.GetValue(publicKey) is { } key)
            {
                try
                {
                    pinned = Convert.FromBase64String(key.Trim());
                }
                catch (FormatException)
                {
                    throw new CliException("--public-key is not base64.");
                }
            }

            var problem = ErasureReport.Verify(report, pinned);
            if (problem is null)
            {
                Console.WriteLine($"Erasure report {AtelierCommands.Str(report["erasure_id"])} is valid: signed by key {AtelierCommands.Str(report["signature"]?["key_id"])}.");
                return 0;
            }

            Console.Error.WriteLine($"Erasure report {path} is NOT valid: {problem}.");
            return Invalid;
        });
        command.Subcommands.Add(verify);
        return command;
    }

    private static Command Start(ClientOptions client, string name, string description, bool dryRun)
    {
        var kind = new Argument<string>("kind") { Description = "The artifact's kind: file." };
        var id = new Argument<string>("id") { Description = "The artifact's id." };
        var output = new Option<FileInfo?>("--output", "-o") { Description = "Write the answer (the plan, or the signed report) to this file (never overwritten)." };
        var command = new Command(name, description);
        command.Arguments.Add(kind);
        command.Arguments.Add(id);
        command.Options.Add(output);
        command.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = new JsonObject { ["artifact"] = new JsonObject { ["kind"] = parse.GetValue(kind), ["id"] = parse.GetValue(id) }, ["dry_run"] = dryRun };
            var answer = await api.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/api/v1/erasure") { Content = JsonContent.Create(body) }, cancel).ConfigureAwait(false);
            if (client.WantsJson(parse) || parse.GetValue(output) is not null)
            {
                return Write(answer, parse.GetValue(output));
            }

            var steps = (dryRun ? answer["steps"] : answer["plan"])!.AsArray();
            if (!dryRun)
            {
                Console.WriteLine($"Erasure {AtelierCommands.Str(answer["erasure_id"])} done; content sha256 {AtelierCommands.Str(answer["content_sha256"])}.");
            }

            var table = new Table().AddColumns("kind", "id", "action", dryRun ? "what happens" : "outcome");
            var outcomes = dryRun ? null : answer["outcomes"]!.AsArray();
            foreach (var step in steps)
            {
                var outcome = outcomes?.FirstOrDefault(o => o!["kind"]!.GetValue<string>() == step!["kind"]!.GetValue<string>() && o["id"]!.GetValue<string>() == step["id"]!.GetValue<string>());
                string[] cells = [AtelierCommands.Str(step!["kind"]), AtelierCommands.Str(step["id"]), AtelierCommands.Str(step["action"]), AtelierCommands.Str(outcome?["outcome"] ?? step["detail"])];

                // Piped, one line per artifact, so ids are never wrapped to a terminal's width.
                if (Console.IsOutputRedirected)
                {
                    Console.WriteLine(string.Join('\t', cells));
                }
                else
                {
                    table.AddRow([.. cells.Select(Markup.Escape)]);
                }
            }

            if (!Console.IsOutputRedirected)
            {
                AnsiConsole.Write(table);
            }

            if (!dryRun)
            {
                var checks = answer["verification"]!.AsArray();
                Console.WriteLine($"{checks.Count(c => c!["status"]!.GetValue<string>() == "absent")} of {checks.Count} location checks say absent. Keep the report: atelier erasure show {AtelierCommands.Str(answer["erasure_id"])} -o report.json");
            }

            return 0;
        });
        return command;
    }

    private static int Write(JsonNode answer, FileInfo? target)
    {
        if (target is null)
        {
            return AtelierCommands.Print(answer);
        }

        try
        {
            AtomicFile.WriteAllBytes(target.FullName, Encoding.UTF8.GetBytes(answer.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n"), overwrite: false);
        }
        catch (IOException e)
        {
            throw new CliException($"Cannot write {target.FullName}: {e.Message}");
        }

        Console.WriteLine($"Written to {target.FullName}.");
        return 0;
    }
}
