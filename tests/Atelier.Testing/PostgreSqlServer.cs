using System.Diagnostics;
using System.Net.Sockets;
using System.Globalization;
using Npgsql;

namespace Atelier.Testing;

/// <summary>
/// One real PostgreSQL server for the whole test assembly: Debian's server binaries, a cluster made
/// by <c>initdb</c> in a temporary directory, listening on a free loopback port (and on a unix socket
/// in that directory when its path is short enough). When the tests run as root, the server runs as
/// an unprivileged user (<c>postgres</c>, else <c>nobody</c>), since PostgreSQL refuses root. It is
/// started on first use and stopped, its directory removed, when the test process exits, whether
/// the tests passed or not: its own exit handler, registered when the assembly loads and so before
/// <see cref="TestCleanup"/>'s, asks the postmaster for an immediate shutdown (SIGQUIT), which stops
/// every backend with it. Killing the process tree instead races with the postmaster's children (a
/// child stopped by the tree kill's SIGSTOP and then missed stays stopped forever). A test host
/// killed outright leaves a postmaster that stops by itself within a minute once its directory is
/// gone, which the next test process's sweep of stale temporary roots makes sure of.
/// </summary>
public sealed partial class PostgreSqlServer
{
    // PostgreSQL's "immediate shutdown": the postmaster stops every backend and exits at once.
    private const int SigQuit = 3;

    // Each test makes its own database; the pools of a few tests running at once stay well below this.
    private const int MaxConnections = 300;
    private const string Superuser = "atelier";

    private static readonly Lazy<Task<PostgreSqlServer>> SharedServer = new(StartAsync);
    private static int _databases;

    private readonly Process _process;
    private readonly int _port;
    private readonly Queue<string> _log;

    private PostgreSqlServer(Process process, int port, string version, Queue<string> log)
    {
        _process = process;
        _port = port;
        _log = log;
        Version = version;
    }

    [System.Runtime.CompilerServices.ModuleInitializer]
    internal static void StopAtExit() => AppDomain.CurrentDomain.ProcessExit += (_, _) => StopShared();

