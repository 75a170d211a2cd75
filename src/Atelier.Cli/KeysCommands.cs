using System.CommandLine;
using System.Net.Http.Json;
using Spectre.Console;

namespace Atelier.Cli;

/// <summary><c>atelier keys create|list|revoke</c>.</summary>
internal static class KeysCommands
{
    public static Command Build(ClientOptions client)
    {
        var command = new Command("keys", "API keys (an admin key manages its workspace's; the operator's key any workspace's).");

        var name = new Option<string>("--name") { Description = "A label for the key.", DefaultValueFactory = _ => "key" };
        var workspace = new Option<string?>("--workspace") { Description = "Workspace the key acts in (created if new; default: your own)." };
        var role = new Option<string>("--role") { Description = "member, admin, or (operator only) operator.", DefaultValueFactory = _ => "member" };
        role.AcceptOnlyFromAmong("member", "admin", "operator");
        var create = new Command("create", "Create an API key. It is printed once and stored only as a hash.");
        create.Options.Add(name);
        create.Options.Add(workspace);
        create.Options.Add(role);
        create.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = await api.SendAsync(
                new HttpRequestMessage(HttpMethod.Post, "/api/v1/keys")
                {
                    Content = JsonContent.Create(new { name = parse.GetValue(name), workspace = parse.GetValue(workspace), role = parse.GetValue(role) }),
                },
                cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(body);
            }

            Console.WriteLine($"Created key {body["id"]} ({body["role"]}) in workspace {body["workspace"]}.");
            Console.WriteLine("Store it now; it is not shown again:");
            Console.WriteLine(body["key"]);
            return 0;
        });

        var list = new Command("list", "List API keys (never their secrets).");
        list.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = await api.GetJsonAsync("/api/v1/keys", cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(body);
            }

            var table = new Table().AddColumns("id", "workspace", "name", "role", "created", "revoked");
            table.Columns[0].NoWrap();
            foreach (var k in body["data"]!.AsArray())
            {
                table.AddRow(
                    AtelierCommands.Str(k!["id"]),
                    AtelierCommands.Str(k["workspace"]),
                    Markup.Escape(AtelierCommands.Str(k["name"])),
                    AtelierCommands.Str(k["role"]),
                    Time(k["created_at"]?.GetValue<long>()),
                    Time(k["revoked_at"]?.GetValue<long?>()));
            }

            AnsiConsole.Write(table);
            return 0;
        });

        var id = new Argument<string>("id") { Description = "The key id (as listed)." };
        var revoke = new Command("revoke", "Revoke an API key; it stops working at once.");
        revoke.Arguments.Add(id);
        revoke.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            await api.SendAsync(new HttpRequestMessage(HttpMethod.Delete, $"/api/v1/keys/{Uri.EscapeDataString(parse.GetValue(id)!)}"), cancel).ConfigureAwait(false);
            Console.WriteLine($"Revoked key {parse.GetValue(id)}.");
            return 0;
        });

        command.Subcommands.Add(create);
        command.Subcommands.Add(list);
        command.Subcommands.Add(revoke);
        return command;
    }

    internal static string Time(long? unixSeconds) =>
        unixSeconds is { } s ? DateTimeOffset.FromUnixTimeSeconds(s).ToString("yyyy-MM-dd HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture) : "";
}
