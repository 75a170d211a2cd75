using Atelier.Core.Residency;
using Atelier.Storage.Blobs;

namespace Atelier.Storage.S3;

/// <summary>
/// Opens S3-compatible locations (<c>"kind": "s3"</c>): the <c>uri</c> is
/// <c>http(s)://host:port/bucket[/prefix]</c>, <c>s3</c> gives the region and where the keys come
/// from (a 0600 file, or environment variables). Opening checks the settings and reads the keys,
/// so a misconfigured location fails the start, not the first write.
/// </summary>
public sealed class S3BlobStoreProvider(TimeProvider time) : IBlobStoreProvider
{
    /// <inheritdoc />
    public LocationKind Kind => LocationKind.S3Bucket;

    /// <inheritdoc />
    public IBlobStore Open(LocationDescriptor location, string dataDirectory)
    {
        ArgumentNullException.ThrowIfNull(location);
        return new S3BlobStore(location.Id, OptionsOf(location, dataDirectory), time);
    }

    /// <summary>The store options a location describes; relative credential files are under <paramref name="dataDirectory"/>.</summary>
    /// <exception cref="InvalidOperationException">The location's <c>uri</c> is not an http(s) endpoint with a bucket.</exception>
    public static S3BlobStoreOptions OptionsOf(LocationDescriptor location, string dataDirectory)
    {
        ArgumentNullException.ThrowIfNull(location);
        if (!Uri.TryCreate(location.Uri, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps)
            || uri.AbsolutePath.Trim('/').Length == 0 || uri.Query.Length > 0 || uri.UserInfo.Length > 0)
        {
            // Keys never go in the URI (user info): they would end up in atelier.json and the locations API.
            throw new InvalidOperationException(
                $"Location '{location.Id}' is of kind s3, so its uri must be http(s)://host[:port]/bucket[/prefix] (no credentials, no query); it is '{location.Uri}'.");
        }

        var path = uri.AbsolutePath.Trim('/');
        var slash = path.IndexOf('/', StringComparison.Ordinal);
        var settings = location.S3 ?? new S3LocationSettings();
        var credentials = settings.CredentialsFile is { Length: > 0 } file
            ? S3Credentials.FromFile(Path.IsPathFullyQualified(file) ? file : Path.Combine(dataDirectory, file))
            : S3Credentials.FromEnvironment(settings.AccessKeyEnv ?? S3Credentials.DefaultAccessKeyEnv, settings.SecretKeyEnv ?? S3Credentials.DefaultSecretKeyEnv);
        return new S3BlobStoreOptions
        {
            Endpoint = new Uri(uri.GetLeftPart(UriPartial.Authority)),
            Bucket = slash < 0 ? path : path[..slash],
            Prefix = slash < 0 ? "" : path[(slash + 1)..],
            Region = settings.Region,
            Credentials = credentials,
            AbandonedUploadAge = TimeSpan.FromHours(settings.AbandonedUploadHours),
        };
    }
}
