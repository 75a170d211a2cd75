using System.CommandLine;

namespace Atelier.Cli;

/// <summary><c>atelier login</c> and <c>atelier logout</c>: a server and its key kept for the user, so that client commands need neither flags nor a data directory.</summary>
internal static class LoginCommands
{
    public static Command Login(ClientOptions client)
    {
        var url = new Argument<string>("url") { Description = "The server's URL, e.g. https://atelier.example.org or http://127.0.0.1:8080." };
        var keyFile = new Option<FileInfo?>("--key-file") { Description = "A file holding the API key (e.g. the server's admin.key); without it, the key is read from standard input." };
        var command = new Command("login", "Check a server and key, and keep both (0600, in $XDG_CONFIG_HOME/atelier/credentials.json or ~/.config/atelier/) for the client commands that follow.");
        command.Arguments.Add(url);
        command.Options.Add(keyFile);
        command.SetAction(async (parse, cancel) =>
        {
            var server = parse.GetValue(url)!.TrimEnd('/');
            if (!Uri.TryCreate(server, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
            {
                throw new CliException($"'{server}' is not an http(s) URL.");
            }

            // Never a flag: a key on the command line is in the shell history and the process list.
            var key = parse.GetValue(keyFile) is { } file
                ? (await File.ReadAllTextAsync(file.FullName, cancel).ConfigureAwait(false)).Trim()
                : (await Console.In.ReadLineAsync(cancel).ConfigureAwait(false))?.Trim();
            if (string.IsNullOrEmpty(key))
            {
                throw new CliException("No API key: pass --key-file FILE or write the key on standard input.");
            }

            using (var api = new ApiClient(uri, key))
            {
                // Any authenticated read will do: a wrong key or URL fails here, not at the next command.
                await api.GetJsonAsync("/v1/models", cancel).ConfigureAwait(false);
            }

            new LoginFile(server, key).Write();
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(new System.Text.Json.Nodes.JsonObject { ["server"] = server, ["credentials"] = LoginFile.FilePath });
            }

            Console.WriteLine($"Logged in to {server}; the key is kept in {LoginFile.FilePath} (mode 0600).");
            return 0;
        });
        return command;
    }

    public static Command Logout()
    {
        var command = new Command("logout", "Forget the server and key that 'atelier login' kept.");
        command.SetAction(_ =>
        {
            Console.WriteLine(LoginFile.Delete() ? $"Removed {LoginFile.FilePath}." : $"Not logged in ({LoginFile.FilePath} does not exist).");
            return 0;
        });
        return command;
    }
}
