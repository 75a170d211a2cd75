using System.Collections.Concurrent;
using System.Net;
using System.Runtime.CompilerServices;
using Amazon.Runtime;
using Amazon.S3;
using Amazon.S3.Model;
using Atelier.Core.Errors;
using Atelier.Storage.Blobs;

namespace Atelier.Storage.S3;

/// <summary>
/// A location that is a bucket (or a key prefix of one) on an S3-compatible store: Ceph's RADOS
/// Gateway, MinIO or AWS S3, addressed path-style. Committed blobs are plain objects under
/// <c>prefix/key</c>, so any S3 tool reads them.
/// </summary>
/// <remarks>
/// <para>
/// A write starts a multipart upload at once (<see cref="BeginWriteAsync"/>), so that a write a
/// crash abandons is visible to the orphan sweep, and uploads full parts, several at once, while
/// the caller writes. The commit is one request that S3 applies atomically: a blob of at most one part is
/// committed by a <c>PUT</c> with <c>If-None-Match: *</c> (the upload, never completed, is then
/// aborted); a longer one by completing the upload, also with <c>If-None-Match: *</c>, after a
/// <c>HEAD</c> that finds the key free. Ceph RGW 16 honours the condition on <c>PUT</c>, so a
/// single-part create is conditional on the server; it ignores it on completion, so two writers
/// completing multipart uploads of one key within the same instant can both succeed, the later
/// replacing the former (decision 0017 bounds that race).
/// </para>
/// <para>
/// The orphan sweep aborts multipart uploads under the prefix older than
/// <see cref="S3BlobStoreOptions.AbandonedUploadAge"/>, never one this store itself has in
/// progress; other nodes' writes in progress are protected by the age alone.
/// </para>
/// </remarks>
public sealed partial class S3BlobStore : IBlobStore, IDisposable
{
    private readonly AmazonS3Client _client;
    private readonly S3BlobStoreOptions _options;
    private readonly TimeProvider _time;
    private readonly string _prefix;

    // Upload ids of this store's writes in progress: the sweep never aborts them, whatever their age.
    private readonly ConcurrentDictionary<string, byte> _inProgress = new(StringComparer.Ordinal);

