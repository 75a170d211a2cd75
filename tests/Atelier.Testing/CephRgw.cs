using System.Collections.Concurrent;
using System.Diagnostics;
using Amazon.Runtime;
using Amazon.S3;
using Atelier.Storage.S3;

namespace Atelier.Testing;

/// <summary>
/// One single-node Ceph cluster with its RADOS Gateway for every test class of the <c>ceph</c>
/// collection, started by <c>eng/ceph-rgw.sh</c> once per test run and stopped at the end. The
/// script's watcher stops it too if this process dies without disposing the fixture, so no daemon
/// or directory outlives the run. Each test class works in its own bucket. The classes are tagged
/// <c>Category=Slow</c>: the cluster takes about 20 s to start.
/// </summary>
public sealed class CephRgw : IAsyncLifetime
{
    private readonly ConcurrentDictionary<string, Lazy<Task>> _buckets = new(StringComparer.Ordinal);
    private string? _directory;

    /// <summary>The gateway, e.g. <c>http://127.0.0.1:41234</c>.</summary>
    public Uri Endpoint { get; private set; } = null!;

    /// <summary>The credentials file the script wrote (mode 0600).</summary>
    public string CredentialsFile { get; private set; } = null!;

    /// <summary>The S3 user's keys.</summary>
    public S3Credentials Credentials { get; private set; } = null!;

    /// <summary>How long the cluster took to start, as the script measured it.</summary>
    public int StartSeconds { get; private set; }

    public async Task InitializeAsync()
    {
        var script = Path.Combine(RepositoryRoot(), "eng", "ceph-rgw.sh");
        var output = await RunAsync(script, ["start", "--watch-pid", Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        var values = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(line => line.Split('=', 2))
            .Where(parts => parts.Length == 2)
            .ToDictionary(parts => parts[0], parts => parts[1], StringComparer.Ordinal);
        _directory = TestCleanup.Track(values["dir"]);
        Endpoint = new Uri(values["endpoint"]);
        CredentialsFile = values["credentials"];
        StartSeconds = int.Parse(values["seconds"], System.Globalization.CultureInfo.InvariantCulture);
        Credentials = S3Credentials.FromFile(CredentialsFile);
    }

    public async Task DisposeAsync()
    {
        if (_directory is not null)
        {
            await RunAsync(Path.Combine(RepositoryRoot(), "eng", "ceph-rgw.sh"), ["stop", _directory]);
        }
    }

    /// <summary>Creates <paramref name="bucket"/> the first time a test class asks for it.</summary>
    public Task BucketAsync(string bucket) =>
        _buckets.GetOrAdd(bucket, name => new Lazy<Task>(async () =>
        {
            using var client = NewClient();
            await client.PutBucketAsync(name);
        })).Value;

    /// <summary>A plain S3 client of the test user, for what a test checks behind the store's back.</summary>
    public AmazonS3Client NewClient() =>
        new(
            new BasicAWSCredentials(Credentials.AccessKeyId, Credentials.SecretAccessKey),
            new AmazonS3Config
            {
                ServiceURL = Endpoint.ToString(),
                ForcePathStyle = true,
                AuthenticationRegion = "us-east-1",
                UseHttp = true,
                RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
                ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
            });

    /// <summary>Options of a store in <paramref name="bucket"/> under a prefix of its own.</summary>
    public S3BlobStoreOptions StoreOptions(string bucket, string? prefix = null) => new()
    {
        Endpoint = Endpoint,
        Bucket = bucket,
        Prefix = prefix ?? "t" + Guid.NewGuid().ToString("N"),
        Credentials = Credentials,
    };

    private static async Task<string> RunAsync(string script, string[] arguments)
    {
        var start = new ProcessStartInfo(script) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"{script} did not start");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();

        // Generous: the cluster starts in about 20 s on an idle machine, much slower on a loaded one.
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{script} {string.Join(' ', arguments)} did not finish in 5 minutes: {await stderr}");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{script} {string.Join(' ', arguments)} failed ({process.ExitCode}): {await stderr}");
        }

        return await stdout;
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Atelier.slnx")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("Atelier.slnx not found above " + AppContext.BaseDirectory);
    }
}
