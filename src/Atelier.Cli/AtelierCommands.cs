using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Atelier.Server.Hosting;
using Microsoft.Extensions.Hosting;
using Spectre.Console;

namespace Atelier.Cli;

/// <summary>The <c>atelier</c> command tree.</summary>
public static class AtelierCommands
{
    /// <summary>The default data directory: <c>$ATELIER_DATA</c>, else <c>./atelier-data</c>.</summary>
    public static string DefaultDataDirectory =>
        Environment.GetEnvironmentVariable("ATELIER_DATA") is { Length: > 0 } d ? d : Path.Combine(Environment.CurrentDirectory, "atelier-data");

    /// <summary>Builds the root command.</summary>
    public static RootCommand Build()
    {
        var data = new Option<string?>("--data") { Description = "Data directory (default: $ATELIER_DATA or ./atelier-data).", Recursive = true };
        var server = new Option<string?>("--server") { Description = "Server URL for client commands (default: $ATELIER_URL, else the server of 'atelier login', else the running 'atelier serve' of the data directory, from its server.json).", Recursive = true };
        var apiKey = new Option<string?>("--api-key") { Description = "API key for client commands (default: $ATELIER_API_KEY, else the key of 'atelier login' for its server, else <data>/admin.key).", Recursive = true };
        var json = new Option<bool>("--json") { Description = "Print the server's JSON answer (JSON lines for streams) instead of a table or text.", Recursive = true };

        var root = new RootCommand("Atelier: self-hosted fine-tuning of language models, with residency you can prove.");
        root.Options.Add(data);
        root.Options.Add(server);
        root.Options.Add(apiKey);
        root.Options.Add(json);

        root.Subcommands.Add(Serve(data));
        var client = new ClientOptions(data, server, apiKey, json);
        root.Subcommands.Add(LoginCommands.Login(client));
        root.Subcommands.Add(LoginCommands.Logout());
        root.Subcommands.Add(KeysCommands.Build(client));
        root.Subcommands.Add(FilesCommands.Build(client));
        root.Subcommands.Add(DatasetsCommands.Build(client));
        root.Subcommands.Add(CollectionsCommands.Build(client));
        root.Subcommands.Add(FeaturesCommands.Build(client));
        root.Subcommands.Add(ModelsCommands.Build(client));
        root.Subcommands.Add(RegistryCommands.Build(client));
        root.Subcommands.Add(ChatCommand.Build(client));
        root.Subcommands.Add(JobsCommands.Build(client));
        root.Subcommands.Add(JobsCommands.Checkpoints(client));
        root.Subcommands.Add(Locations(client));
        root.Subcommands.Add(GovernanceCommands.Policies(client));
        root.Subcommands.Add(GovernanceCommands.Workspaces(client));
        root.Subcommands.Add(Audit(client));
        root.Subcommands.Add(LineageCommands.Lineage(client));
        root.Subcommands.Add(LineageCommands.Erasure(client));
        return root;
    }

