using System.Diagnostics;
using System.Text;
using Atelier.Testing;

namespace Atelier.Cluster.Tests;

/// <summary>
/// One <c>atelier serve --node NAME --cluster CONNECTION</c> process, started as an operator starts
/// it and tracked so that it never outlives the tests; its log is drained so it never blocks on a
/// full pipe.
/// </summary>
/// <param name="Process">The process.</param>
/// <param name="Url">The URL its banner printed.</param>
/// <param name="Data">Its data directory.</param>
public sealed record ServeNode(Process Process, string Url, string Data)
{
    private static readonly string Cli = Path.Combine(AppContext.BaseDirectory, "atelier.dll");

    /// <summary>Starts node <paramref name="node"/> on <paramref name="data"/> and waits for its banner (3 minutes at most).</summary>
    public static async Task<ServeNode> StartAsync(string node, string data, string connectionString)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Path.GetDirectoryName(data)! };
        foreach (var arg in new[] { Cli, "serve", "--data", data, "--port", "0", "--node", node, "--cluster", connectionString })
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["NO_COLOR"] = "1";
        var process = TestCleanup.Track(Process.Start(start)!);
        var errors = new StringBuilder();
        process.ErrorDataReceived += (_, e) =>
        {
            lock (errors)
            {
                errors.AppendLine(e.Data);
            }
        };
        process.BeginErrorReadLine();
        using var banner = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        var seen = new List<string>();
        while (await process.StandardOutput.ReadLineAsync(banner.Token) is { } line)
        {
            seen.Add(line);
            if (line.StartsWith("Atelier is listening on ", StringComparison.Ordinal))
            {
                _ = process.StandardOutput.ReadToEndAsync();
                return new ServeNode(process, line["Atelier is listening on ".Length..], data);
            }
        }

        lock (errors)
        {
            Assert.Fail($"node {node} stopped before listening:\n{string.Join('\n', seen)}\n{errors}");
        }

        throw new UnreachableException();
    }

    /// <summary>kill -9, and waits for the exit.</summary>
    public async Task KillAsync()
    {
        Process.Kill(entireProcessTree: true);
        await Process.WaitForExitAsync();
    }
}
