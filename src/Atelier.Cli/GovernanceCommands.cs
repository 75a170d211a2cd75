using System.CommandLine;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Spectre.Console;

namespace Atelier.Cli;

/// <summary><c>atelier policies list|show|create</c> and <c>atelier workspaces list|create|set-policies</c>.</summary>
internal static class GovernanceCommands
{
    public static Command Policies(ClientOptions client)
    {
        var command = new Command("policies", "Residency policies: which exist, and which your workspace may use (the operator defines them).");

        var list = new Command("list", "List the residency policies and whether your workspace may use each.");
        list.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = await api.GetJsonAsync("/api/v1/policies", cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(body);
            }

            var table = new Table().AddColumns("name", "jurisdictions", "operators", "replicas", "on-prem", "source", "usable here");
            foreach (var p in body["data"]!.AsArray())
            {
                table.AddRow(
                    Markup.Escape(AtelierCommands.Str(p!["name"])),
                    Markup.Escape(string.Join(", ", p["allowed_jurisdictions"]!.AsArray().Select(j => AtelierCommands.Str(j)))),
                    Markup.Escape(string.Join(", ", p["allowed_operators"]!.AsArray().Select(o => AtelierCommands.Str(o)))),
                    AtelierCommands.Str(p["min_replicas"]),
                    AtelierCommands.Str(p["require_on_prem"]),
                    AtelierCommands.Str(p["source"]),
                    AtelierCommands.Str(p["usable_here"]));
            }

            AnsiConsole.Write(table);
            Console.WriteLine($"Workspace {body["workspace"]!["name"]}: default {body["workspace"]!["default_policy"]}, allowed {string.Join(", ", body["workspace"]!["allowed_policies"]!.AsArray().Select(a => AtelierCommands.Str(a)))} (and anything stricter).");
            return 0;
        });

        var name = new Argument<string>("name") { Description = "The new policy's name." };
        var jurisdictions = new Option<string[]>("--jurisdiction") { Description = "A country code (FR), a bloc (EU, EEA) or * (repeat for several).", Required = true, AllowMultipleArgumentsPerToken = true };
        var operators = new Option<string[]>("--operator") { Description = "An operator allowed to hold the bytes (repeat; none: any).", AllowMultipleArgumentsPerToken = true };
        var replicas = new Option<int>("--min-replicas") { Description = "Copies needed.", DefaultValueFactory = _ => 1 };
        var onPrem = new Option<bool>("--require-on-prem") { Description = "One copy must be on-prem (never cloud-only)." };
        var create = new Command("create", "Define a new residency policy (operator). A name never changes meaning once defined.");
        create.Arguments.Add(name);
        create.Options.Add(jurisdictions);
        create.Options.Add(operators);
        create.Options.Add(replicas);
        create.Options.Add(onPrem);
        create.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = await api.SendAsync(
                new HttpRequestMessage(HttpMethod.Post, "/api/v1/policies")
                {
                    Content = JsonContent.Create(new
                    {
                        name = parse.GetValue(name),
                        allowed_jurisdictions = parse.GetValue(jurisdictions),
                        allowed_operators = parse.GetValue(operators) ?? [],
                        min_replicas = parse.GetValue(replicas),
                        require_on_prem = parse.GetValue(onPrem),
                    }),
                },
                cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(body);
            }

            Console.WriteLine($"Defined policy {body["name"]}.");
            return 0;
        });

        var shown = new Argument<string>("name") { Description = "The policy's name (see policies list)." };
        var show = new Command("show", "Show one residency policy: where its bytes may live, and (for the operator) which workspaces may use it.");
        show.Arguments.Add(shown);
        show.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = await api.GetJsonAsync("/api/v1/policies", cancel).ConfigureAwait(false);
            var wanted = parse.GetValue(shown)!;
            var policy = body["data"]!.AsArray().FirstOrDefault(p => AtelierCommands.Str(p!["name"]) == wanted)
                ?? throw new CliException($"No residency policy is named '{wanted}'. Defined: {string.Join(", ", body["data"]!.AsArray().Select(p => AtelierCommands.Str(p!["name"])))}.");
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(policy);
            }

            static string Joined(JsonNode? list, string none) =>
                list!.AsArray().Count == 0 ? none : string.Join(", ", list.AsArray().Select(j => AtelierCommands.Str(j)));
            Console.WriteLine($"Policy {AtelierCommands.Str(policy["name"])} ({AtelierCommands.Str(policy["source"])})");
            Console.WriteLine($"  jurisdictions:   {Joined(policy["allowed_jurisdictions"], "none")}");
            Console.WriteLine($"  operators:       {Joined(policy["allowed_operators"], "any")}");
            Console.WriteLine($"  min replicas:    {AtelierCommands.Str(policy["min_replicas"])}");
            Console.WriteLine($"  require on-prem: {(policy["require_on_prem"]!.GetValue<bool>() ? "yes (never held only in a cloud)" : "no")}");
            Console.WriteLine($"  usable here:     {(policy["usable_here"]!.GetValue<bool>() ? "yes" : "no")} (workspace {AtelierCommands.Str(body["workspace"]!["name"])})");

            // The operator sees every workspace; others see their own, already described above.
            var workspaces = await api.GetJsonAsync("/api/v1/workspaces", cancel).ConfigureAwait(false);
            var users = workspaces["data"]!.AsArray()
                .Where(w => w!["allowed_policies"]!.AsArray().Any(a => AtelierCommands.Str(a) == wanted))
                .Select(w => AtelierCommands.Str(w!["name"]) + (AtelierCommands.Str(w["default_policy"]) == wanted ? " (default)" : ""))
                .ToList();
            Console.WriteLine($"  allowed in:      {(users.Count == 0 ? "no workspace you can see" : string.Join(", ", users))}");
            return 0;
        });

        command.Subcommands.Add(list);
        command.Subcommands.Add(show);
        command.Subcommands.Add(create);
        return command;
    }

    public static Command Workspaces(ClientOptions client)
    {
        var command = new Command("workspaces", "Workspaces and the residency policies each may use (the operator governs them).");

        var list = new Command("list", "List workspaces (the operator sees all, others their own).");
        list.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = await api.GetJsonAsync("/api/v1/workspaces", cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(body);
            }

            var table = new Table().AddColumns("name", "id", "default policy", "allowed policies", "governed");
            foreach (var w in body["data"]!.AsArray())
            {
                table.AddRow(
                    Markup.Escape(AtelierCommands.Str(w!["name"])),
                    AtelierCommands.Str(w["id"]),
                    Markup.Escape(AtelierCommands.Str(w["default_policy"])),
                    Markup.Escape(string.Join(", ", w["allowed_policies"]!.AsArray().Select(a => AtelierCommands.Str(a)))),
                    AtelierCommands.Str(w["governed"]));
            }

            AnsiConsole.Write(table);
            return 0;
        });

        var name = new Argument<string>("name") { Description = "The workspace's name." };
        var defaultPolicy = new Option<string?>("--default-policy") { Description = "The policy of its uploads and new artifacts." };
        var allowed = new Option<string[]>("--allow") { Description = "A policy its members may choose (repeat; stricter ones are allowed too).", AllowMultipleArgumentsPerToken = true };

        var create = new Command("create", "Create a workspace (operator).");
        create.Arguments.Add(name);
        create.Options.Add(defaultPolicy);
        create.Options.Add(allowed);
        create.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var allow = parse.GetValue(allowed);
            var body = await api.SendAsync(
                new HttpRequestMessage(HttpMethod.Post, "/api/v1/workspaces")
                {
                    Content = JsonContent.Create(new { name = parse.GetValue(name), default_policy = parse.GetValue(defaultPolicy), allowed_policies = allow is { Length: > 0 } ? allow : null }),
                },
                cancel).ConfigureAwait(false);
            return client.WantsJson(parse) ? AtelierCommands.Print(body) : Done(body);
        });

        var set = new Command("set-policies", "Set which policies a workspace may use and its default (operator).");
        set.Arguments.Add(name);
        set.Options.Add(defaultPolicy);
        set.Options.Add(allowed);
        set.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var allow = parse.GetValue(allowed);
            var body = await api.SendAsync(
                new HttpRequestMessage(HttpMethod.Put, $"/api/v1/workspaces/{Uri.EscapeDataString(parse.GetValue(name)!)}/policies")
                {
                    Content = JsonContent.Create(new { default_policy = parse.GetValue(defaultPolicy), allowed_policies = allow is { Length: > 0 } ? allow : null }),
                },
                cancel).ConfigureAwait(false);
            return client.WantsJson(parse) ? AtelierCommands.Print(body) : Done(body);
        });

        command.Subcommands.Add(list);
        command.Subcommands.Add(create);
        command.Subcommands.Add(set);
        return command;
    }

    private static int Done(System.Text.Json.Nodes.JsonNode body)
    {
        Console.WriteLine($"Workspace {body["name"]} ({body["id"]}): default policy {body["default_policy"]}; allowed {string.Join(", ", body["allowed_policies"]!.AsArray().Select(a => AtelierCommands.Str(a)))} and anything stricter.");
        return 0;
    }
}
