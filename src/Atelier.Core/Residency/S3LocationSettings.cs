namespace Atelier.Core.Residency;

/// <summary>
/// The settings of an S3-compatible location (<c>locations[].s3</c>) besides its <c>uri</c>. The
/// secret key is never part of <c>atelier.json</c>: it comes from a file readable by its owner only
/// (<see cref="CredentialsFile"/>) or from environment variables named here.
/// </summary>
public sealed record S3LocationSettings
{
    /// <summary>The region requests are signed for; Ceph RGW and MinIO accept <c>us-east-1</c>, their default.</summary>
    public string Region { get; init; } = "us-east-1";

    /// <summary>
    /// A file (mode 0600 or stricter, relative paths under the data directory) with the lines
    /// <c>access_key_id = …</c> and <c>secret_access_key = …</c>; a file others can read is refused.
    /// When unset, the keys come from the environment.
    /// </summary>
    public string? CredentialsFile { get; init; }

    /// <summary>The environment variable holding the access key id (<c>AWS_ACCESS_KEY_ID</c> when unset).</summary>
    public string? AccessKeyEnv { get; init; }

    /// <summary>The environment variable holding the secret access key (<c>AWS_SECRET_ACCESS_KEY</c> when unset).</summary>
    public string? SecretKeyEnv { get; init; }

    /// <summary>
    /// How old, in hours, a multipart upload must be before the start-up sweep aborts it as
    /// abandoned. Nodes share a bucket, so a younger upload may be another node's write in
    /// progress; the age must exceed the longest write plus the clocks' skew.
    /// </summary>
    public double AbandonedUploadHours { get; init; } = 24;
}
