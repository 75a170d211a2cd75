using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Serialization;
using Atelier.Core.IO;
using Atelier.Server.Hosting;

namespace Atelier.Cli;

/// <summary>
/// <c>&lt;data&gt;/server.json</c>: where the running <c>atelier serve</c> of a data directory listens,
/// written (0600, atomically) once it listens and removed when it stops cleanly, so that client
/// commands run beside it need no <c>--server</c>.
/// </summary>
/// <param name="Url">The URL it answers at (loopback when bound to every address).</param>
/// <param name="Pid">Its process id: a file left by a process that is gone is stale.</param>
internal sealed record ServerFile(
    [property: JsonPropertyName("url")] string Url,
    [property: JsonPropertyName("pid")] int Pid)
{
    public const string FileName = "server.json";

    public static string PathIn(string dataDirectory) => Path.Combine(dataDirectory, FileName);

    public void Write(string dataDirectory) =>
        AtomicFile.WriteAllBytes(PathIn(dataDirectory), JsonSerializer.SerializeToUtf8Bytes(this), DataDirectoryPermissions.FileMode);

    /// <summary>Removes the file if it is still this process's (a later server may have replaced it).</summary>
    public static void RemoveOwn(string dataDirectory)
    {
        if (Read(dataDirectory) is { } file && file.Pid == Environment.ProcessId)
        {
            File.Delete(PathIn(dataDirectory));
        }
    }

    public static ServerFile? Read(string dataDirectory)
    {
        try
        {
            return JsonSerializer.Deserialize<ServerFile>(File.ReadAllBytes(PathIn(dataDirectory)));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException)
        {
            return null;
        }
    }

    /// <summary>Whether the process that wrote it still runs.</summary>
    public bool IsAlive()
    {
        try
        {
            using var process = Process.GetProcessById(Pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}

/// <summary>
/// What <c>atelier login</c> stores: a server and its key, in <c>credentials.json</c> (0600) in the
/// user's configuration directory (<c>$XDG_CONFIG_HOME/atelier</c>, else <c>~/.config/atelier</c>; 0700).
/// </summary>
/// <param name="Server">The server's URL.</param>
/// <param name="ApiKey">The key.</param>
internal sealed record LoginFile(
    [property: JsonPropertyName("server")] string Server,
    [property: JsonPropertyName("api_key")] string ApiKey)
{
    public static string DirectoryPath =>
        Path.Combine(
            Environment.GetEnvironmentVariable("XDG_CONFIG_HOME") is { Length: > 0 } xdg
                ? xdg
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".config"),
            "atelier");

    public static string FilePath => Path.Combine(DirectoryPath, "credentials.json");

    public static LoginFile? Read()
    {
        try
        {
            return JsonSerializer.Deserialize<LoginFile>(File.ReadAllBytes(FilePath));
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
        catch (JsonException e)
        {
            throw new CliException($"{FilePath} is not a login file ({e.Message}); run 'atelier logout' and 'atelier login' again.");
        }
    }

    public void Write()
    {
        // The directory too is the user's alone: the key is a credential.
        DataDirectoryPermissions.CreatePrivateDirectory(DirectoryPath);
        if (!OperatingSystem.IsWindows())
        {
            // An existing directory keeps its mode through CreateDirectory: tightened here.
            File.SetUnixFileMode(DirectoryPath, DataDirectoryPermissions.DirectoryMode);
        }
        AtomicFile.WriteAllBytes(FilePath, JsonSerializer.SerializeToUtf8Bytes(this), DataDirectoryPermissions.FileMode);
    }

    public static bool Delete()
    {
        if (!File.Exists(FilePath))
        {
            return false;
        }

        File.Delete(FilePath);
        return true;
    }
}

/// <summary>
/// Which server and key a client command uses, each from the first of: the flag, the environment,
/// the login file, the data directory's running server (<c>server.json</c>) and operator key
/// (<c>admin.key</c>).
/// </summary>
internal static class ServerDiscovery
{
    public static (Uri Url, string Key) Resolve(string? serverFlag, string? keyFlag, string dataDirectory)
    {
        var login = serverFlag is null || keyFlag is null ? LoginFile.Read() : null;
        var url = serverFlag ?? Env("ATELIER_URL") ?? login?.Server;
        string? problem = null;
        if (url is null)
        {
            var running = ServerFile.Read(dataDirectory);
            if (running is not null && running.IsAlive())
            {
                url = running.Url;
            }
            else
            {
                problem = running is null
                    ? $"no server is running from {dataDirectory} ({ServerFile.PathIn(dataDirectory)} does not exist)"
                    : $"the server that wrote {ServerFile.PathIn(dataDirectory)} (pid {running.Pid}) is no longer running";
            }
        }

        // The login's key goes only to the login's server: a key is never sent to another.
        var key = keyFlag ?? Env("ATELIER_API_KEY") ?? (login is not null && url is not null && SameServer(login.Server, url) ? login.ApiKey : null);
        if (key is null)
        {
            var keyFile = Path.Combine(dataDirectory, DataDirectoryStartup.AdminKeyFile);
            if (File.Exists(keyFile))
            {
                key = File.ReadAllText(keyFile).Trim();
            }
            else
            {
                problem = problem is null ? $"no API key ({keyFile} does not exist)" : problem + $", and {keyFile} does not exist";
            }
        }

        if (url is null || key is null)
        {
            throw new CliException(
                $"No Atelier server to talk to: {problem}. Either:\n" +
                $"  - run this where 'atelier serve' runs (it writes {ServerFile.FileName} and {DataDirectoryStartup.AdminKeyFile} in ./atelier-data), or pass --data DIR / set ATELIER_DATA to its data directory;\n" +
                "  - run 'atelier login URL' once (key from --key-file or stdin), stored in " + LoginFile.FilePath + ";\n" +
                "  - set ATELIER_URL and ATELIER_API_KEY;\n" +
                "  - pass --server URL and --api-key KEY.");
        }

        return (new Uri(url), key);
    }

    private static bool SameServer(string a, string b) =>
        Uri.TryCreate(a, UriKind.Absolute, out var x) && Uri.TryCreate(b, UriKind.Absolute, out var y) && Uri.Compare(x, y, UriComponents.SchemeAndServer, UriFormat.Unescaped, StringComparison.OrdinalIgnoreCase) == 0;

    private static string? Env(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } value ? value : null;
}