    private static Command Serve(Option<string?> data)
    {
        var port = new Option<int?>("--port") { Description = "TCP port to listen on (default: server.port in atelier.json, 8080); 0 picks a free one, which the banner and server.json show." };
        var bind = new Option<string?>("--bind") { Description = "Address to bind (default 127.0.0.1: loopback only)." };
        var country = new Option<string>("--country") { Description = "Country (ISO code) of the default on-prem location, used only when the data directory is new. EU members get EU residency.", DefaultValueFactory = _ => "FR" };
        var logFormat = new Option<string?>("--log-format") { Description = "Log format: text (one line per event, the default) or json (one JSON object per line, with trace ids); overrides logging.format in atelier.json." };
        logFormat.CustomParser = r =>
        {
            var value = r.Tokens.Count == 0 ? null : r.Tokens[0].Value.ToLowerInvariant();
            if (value is not (null or Atelier.Core.LoggingConfig.Text or Atelier.Core.LoggingConfig.Json))
            {
                r.AddError($"--log-format: '{r.Tokens[0].Value}' is not a log format; use text or json.");
            }

            return value;
        };
        var node = new Option<string?>("--node") { Description = "This node's name in a cluster (as the topology's racks list it; default: cluster.node in atelier.json, else the machine's name)." };
        var cluster = new Option<string?>("--cluster") { Description = "Join a cluster: the Npgsql connection string of the PostgreSQL database all nodes share (Host=...;Database=atelier;Username=...;Password=...), for the catalog and the cluster's membership. Overrides catalog in atelier.json. Visible to other users in the process list: prefer catalog.connection_string_file or $ATELIER_CATALOG_CONNECTION_STRING." };
        var advertisedAddress = new Option<string?>("--advertised-address") { Description = "The IP address other nodes reach this node's silo at (default: cluster.advertised_address in atelier.json, else loopback, which serves only nodes on one machine); in Kubernetes, the pod's IP." };
        var command = new Command("serve", "Run Atelier: API, catalog and storage in one process, from one data directory.");
        command.Options.Add(node);
        command.Options.Add(cluster);
        command.Options.Add(advertisedAddress);
        command.Options.Add(country);
        command.Options.Add(port);
        command.Options.Add(bind);
        command.Options.Add(logFormat);
        command.SetAction(async (parse, cancel) =>
        {
            var dataDirectory = Path.GetFullPath(parse.GetValue(data) ?? DefaultDataDirectory);
            var format = parse.GetValue(logFormat);
            await using var app = await AtelierServer.BuildAsync(new ServerOptions { DataDirectory = dataDirectory, Port = parse.GetValue(port), Bind = parse.GetValue(bind), DefaultCountry = parse.GetValue(country)!.ToUpperInvariant(), LogFormat = format, Node = parse.GetValue(node), Cluster = parse.GetValue(cluster), AdvertisedAddress = parse.GetValue(advertisedAddress) }, cancellationToken: cancel).ConfigureAwait(false);
            var started = app.StartupReport();

            // With --log-format json, standard output is for the log alone: the banner goes to standard error.
            var banner = format == Atelier.Core.LoggingConfig.Json ? Console.Error : Console.Out;
            var keyPath = Path.Combine(dataDirectory, DataDirectoryStartup.AdminKeyFile);
            if (started.CreatedAdminKeyPath is { } created)
            {
                banner.WriteLine($"Created the platform operator's API key in {created} (mode 0600). Use it as 'Authorization: Bearer <key>'.");
            }

            if (started.RecoveredOrphans > 0)
            {
                banner.WriteLine($"Recovery removed {started.RecoveredOrphans} partial or unreferenced blob(s) left by an earlier crash.");
            }

            await app.StartAsync(cancel).ConfigureAwait(false);
            var url = ClientUrl(app.Urls.First());
            new ServerFile(url, Environment.ProcessId).Write(dataDirectory);
            try
            {
                banner.WriteLine($"Atelier is listening on {url}");
                banner.WriteLine($"  console:  {url}/");
                banner.WriteLine($"  data:     {dataDirectory}");
                banner.WriteLine($"  key file: {keyPath}{(File.Exists(keyPath) ? "" : " (moved away: use the key you kept)")}");
                banner.WriteLine($"Client commands run here find it through {ServerFile.PathIn(dataDirectory)}; elsewhere, 'atelier login {url}'.");
                banner.Flush();
                await app.WaitForShutdownAsync(cancel).ConfigureAwait(false);
            }
            finally
            {
                ServerFile.RemoveOwn(dataDirectory);
            }

            return 0;
        });
        return command;
    }

    /// <summary>The URL a client on this machine reaches a listening address at: loopback for a wildcard bind.</summary>
    private static string ClientUrl(string listening)
    {
        var uri = new Uri(listening.Replace("://+:", "://0.0.0.0:", StringComparison.Ordinal).Replace("://*:", "://0.0.0.0:", StringComparison.Ordinal));
        var host = uri.Host switch
        {
            "0.0.0.0" => "127.0.0.1",
            "[::]" or "::" => "[::1]",
            _ => uri.Host,
        };
        return $"{uri.Scheme}://{host}:{uri.Port}";
    }

