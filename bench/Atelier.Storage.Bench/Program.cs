// S3 location throughput: puts and gets of whole blobs through S3BlobStore (the path every
// placement takes), one writer and several at once, against a running S3-compatible server
// (bench/cluster-s3.sh starts a Ceph RGW). Prints RESULT lines for the script.
// Usage: Atelier.Storage.Bench --endpoint URL --credentials FILE [--bucket B] [--total-mib 512]
//        [--blob-mib 32] [--concurrency 4] [--part-mib 8]
using System.Diagnostics;
using Amazon.Runtime;
using Amazon.S3;
using Atelier.Storage.S3;

var options = new Dictionary<string, string>(StringComparer.Ordinal);
for (var i = 0; i + 1 < args.Length; i += 2)
{
    options[args[i].TrimStart('-')] = args[i + 1];
}

string Option(string name, string fallback) => options.TryGetValue(name, out var value) ? value : fallback;
var endpoint = new Uri(Option("endpoint", "http://127.0.0.1:7480"));
var credentials = S3Credentials.FromFile(Option("credentials", "s3.credentials"));
var bucket = Option("bucket", "bench");
var totalMib = int.Parse(Option("total-mib", "512"), System.Globalization.CultureInfo.InvariantCulture);
var blobMib = int.Parse(Option("blob-mib", "32"), System.Globalization.CultureInfo.InvariantCulture);
var concurrency = int.Parse(Option("concurrency", "4"), System.Globalization.CultureInfo.InvariantCulture);
var partMib = int.Parse(Option("part-mib", "8"), System.Globalization.CultureInfo.InvariantCulture);

using (var admin = new AmazonS3Client(
    new BasicAWSCredentials(credentials.AccessKeyId, credentials.SecretAccessKey),
    new AmazonS3Config { ServiceURL = endpoint.ToString(), ForcePathStyle = true, AuthenticationRegion = "us-east-1", UseHttp = true, RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED, ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED }))
{
    await admin.PutBucketAsync(bucket);
}

var blob = new byte[blobMib << 20];
new Random(42).NextBytes(blob);
var blobs = Math.Max(1, totalMib / blobMib);
Console.WriteLine($"{blobs} blobs of {blobMib} MiB ({blobs * blobMib} MiB) per run, parts of {partMib} MiB");

foreach (var writers in new[] { 1, concurrency }.Distinct())
{
    using var store = new S3BlobStore("bench", new S3BlobStoreOptions
    {
        Endpoint = endpoint,
        Bucket = bucket,
        Prefix = $"run-{writers}-{Guid.NewGuid():N}",
        Credentials = credentials,
        PartSize = partMib << 20,
    }, TimeProvider.System);

    var next = -1;
    var clock = Stopwatch.StartNew();
    await Task.WhenAll(Enumerable.Range(0, writers).Select(_ => Task.Run(async () =>
    {
        int index;
        while ((index = Interlocked.Increment(ref next)) < blobs)
        {
            await using var pending = await store.BeginWriteAsync($"blob/{index}", CancellationToken.None);

            // Written in 1 MiB pieces, as the placement guard's callers stream.
            for (var offset = 0; offset < blob.Length; offset += 1 << 20)
            {
                await pending.Stream.WriteAsync(blob.AsMemory(offset, Math.Min(1 << 20, blob.Length - offset)));
            }

            await pending.CommitAsync(CancellationToken.None);
        }
    })));
    var putSeconds = clock.Elapsed.TotalSeconds;

    next = -1;
    var buffer = new byte[1 << 20];
    long read = 0;
    clock.Restart();
    await Task.WhenAll(Enumerable.Range(0, writers).Select(_ => Task.Run(async () =>
    {
        var local = new byte[1 << 20];
        int index;
        while ((index = Interlocked.Increment(ref next)) < blobs)
        {
            await using var stream = await store.OpenReadAsync($"blob/{index}", CancellationToken.None) ?? throw new InvalidOperationException("blob missing");
            int n;
            while ((n = await stream.ReadAsync(local)) > 0)
            {
                Interlocked.Add(ref read, n);
            }
        }
    })));
    var getSeconds = clock.Elapsed.TotalSeconds;
    if (read != (long)blobs * blob.Length)
    {
        throw new InvalidOperationException($"read {read} bytes, expected {(long)blobs * blob.Length}");
    }

    var mib = (double)blobs * blobMib;
    Console.WriteLine($"RESULT writers={writers} put_mibs={mib / putSeconds:F1} get_mibs={mib / getSeconds:F1}");
    await foreach (var key in store.ListAsync("", CancellationToken.None))
    {
        await store.DeleteAsync(key, CancellationToken.None);
    }
}