    /// <summary>Opens the store of location <paramref name="locationId"/>; nothing is sent until the first operation.</summary>
    public S3BlobStore(string locationId, S3BlobStoreOptions options, TimeProvider time)
    {
        ArgumentException.ThrowIfNullOrEmpty(locationId);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(time);
        ArgumentException.ThrowIfNullOrEmpty(options.Bucket);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.PartSize, S3BlobStoreOptions.MinPartSize);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.ListPageSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.PartsInFlight, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.AbandonedUploadAge, TimeSpan.Zero);
        if (options.Prefix.Length > 0)
        {
            BlobKey.Validate(options.Prefix);
        }

        LocationId = locationId;
        _options = options;
        _time = time;
        _prefix = options.Prefix.Length == 0 ? "" : options.Prefix + "/";
        var config = new AmazonS3Config
        {
            ServiceURL = options.Endpoint.ToString(),
            ForcePathStyle = true,
            AuthenticationRegion = options.Region,
            UseHttp = options.Endpoint.Scheme == Uri.UriSchemeHttp,

            // The SDK's default trailing checksums (aws-chunked bodies with a CRC trailer) are newer
            // than many S3-compatible servers, Ceph RGW 16 among them: checksums only where required.
            RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
            ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
        };
        _client = new AmazonS3Client(new BasicAWSCredentials(options.Credentials.AccessKeyId, options.Credentials.SecretAccessKey), config);
    }

    /// <inheritdoc />
    public string LocationId { get; }

    /// <summary>The bucket.</summary>
    public string Bucket => _options.Bucket;

    /// <summary>The key prefix of this location's blobs in the bucket, ending with <c>/</c>, or empty.</summary>
    public string Prefix => _prefix;

    /// <inheritdoc />
    public async ValueTask<Stream?> OpenReadAsync(string key, CancellationToken cancellationToken)
    {
        BlobKey.Validate(key);
        return await GetAsync(key, range: null, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async ValueTask<Stream?> OpenReadRangeAsync(string key, long offset, long? length, CancellationToken cancellationToken)
    {
        BlobKey.Validate(key);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        if (length is < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(length), length, "A range length is zero or more.");
        }

        if (length == 0)
        {
            // HTTP has no empty range: the answer is whether the blob exists.
            return await GetLengthAsync(key, cancellationToken).ConfigureAwait(false) is null ? null : new MemoryStream([], writable: false);
        }

        if (offset == 0 && length is null)
        {
            return await GetAsync(key, range: null, cancellationToken).ConfigureAwait(false);
        }

        // An HTTP range is inclusive at both ends; "bytes=N-" reads to the end.
        var range = length is null ? new ByteRange($"bytes={offset}-") : new ByteRange(offset, checked(offset + length.Value - 1));
        return await GetAsync(key, range, cancellationToken).ConfigureAwait(false);
    }

    private async Task<Stream?> GetAsync(string key, ByteRange? range, CancellationToken cancellationToken)
    {
        GetObjectResponse response;
        try
        {
            response = await _client.GetObjectAsync(new GetObjectRequest { BucketName = _options.Bucket, Key = _prefix + key, ByteRange = range }, cancellationToken).ConfigureAwait(false);
        }
        catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
        catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable)
        {
            // The blob exists and the range starts at or after its end: as a local file, nothing to read.
            return new MemoryStream([], writable: false);
        }
        catch (Exception e) when (IsUnavailable(e))
        {
            throw Unavailable(e);
        }

        return new ResponseBodyStream(response.ResponseStream, response, response.ContentLength);
    }

    /// <inheritdoc />
    public async ValueTask<long?> GetLengthAsync(string key, CancellationToken cancellationToken)
    {
        BlobKey.Validate(key);
        return await HeadAsync(_prefix + key, cancellationToken).ConfigureAwait(false);
    }

    private async Task<long?> HeadAsync(string objectKey, CancellationToken cancellationToken)
    {
        try
        {
            var metadata = await _client.GetObjectMetadataAsync(new GetObjectMetadataRequest { BucketName = _options.Bucket, Key = objectKey }, cancellationToken).ConfigureAwait(false);
            return metadata.ContentLength;
        }
        catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
        catch (Exception e) when (IsUnavailable(e))
        {
            throw Unavailable(e);
        }
    }

    // The endpoint did not answer, or answered with an error that is not "no such key": the bytes
    // may well be there, but not reachable now. A storage error of its own (503, and readers that
    // know another copy fall back to it), not the SDK's exception (a 500).
    private static bool IsUnavailable(Exception e) =>
        e is HttpRequestException or System.Net.Sockets.SocketException or TimeoutException or AmazonServiceException;

    private StorageUnavailableException Unavailable(Exception e) =>
        new($"S3 location '{LocationId}' ({_options.Endpoint.GetLeftPart(UriPartial.Authority)}, bucket {_options.Bucket}) could not be read: {e.Message}", e);

    /// <inheritdoc />
    /// <remarks>
    /// S3's <c>DELETE</c> answers the same whether or not the object existed, so a <c>HEAD</c> says
    /// which it was; a concurrent delete of the same key may make both callers see true.
    /// </remarks>
    public async ValueTask<bool> DeleteAsync(string key, CancellationToken cancellationToken)
    {
        BlobKey.Validate(key);
        if (await HeadAsync(_prefix + key, cancellationToken).ConfigureAwait(false) is null)
        {
            return false;
        }

        await _client.DeleteObjectAsync(new DeleteObjectRequest { BucketName = _options.Bucket, Key = _prefix + key }, cancellationToken).ConfigureAwait(false);
        return true;
    }

    /// <inheritdoc />
    /// <remarks>
    /// Pages through <c>ListObjectsV2</c>. S3 lists keys in UTF-8 byte order, which is ordinal
    /// order for the ASCII keys <see cref="BlobKey"/> allows. Uploads in progress are not objects,
    /// so only committed blobs are listed.
    /// </remarks>
    public async IAsyncEnumerable<string> ListAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        string? continuation = null;
        do
        {
            ListObjectsV2Response page;
            try
            {
                page = await _client.ListObjectsV2Async(
                    new ListObjectsV2Request { BucketName = _options.Bucket, Prefix = _prefix + prefix, MaxKeys = _options.ListPageSize, ContinuationToken = continuation },
                    cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e) when (IsUnavailable(e))
            {
                throw Unavailable(e);
            }

            foreach (var item in page.S3Objects ?? [])
            {
                yield return item.Key[_prefix.Length..];
            }

            continuation = page.IsTruncated == true ? page.NextContinuationToken : null;
        }
        while (continuation is not null);
    }

    /// <inheritdoc />
    /// <remarks>
    /// Aborts the multipart uploads under this location's prefix that were started more than
    /// <see cref="S3BlobStoreOptions.AbandonedUploadAge"/> ago (by the server's clock, against this
    /// store's), except this store's own writes in progress. An upload another node is still
    /// writing is younger than the age, so it stays.
    /// </remarks>
    public async ValueTask<int> RemoveOrphansAsync(CancellationToken cancellationToken)
    {
        var cutoff = _time.GetUtcNow() - _options.AbandonedUploadAge;
        var removed = 0;
        string? keyMarker = null;
        string? uploadIdMarker = null;
        while (true)
        {
            var page = await _client.ListMultipartUploadsAsync(
                new ListMultipartUploadsRequest { BucketName = _options.Bucket, Prefix = _prefix, KeyMarker = keyMarker, UploadIdMarker = uploadIdMarker },
                cancellationToken).ConfigureAwait(false);
            foreach (var upload in page.MultipartUploads ?? [])
            {
                if (_inProgress.ContainsKey(upload.UploadId) || upload.Initiated is not { } initiated || new DateTimeOffset(DateTime.SpecifyKind(initiated.ToUniversalTime(), DateTimeKind.Utc)) > cutoff)
                {
                    continue;
                }

                if (await AbortAsync(upload.Key, upload.UploadId, cancellationToken).ConfigureAwait(false))
                {
                    removed++;
                }
            }

            if (page.IsTruncated != true)
            {
                return removed;
            }

            keyMarker = page.NextKeyMarker;
            uploadIdMarker = page.NextUploadIdMarker;
        }
    }

    /// <summary>Aborts a multipart upload; false when it was gone already (completed, or aborted by someone else).</summary>
    private async Task<bool> AbortAsync(string objectKey, string uploadId, CancellationToken cancellationToken)
    {
        try
        {
            await _client.AbortMultipartUploadAsync(new AbortMultipartUploadRequest { BucketName = _options.Bucket, Key = objectKey, UploadId = uploadId }, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.NotFound)
        {
            return false;
        }
    }

    /// <summary>Closes the client's connections.</summary>
    public void Dispose() => _client.Dispose();
}