    private static void StopShared()
    {
        if (!SharedServer.IsValueCreated || !SharedServer.Value.IsCompletedSuccessfully)
        {
            return;
        }

        var process = SharedServer.Value.Result._process;
        if (process.HasExited)
        {
            return;
        }

        _ = Kill(process.Id, SigQuit);
        if (!process.WaitForExit(10_000))
        {
            // The backends notice the postmaster's death and exit by themselves.
            process.Kill();
        }
    }

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "kill")]
    private static partial int Kill(int pid, int signal);

    /// <summary>The server of this test process, started on first use.</summary>
    public static Task<PostgreSqlServer> SharedAsync() => SharedServer.Value;

    /// <summary>The server's major version, as the binaries' directory names it (e.g. <c>15</c>).</summary>
    public string Version { get; }

    /// <summary>Creates an empty database and returns its connection string.</summary>
    public async Task<string> CreateDatabaseAsync(string purpose)
    {
        var name = $"t{Interlocked.Increment(ref _databases)}_{purpose.ToLowerInvariant()}";
        name = name[..Math.Min(name.Length, 60)];
        await using (var admin = new NpgsqlConnection(ConnectionString("postgres", pooling: false)))
        {
            await admin.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", admin);
            await create.ExecuteNonQueryAsync();
        }

        return ConnectionString(name, pooling: true);
    }

    /// <summary>Drops a database made by <see cref="CreateDatabaseAsync"/>, closing whatever is still connected to it.</summary>
    public async Task DropDatabaseAsync(string connectionString)
    {
        var name = new NpgsqlConnectionStringBuilder(connectionString).Database!;
        await using var admin = new NpgsqlConnection(ConnectionString("postgres", pooling: false));
        await admin.OpenAsync();
        await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)", admin);
        await drop.ExecuteNonQueryAsync();
    }

    private string ConnectionString(string database, bool pooling) => new NpgsqlConnectionStringBuilder
    {
        Host = "127.0.0.1",
        Port = _port,
        Username = Superuser,
        Database = database,
        Pooling = pooling,
        Timeout = 30,
        CommandTimeout = 60,
    }.ToString();

    private static async Task<PostgreSqlServer> StartAsync()
    {
        var (bin, version) = FindBinaries();
        var directory = TestCleanup.CreateDirectory("atelier-pg");
        var user = Environment.IsPrivilegedProcess && !OperatingSystem.IsWindows() ? UnprivilegedUser() : null;
        if (user is not null && !OperatingSystem.IsWindows())
        {
            // The server's user must reach its directory: it owns it, and every directory above it
            // lets others pass through (the test run's temporary directory may be 0700).
            MakeTraversable(Path.GetDirectoryName(directory)!);
            await RunAsync("chown", [$"{user.Value.Uid}:{user.Value.Gid}", directory], null);
        }

        var data = Path.Combine(directory, "data");
        await RunAsync(Path.Combine(bin, "initdb"), ["-D", data, "-U", Superuser, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"], user);

        // A unix socket path is limited to 107 bytes; a deep temporary directory does without one.
        var sockets = directory.Length + "/.s.PGSQL.65535".Length < 100 ? directory : "";
        for (var attempt = 1; ; attempt++)
        {
            var port = Waits.FreePort();
            var log = new Queue<string>();
            var process = Start(
                Path.Combine(bin, "postgres"),
                [
                    "-D", data, "-p", port.ToString(CultureInfo.InvariantCulture), "-k", sockets,
                    "-c", "listen_addresses=127.0.0.1",

                    // A throwaway cluster: durability is not what is tested.
                    "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                    "-c", "max_connections=" + MaxConnections.ToString(CultureInfo.InvariantCulture),
                    "-c", "shared_buffers=32MB",
                ],
                user,
                log);
            var server = new PostgreSqlServer(process, port, version, log);
            if (await server.WaitUntilReadyAsync())
            {
                return server;
            }

            // Most likely the port was taken between choosing it and binding it: try another.
            process.WaitForExit(10_000);
            if (attempt == 3)
            {
                throw new InvalidOperationException($"PostgreSQL {version} did not start: {server.Log()}");
            }
        }
    }

    private async Task<bool> WaitUntilReadyAsync()
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(90))
        {
            if (_process.HasExited)
            {
                return false;
            }

            try
            {
                await using var connection = new NpgsqlConnection(ConnectionString("postgres", pooling: false));
                await connection.OpenAsync();
                return true;
            }
            catch (Exception e) when (e is NpgsqlException or SocketException or TimeoutException)
            {
                await Task.Delay(100);
            }
        }

        _process.Kill();
        throw new TimeoutException($"PostgreSQL did not accept connections within 90 s: {Log()}");
    }

    private string Log()
    {
        lock (_log)
        {
            return string.Join('\n', _log);
        }
    }

    private static Process Start(string file, IReadOnlyList<string> arguments, (int Uid, int Gid)? user, Queue<string> log)
    {
        var process = new Process { StartInfo = Info(file, arguments, user) };
        process.StartInfo.RedirectStandardError = true;
        process.StartInfo.RedirectStandardOutput = true;

        // The server's log is read as it comes (a full pipe would stop the server) and only its last
        // lines are kept, for the message of a start that fails.
        DataReceivedEventHandler keep = (_, e) =>
        {
            if (e.Data is null)
            {
                return;
            }

            lock (log)
            {
                log.Enqueue(e.Data);
                if (log.Count > 40)
                {
                    log.Dequeue();
                }
            }
        };
        process.ErrorDataReceived += keep;
        process.OutputDataReceived += keep;
        process.Start();

        // Not given to TestCleanup's tree kill: StopShared stops it (see the class's remarks).
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        return process;
    }

    private static ProcessStartInfo Info(string file, IReadOnlyList<string> arguments, (int Uid, int Gid)? user)
    {
        // setpriv executes the program in its own place (no intermediate process), so killing the
        // process this test host started kills the postmaster itself.
        var info = new ProcessStartInfo(user is null ? file : "setpriv");
        if (user is { } u)
        {
            foreach (var a in new[] { $"--reuid={u.Uid}", $"--regid={u.Gid}", "--clear-groups", "--", file })
            {
                info.ArgumentList.Add(a);
            }
        }

        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        info.UseShellExecute = false;
        info.WorkingDirectory = "/";
        return info;
    }

    private static async Task RunAsync(string file, IReadOnlyList<string> arguments, (int Uid, int Gid)? user)
    {
        var info = Info(file, arguments, user);
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        using var process = TestCleanup.Track(Process.Start(info)!);
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(2));
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', arguments)} exited with {process.ExitCode}: {await output}{await error}");
        }
    }

    /// <summary>
    /// The newest PostgreSQL server of the machine: Debian keeps them in /usr/lib/postgresql/VERSION/bin
    /// (several may be installed); elsewhere initdb and postgres are found on the PATH.
    /// </summary>
    private static (string Bin, string Version) FindBinaries()
    {
        const string Debian = "/usr/lib/postgresql";
        if (Directory.Exists(Debian))
        {
            var newest = Directory.EnumerateDirectories(Debian)
                .Select(d => (Dir: d, Major: int.TryParse(Path.GetFileName(d), NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : -1))
                .Where(d => d.Major > 0 && File.Exists(Path.Combine(d.Dir, "bin", "initdb")) && File.Exists(Path.Combine(d.Dir, "bin", "postgres")))
                .OrderByDescending(d => d.Major)
                .FirstOrDefault();
            if (newest.Dir is not null)
            {
                return (Path.Combine(newest.Dir, "bin"), newest.Major.ToString(CultureInfo.InvariantCulture));
            }
        }

        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var initdb = Path.Combine(dir, "initdb");
            if (File.Exists(initdb) && File.Exists(Path.Combine(dir, "postgres")))
            {
                var target = new FileInfo(initdb).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? initdb;
                return (Path.GetDirectoryName(target)!, "?");
            }
        }

        throw new InvalidOperationException("No PostgreSQL server found (initdb and postgres in /usr/lib/postgresql/*/bin or on the PATH): install Debian's postgresql package, as eng/test.sh does.");
    }

    private static (int Uid, int Gid)? UnprivilegedUser()
    {
        var users = File.ReadAllLines("/etc/passwd").Select(l => l.Split(':')).Where(f => f.Length >= 4).ToDictionary(f => f[0], f => (int.Parse(f[2], CultureInfo.InvariantCulture), int.Parse(f[3], CultureInfo.InvariantCulture)));
        return users.TryGetValue("postgres", out var postgres) ? postgres
            : users.TryGetValue("nobody", out var nobody) ? nobody
            : throw new InvalidOperationException("Running as root, and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL as.");
    }

    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    private static void MakeTraversable(string directory)
    {
        for (var dir = new DirectoryInfo(directory); dir is not null; dir = dir.Parent)
        {
            var mode = File.GetUnixFileMode(dir.FullName);
            if (!mode.HasFlag(UnixFileMode.OtherExecute))
            {
                File.SetUnixFileMode(dir.FullName, mode | UnixFileMode.OtherExecute);
            }
        }
    }

}