    private static Command Locations(ClientOptions client)
    {
        var command = new Command("locations", "Where bytes can live.");
        var list = new Command("list", "List configured locations with jurisdiction, site, rack and operator.");
        list.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = await api.GetJsonAsync("/api/v1/locations", cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                return Print(body);
            }

            var table = new Table().AddColumns("id", "kind", "jurisdiction", "site", "rack", "on-prem", "operator");
            table.Columns[0].NoWrap();
            foreach (var l in body["data"]!.AsArray())
            {
                var blocs = string.Join(",", l!["blocs"]!.AsArray().Select(b => b!.GetValue<string>()));
                table.AddRow(Str(l["id"]), Str(l["kind"]), Str(l["country"]) + (blocs.Length > 0 ? $" ({blocs})" : ""), Str(l["site"]), Str(l["rack"]), Str(l["on_prem"]), Str(l["operator"]));
            }

            AnsiConsole.Write(table);
            return 0;
        });
        command.Subcommands.Add(list);
        return command;
    }

    private static Command Audit(ClientOptions client)
    {
        var command = new Command("audit", "The append-only, hash-chained audit log.");
        var count = new Option<int>("-n") { Description = "How many of the newest events to print first (default 20).", DefaultValueFactory = _ => 20 };
        var follow = new Option<bool>("--follow", "-f") { Description = "Keep printing new events as they come (checked every second) until interrupted." };
        var tail = new Command("tail", "Print the newest audit events.");
        tail.Options.Add(count);
        tail.Options.Add(follow);
        tail.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = await api.GetJsonAsync($"/api/v1/audit?tail={parse.GetValue(count)}", cancel).ConfigureAwait(false);
            var last = 0L;

            // With --json, one JSON object per line (JSON lines), so that --follow can go on printing.
            Action<JsonNode> print = client.WantsJson(parse) ? e => Console.WriteLine(e.ToJsonString()) : PrintEvent;
            foreach (var e in body["data"]!.AsArray())
            {
                print(e!);
                last = e!["seq"]!.GetValue<long>();
            }

            while (parse.GetValue(follow) && !cancel.IsCancellationRequested)
            {
                await Task.Delay(TimeSpan.FromSeconds(1), cancel).ConfigureAwait(false);
                body = await api.GetJsonAsync($"/api/v1/audit?after={last}&limit=1000", cancel).ConfigureAwait(false);
                foreach (var e in body["data"]!.AsArray())
                {
                    print(e!);
                    last = e!["seq"]!.GetValue<long>();
                }
            }

            return 0;
        });
        var against = new Option<FileInfo?>("--against") { Description = "A head exported earlier ('audit head -o FILE'): download the log and check here that it still holds that head's event, without trusting the server's answer." };
        var publicKey = new Option<string?>("--public-key") { Description = "With --against: the key the head must be signed with (a head's public_key, base64)." };
        var verify = new Command("verify", "Check the hash chain of the whole log; with --against, also that it still holds an exported head.");
        verify.Options.Add(against);
        verify.Options.Add(publicKey);
        verify.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            if (parse.GetValue(against) is { } headFile)
            {
                return await AuditHeadCommands.VerifyAgainstAsync(api, headFile, parse.GetValue(publicKey), cancel).ConfigureAwait(false);
            }

            var body = await api.GetJsonAsync("/api/v1/audit/verify", cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                AtelierCommands.Print(body);
                return body["valid"]!.GetValue<bool>() ? 0 : AuditHeadCommands.Invalid;
            }

            if (body["nodes"] is JsonArray nodes)
            {
                // A cluster: each node keeps its own chain and checked it.
                foreach (var node in nodes)
                {
                    var line = node!["valid"]!.GetValue<bool>() ? $"node {node["node"]}: valid, {node["events"]} events, head hash {node["head_hash"]}"
                        : node["reachable"]!.GetValue<bool>() ? $"node {node["node"]}: INVALID: {node["reason"]}"
                        : $"node {node["node"]}: not checked: {node["reason"]}";
                    Console.WriteLine(line);
                }
            }

            if (body["valid"]!.GetValue<bool>())
            {
                Console.WriteLine($"Audit log valid: {body["events"]} events, head hash {body["head_hash"]}.");
                return 0;
            }

            Console.Error.WriteLine(body["reason"] is null
                ? "Audit log INVALID on another node (above)."
                : $"Audit log INVALID at seq {body["first_bad_seq"]}: {body["reason"]} ({body["events"]} events verified before it).");
            return AuditHeadCommands.Invalid;
        });
        command.Subcommands.Add(tail);
        command.Subcommands.Add(AuditHeadCommands.Head(client));
        command.Subcommands.Add(verify);
        return command;
    }

    private static void PrintEvent(JsonNode e)
    {
        var parts = new List<string> { Str(e["seq"]), Str(e["time"]), Str(e["type"]) };
        foreach (var name in new[] { "workspace", "actor", "artifact_kind", "artifact_id", "location", "policy", "bytes", "sha256", "detail" })
        {
            if (e[name] is { } v)
            {
                parts.Add($"{name}={v}");
            }
        }

        Console.WriteLine(string.Join(' ', parts));
    }

    /// <summary>
    /// Makes <paramref name="option"/> accept only <paramref name="values"/>, whatever their case
    /// (<c>--metric L2</c> is <c>l2</c>); the value comes out as written in <paramref name="values"/>.
    /// </summary>
    internal static Option<string> OneOf(this Option<string> option, params string[] values)
    {
        option.CustomParser = result =>
        {
            var given = result.Tokens.Count == 0 ? "" : result.Tokens[0].Value;
            var match = values.FirstOrDefault(v => string.Equals(v, given, StringComparison.OrdinalIgnoreCase));
            if (match is null)
            {
                result.AddError($"{option.Name}: '{given}' is not one of {string.Join(", ", values)}.");
                return given;
            }

            return match;
        };
        option.Description += $" One of: {string.Join(", ", values)} (any case).";
        return option;
    }

    internal static int Print(JsonNode node)
    {
        Console.WriteLine(node.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return 0;
    }

    internal static string Str(JsonNode? node) => node switch
    {
        null => "",
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        _ => node.ToJsonString(),
    };

    internal static string Bytes(long bytes) =>
        bytes switch
        {
            < 1024 => bytes.ToString(CultureInfo.InvariantCulture) + " B",
            < 1024 * 1024 => (bytes / 1024.0).ToString("0.0", CultureInfo.InvariantCulture) + " KiB",
            < 1024L * 1024 * 1024 => (bytes / 1048576.0).ToString("0.0", CultureInfo.InvariantCulture) + " MiB",
            _ => (bytes / 1073741824.0).ToString("0.00", CultureInfo.InvariantCulture) + " GiB",
        };
}
