namespace Atelier.Storage.S3;

/// <summary>Where an <see cref="S3BlobStore"/> keeps its bytes and how it writes them.</summary>
public sealed record S3BlobStoreOptions
{
    /// <summary>The smallest part S3 accepts in a multipart upload, except the last.</summary>
    public const int MinPartSize = 5 * 1024 * 1024;

    /// <summary>The service endpoint, e.g. <c>http://127.0.0.1:7480</c>; requests are path-style (<c>endpoint/bucket/key</c>).</summary>
    public required Uri Endpoint { get; init; }

    /// <summary>The bucket. It must exist: Atelier never creates or deletes buckets.</summary>
    public required string Bucket { get; init; }

    /// <summary>A key prefix (<c>a/b</c>, no slashes at either end) under which this location's blobs live; empty for the whole bucket.</summary>
    public string Prefix { get; init; } = "";

    /// <summary>The region requests are signed for.</summary>
    public string Region { get; init; } = "us-east-1";

    /// <summary>The key pair.</summary>
    public required S3Credentials Credentials { get; init; }

    /// <summary>
    /// Bytes buffered per part of a multipart upload (at least <see cref="MinPartSize"/>). A blob
    /// no longer than this is committed with one conditional PUT; a longer one is uploaded part by
    /// part while it is written.
    /// </summary>
    public int PartSize { get; init; } = 8 * 1024 * 1024;

    /// <summary>
    /// Parts of one write uploading at once while the next fills: each holds a part buffer, so a
    /// large write keeps up to this many plus one parts in memory.
    /// </summary>
    public int PartsInFlight { get; init; } = 4;

    /// <summary>Keys asked for per listing request (S3 returns at most 1000).</summary>
    public int ListPageSize { get; init; } = 1000;

    /// <summary>
    /// How old a multipart upload must be before <see cref="S3BlobStore.RemoveOrphansAsync"/> aborts
    /// it. The bucket may be shared by nodes, and a younger upload may be another node's write in
    /// progress: the age must exceed the longest write plus the skew between the clocks.
    /// </summary>
    public TimeSpan AbandonedUploadAge { get; init; } = TimeSpan.FromHours(24);
}
