using System.Text.Json;
using Atelier.Core;
using Atelier.Core.Residency;
using Atelier.Testing;

namespace Atelier.Storage.S3.Tests;

/// <summary>How an S3 location is configured and where its keys come from; no server needed.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class S3LocationSettingsTests : IDisposable
{
    private readonly string _directory = TestCleanup.CreateDirectory("atelier-s3-settings");

    public void Dispose() => TestCleanup.Delete(_directory);

    [Theory]
    [InlineData(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead)]
    [InlineData(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead)]
    [InlineData(UnixFileMode.UserRead | UnixFileMode.GroupWrite)]
    public void ACredentialsFileOthersCanReach_IsRefused_NamingTheFix(UnixFileMode mode)
    {
        var path = WriteCredentials("access_key_id = AK\nsecret_access_key = SECRET\n", mode);
        var e = Assert.Throws<UnauthorizedAccessException>(() => S3Credentials.FromFile(path));
        Assert.Contains("chmod 600", e.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("SECRET", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ACredentialsFileOfItsOwnerOnly_IsRead_AndItsSecretNeverPrinted()
    {
        var path = WriteCredentials("# ceph\n[default]\naws_access_key_id = AK1\naws_secret_access_key = s3cr3t=with=equals\nregion = x\n", UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var credentials = S3Credentials.FromFile(path);
        Assert.Equal("AK1", credentials.AccessKeyId);
        Assert.Equal("s3cr3t=with=equals", credentials.SecretAccessKey);
        Assert.DoesNotContain("s3cr3t", credentials.ToString(), StringComparison.Ordinal);
        Assert.Equal("AK1", S3Credentials.FromFile(WriteCredentials("access_key_id=AK1\nsecret_access_key=x\n", UnixFileMode.UserRead)).AccessKeyId);
    }

    [Theory]
    [InlineData("access_key_id = AK\n")]
    [InlineData("access_key_id = AK\naccess_key_id = AK2\nsecret_access_key = S\n")]
    [InlineData("[a]\naccess_key_id = AK\nsecret_access_key = S\n[b]\n")]
    [InlineData("access_key_id AK\nsecret_access_key = S\n")]
    public void ACredentialsFileThatIsIncompleteOrAmbiguous_IsRefused(string content)
    {
        var path = WriteCredentials(content, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        Assert.Throws<InvalidDataException>(() => S3Credentials.FromFile(path));
    }

    [Fact]
    public void KeysFromTheEnvironment_AreReadFromTheNamedVariables_AndMissingOnesNameTheVariables()
    {
        var access = "ATELIER_TEST_S3_ACCESS_" + Guid.NewGuid().ToString("N");
        var secret = "ATELIER_TEST_S3_SECRET_" + Guid.NewGuid().ToString("N");
        var e = Assert.Throws<InvalidOperationException>(() => S3Credentials.FromEnvironment(access, secret));
        Assert.Contains(access, e.Message, StringComparison.Ordinal);
        Environment.SetEnvironmentVariable(access, "AK-ENV");
        Environment.SetEnvironmentVariable(secret, "SK-ENV");
        try
        {
            var location = Location($"http://127.0.0.1:7480/bucket", new S3LocationSettings { AccessKeyEnv = access, SecretKeyEnv = secret });
            var options = S3BlobStoreProvider.OptionsOf(location, _directory);
            Assert.Equal("AK-ENV", options.Credentials.AccessKeyId);
            Assert.Equal("SK-ENV", options.Credentials.SecretAccessKey);
        }
        finally
        {
            Environment.SetEnvironmentVariable(access, null);
            Environment.SetEnvironmentVariable(secret, null);
        }
    }

    [Fact]
    public void TheUri_GivesEndpointBucketAndPrefix_AndARelativeCredentialsFileIsInTheDataDirectory()
    {
        WriteCredentials("access_key_id = AK\nsecret_access_key = S\n", UnixFileMode.UserRead | UnixFileMode.UserWrite, "ceph.credentials");
        var options = S3BlobStoreProvider.OptionsOf(
            Location("https://rgw.example.org:8443/atelier-eu/node-a/blobs", new S3LocationSettings { CredentialsFile = "ceph.credentials", Region = "eu-paris", AbandonedUploadHours = 6 }),
            _directory);
        Assert.Equal(new Uri("https://rgw.example.org:8443"), options.Endpoint);
        Assert.Equal("atelier-eu", options.Bucket);
        Assert.Equal("node-a/blobs", options.Prefix);
        Assert.Equal("eu-paris", options.Region);
        Assert.Equal(TimeSpan.FromHours(6), options.AbandonedUploadAge);

        var whole = S3BlobStoreProvider.OptionsOf(Location("http://127.0.0.1:7480/bucket/", new S3LocationSettings { CredentialsFile = "ceph.credentials" }), _directory);
        Assert.Equal("bucket", whole.Bucket);
        Assert.Equal("", whole.Prefix);
    }

    [Theory]
    [InlineData("blobs/s3")]
    [InlineData("s3://bucket")]
    [InlineData("http://127.0.0.1:7480")]
    [InlineData("http://127.0.0.1:7480/")]
    [InlineData("http://AK:SECRET@127.0.0.1:7480/bucket")]
    [InlineData("http://127.0.0.1:7480/bucket?x-amz-security-token=t")]
    public void AUriThatIsNotAnEndpointWithABucket_IsRefusedAtOpen(string uri)
    {
        WriteCredentials("access_key_id = AK\nsecret_access_key = S\n", UnixFileMode.UserRead | UnixFileMode.UserWrite, "ceph.credentials");
        var e = Assert.Throws<InvalidOperationException>(() => S3BlobStoreProvider.OptionsOf(Location(uri, new S3LocationSettings { CredentialsFile = "ceph.credentials" }), _directory));
        Assert.DoesNotContain("SECRET", e.Message.Replace(uri, "", StringComparison.Ordinal), StringComparison.Ordinal);
    }

    [Fact]
    public void AnS3Location_RoundTripsThroughAtelierJson_AsKindS3_AndALocalOneGainsNoS3Field()
    {
        var config = AtelierConfig.CreateDefault() with
        {
            Locations =
            [
                .. AtelierConfig.CreateDefault().Locations,
                Location("http://127.0.0.1:7480/bucket", new S3LocationSettings { CredentialsFile = "ceph.credentials" }),
            ],
        };
        var json = JsonSerializer.Serialize(config, AtelierConfig.SerializerOptions);
        using var document = JsonDocument.Parse(json);
        var locations = document.RootElement.GetProperty("locations");
        Assert.Equal("local_directory", locations[0].GetProperty("kind").GetString());
        Assert.False(locations[0].TryGetProperty("s3", out _));
        Assert.Equal("s3", locations[1].GetProperty("kind").GetString());
        Assert.Equal("ceph.credentials", locations[1].GetProperty("s3").GetProperty("credentials_file").GetString());
        var back = JsonSerializer.Deserialize<AtelierConfig>(json, AtelierConfig.SerializerOptions)!;
        Assert.Equal(config.Locations[1], back.Locations[1] with { Blocs = config.Locations[1].Blocs });
    }

    private static LocationDescriptor Location(string uri, S3LocationSettings settings) =>
        new() { Id = "s3", Kind = LocationKind.S3Bucket, Uri = uri, Country = "FR", Blocs = ["EU"], S3 = settings };

    private string WriteCredentials(string content, UnixFileMode mode, string? name = null)
    {
        var path = Path.Combine(_directory, name ?? Guid.NewGuid().ToString("N"));
        File.WriteAllText(path, content);
        File.SetUnixFileMode(path, mode);
        return path;
    }
}
