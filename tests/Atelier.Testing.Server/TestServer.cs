using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text.Json;
using Atelier.Core;
using Atelier.Server.Hosting;
using Atelier.Storage.Audit;
using Atelier.Storage.Placement;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Atelier.Testing;

/// <summary>A real Atelier server on a free loopback port, over a fresh data directory.</summary>
public sealed class TestServer : IAsyncDisposable
{
    private readonly WebApplication _app;

    private readonly bool _ownsDirectory;

    private TestServer(WebApplication app, string dataDirectory, bool ownsDirectory)
    {
        _app = app;
        _ownsDirectory = ownsDirectory;
        DataDirectory = dataDirectory;
        BaseUrl = app.Urls.First();
        AdminKey = File.ReadAllText(Path.Combine(dataDirectory, DataDirectoryStartup.AdminKeyFile)).Trim();
    }

    public string DataDirectory { get; }

    public string BaseUrl { get; }

    public string AdminKey { get; }

    /// <summary>The default import root (<c>models.import_roots</c>): <c>import/</c> in the data directory, created by the server.</summary>
    public string ImportRoot => Path.Combine(DataDirectory, ModelsConfig.DefaultImportRoot);

    /// <summary>The server's services, as its endpoints get them.</summary>
    public IServiceProvider Services => _app.Services;

    /// <summary>The server's audit log.</summary>
    public AuditLog Audit => Service<AuditLog>();

    /// <summary>The server's configured locations.</summary>
    public StorageLocations Locations => Service<StorageLocations>();

    /// <summary>The server's service of type <typeparamref name="T"/>.</summary>
    public T Service<T>()
        where T : notnull => _app.Services.GetRequiredService<T>();

    /// <summary>Starts a server; <paramref name="configure"/> edits the configuration before the first start.</summary>
    public static async Task<TestServer> StartAsync(Func<AtelierConfig, AtelierConfig>? configure = null, string? dataDirectory = null, Action<ILoggingBuilder>? logging = null)
    {
        var ownsDirectory = dataDirectory is null;
        dataDirectory ??= TempDirectory.Create("atelier-server");
        if (configure is not null)
        {
            var config = configure(AtelierConfig.CreateDefault());
            File.WriteAllText(Path.Combine(dataDirectory, AtelierConfig.FileName), JsonSerializer.Serialize(config, AtelierConfig.SerializerOptions));
        }

        var app = await AtelierServer.BuildAsync(new ServerOptions { DataDirectory = dataDirectory, Port = 0 }, logging ?? (builder => builder.SetMinimumLevel(LogLevel.Warning)));
        await app.StartAsync();
        return new TestServer(app, dataDirectory, ownsDirectory);
    }

    public HttpClient Client(string? key = null)
    {
        var client = new HttpClient { BaseAddress = new Uri(BaseUrl) };
        if (key is not null || AdminKey is not null)
        {
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key ?? AdminKey);
        }

        return client;
    }

    /// <summary>Creates a member key in <paramref name="workspace"/> through the API.</summary>
    public async Task<string> CreateKeyAsync(string workspace, string role = "member")
    {
        using var client = Client();
        using var response = await client.PostAsync("/api/v1/keys", new StringContent(JsonSerializer.Serialize(new { name = "test", workspace, role }), System.Text.Encoding.UTF8, "application/json"));
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, body);
        return JsonDocument.Parse(body).RootElement.GetProperty("key").GetString()!;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();

        // A directory the test passed in is the test's (a restart test starts another server on
        // it); one this server created goes with it.
        if (_ownsDirectory)
        {
            Atelier.Testing.TestCleanup.Delete(DataDirectory);
        }
    }
}

/// <summary>Temporary directories under the system temp folder, removed at process exit.</summary>
public static class TempDirectory
{
    public static string Create(string prefix) => Atelier.Testing.TestCleanup.CreateDirectory(prefix);
}

/// <summary>Paths in the repository, found from the test's output directory.</summary>
public static class Repo
{
    public static string Root { get; } = FindRoot();

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Atelier.slnx")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("Cannot find the repository root (Atelier.slnx) above " + AppContext.BaseDirectory);
    }

    /// <summary>Runs a process to completion (bounded by <paramref name="timeout"/>) and returns its exit code and output.</summary>
    public static async Task<(int ExitCode, string Output)> RunAsync(string file, IEnumerable<string> args, string workingDirectory, IDictionary<string, string>? environment = null, TimeSpan? timeout = null)
    {
        var start = new ProcessStartInfo(file) { WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }

        foreach (var (k, v) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[k] = v;
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cancel = new CancellationTokenSource(timeout ?? TimeSpan.FromMinutes(2));
        try
        {
            await process.WaitForExitAsync(cancel.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            return (-1, "timed out\n" + await stdout + await stderr);
        }

        return (process.ExitCode, await stdout + await stderr);
    }
}
