using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Atelier.Server.Tests;

/// <summary>
/// Kills a real <c>atelier serve</c> process with SIGKILL in the middle of an upload and checks
/// that the restart shows no file and leaves no orphan bytes.
/// </summary>
[Trait("Category", "Slow")]
public sealed class CrashRecoveryTests
{
    [Fact]
    public async Task KillDashNineMidUpload_LeavesNoVisibleFileAndNoOrphanAfterRestart()
    {
        var data = TempDirectory.Create("atelier-crash");
        var port = Waits.FreePort();
        var objects = Path.Combine(data, "blobs", "local", "objects");
        var temp = Path.Combine(data, "blobs", "local", "tmp");

        using (var server = await ServerProcess.StartAsync(data, port))
        {
            var key = File.ReadAllText(Path.Combine(data, "admin.key")).Trim();
            using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);

            var body = new StallingStream(bytesBeforeStall: 8 << 20);
            var file = new StreamContent(body, 1 << 16);
            file.Headers.ContentType = new MediaTypeHeaderValue("application/jsonl");
            using var form = new MultipartFormDataContent { { file, "file", "big.jsonl" }, { new StringContent("fine-tune"), "purpose" } };
            using var abort = new CancellationTokenSource();
            var upload = client.PostAsync("/v1/files", form, abort.Token);

            // Wait until the server has written part of the body to a pending blob.
            var deadline = Stopwatch.StartNew();
            while (!Directory.EnumerateFiles(temp).Any(f => new FileInfo(f).Length > (1 << 20)))
            {
                Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(60), "the server never started writing the upload");
                await Task.Delay(50);
            }

            server.KillHard();
            await abort.CancelAsync();
            await Assert.ThrowsAnyAsync<Exception>(() => upload);
            Assert.NotEmpty(Directory.EnumerateFiles(temp));
        }

        // A blob committed just before a crash, whose catalog row was never written.
        Directory.CreateDirectory(Path.Combine(objects, "file"));
        File.WriteAllText(Path.Combine(objects, "file", Guid.NewGuid().ToString("D")), "orphan");

        using (var restarted = await ServerProcess.StartAsync(data, port))
        {
            Assert.Contains("Recovery removed 2", restarted.Output, StringComparison.Ordinal);
            var key = File.ReadAllText(Path.Combine(data, "admin.key")).Trim();
            using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
            var list = JsonDocument.Parse(await client.GetStringAsync("/v1/files")).RootElement;
            Assert.Equal(0, list.GetProperty("total").GetInt32());
            Assert.Empty(Directory.EnumerateFiles(temp));
            Assert.Empty(Directory.EnumerateFiles(objects, "*", SearchOption.AllDirectories));

            // The server still works after recovery, and the audit chain is intact.
            using var ok = await client.PostAsync("/v1/files", FilesApiTests.Form(Encoding.UTF8.GetBytes("{\"text\":\"after the crash\"}\n"), "after.jsonl"));
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
            var verify = JsonDocument.Parse(await client.GetStringAsync("/api/v1/audit/verify")).RootElement;
            Assert.True(verify.GetProperty("valid").GetBoolean());
            restarted.Stop();
        }
    }
}

/// <summary>An <c>atelier serve</c> child process.</summary>
internal sealed class ServerProcess : IDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private ServerProcess(Process process)
    {
        _process = process;
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public static async Task<ServerProcess> StartAsync(string data, int port)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = data };
        foreach (var arg in new[] { Path.Combine(AppContext.BaseDirectory, "atelier.dll"), "serve", "--data", data, "--port", port.ToString(System.Globalization.CultureInfo.InvariantCulture) })
        {
            start.ArgumentList.Add(arg);
        }

        var server = new ServerProcess(Atelier.Testing.TestCleanup.Track(Process.Start(start)!));
        try
        {
            // Generous: a loaded CI machine (load average 10 on 2 cores) starts the server slowly.
            using var probe = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
            var deadline = Stopwatch.StartNew();
            while (deadline.Elapsed < TimeSpan.FromSeconds(180))
            {
                Assert.False(server._process.HasExited, "the server exited:\n" + server.Output);
                try
                {
                    using var health = await probe.GetAsync($"http://127.0.0.1:{port}/health");
                    if (health.IsSuccessStatusCode)
                    {
                        return server;
                    }
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
                {
                    // Not listening yet, or too busy to answer within the probe's timeout.
                }

                await Task.Delay(100);
            }

            throw new TimeoutException("The server did not answer /health within 180 s:\n" + server.Output);
        }
        catch
        {
            // Whatever failed, the process must not outlive the test.
            server.Dispose();
            throw;
        }
    }

    /// <summary>SIGKILL: no shutdown code runs, as in a crash or an OOM kill.</summary>
    public void KillHard()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }
    }

    /// <summary>SIGKILL to the server process alone, without first walking its process tree: the fastest kill.</summary>
    public void KillNow()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit();
        }
    }

    public void Stop() => KillHard();

    public void Dispose()
    {
        KillHard();
        _process.Dispose();
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }
    }
}
