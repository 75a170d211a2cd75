using System.Text.Json;
using Amazon.S3.Model;
using Atelier.Core;
using Atelier.Core.Errors;
using Atelier.Core.Residency;
using Atelier.Storage.Audit;
using Atelier.Storage.Blobs;
using Atelier.Storage.Placement;
using Atelier.Testing;

namespace Atelier.Storage.S3.Tests;

/// <summary>
/// S3 locations behind the placement guard, configured as <c>atelier.json</c> says and opened by
/// the provider: an EU on-prem Ceph bucket and a US cloud bucket, with one audit log.
/// </summary>
[Collection(CephCollection.Name)]
[Trait("Category", "Slow")]
public sealed class S3PlacementTests(CephRgw ceph) : IDisposable
{
    private static readonly ResidencyPolicy EuOnly = new() { Name = "eu-only", AllowedJurisdictions = ["EU"] };
    private readonly string _data = TestCleanup.CreateDirectory("atelier-s3-guard");
    private AuditLog? _audit;

    public void Dispose()
    {
        _audit?.Dispose();
        TestCleanup.Delete(_data);
    }

    [Fact]
    public async Task AWriteToAnS3LocationThePolicyForbids_IsRefusedAndAudited_AndNoByteReachesTheBucket()
    {
        var guard = await GuardAsync();
        var artifact = new ArtifactRef("checkpoint", "job-1@10", "team-a");
        var error = await Assert.ThrowsAsync<PlacementRefusedException>(async () =>
            await guard.BeginWriteAsync(artifact, EuOnly, "us-s3", "system", existingCopies: [guard.Locations.Describe("ceph-eu")]));
        Assert.Equal("us-s3", error.LocationId);
        Assert.Equal("eu-only", error.PolicyName);

        var refusal = Assert.Single(_audit!.Read(0, 10));
        Assert.Equal("placement_refused", refusal.Type);
        Assert.Equal("job-1@10", refusal.ArtifactId);
        Assert.Equal("us-s3", refusal.Location);

        // Nothing at all reached the US bucket: no object, no multipart upload (not even one started).
        using var client = ceph.NewClient();
        var objects = await client.ListObjectsV2Async(new ListObjectsV2Request { BucketName = "placement-us" });
        Assert.Empty(objects.S3Objects ?? []);
        var uploads = await client.ListMultipartUploadsAsync(new ListMultipartUploadsRequest { BucketName = "placement-us" });
        Assert.Empty(uploads.MultipartUploads ?? []);
    }

    [Fact]
    public async Task AWriteToAnS3LocationThePolicyAllows_LandsInTheBucket_AndIsAuditedWithItsHash()
    {
        var guard = await GuardAsync();
        var bytes = S3BlobStoreTests.Pattern(70_000);
        PlacementReceipt receipt;
        await using (var write = await guard.BeginWriteAsync(new ArtifactRef("file", "file-1", "team-a"), EuOnly, "ceph-eu", "key:k"))
        {
            await write.WriteAsync(bytes, CancellationToken.None);
            receipt = await write.CommitAsync(CancellationToken.None);
        }

        Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes)), Assert.Single(_audit!.Read(0, 10)).Sha256);
        Assert.Equal(bytes, await S3BlobStoreTests.ReadAllAsync(await guard.OpenReadAsync("ceph-eu", receipt.Key, CancellationToken.None)));
        using var client = ceph.NewClient();
        var head = await client.GetObjectMetadataAsync("placement-eu", "atelier/" + receipt.Key);
        Assert.Equal(bytes.Length, head.ContentLength);
    }

    private async Task<PlacementGuard> GuardAsync()
    {
        await ceph.BucketAsync("placement-eu");
        await ceph.BucketAsync("placement-us");

        // The locations as an operator writes them in atelier.json: keys in a 0600 file, named by path.
        var json = $$"""
            {
              "locations": [
                { "id": "ceph-eu", "kind": "s3", "uri": "{{ceph.Endpoint.GetLeftPart(UriPartial.Authority)}}/placement-eu/atelier",
                  "country": "FR", "blocs": ["EU", "EEA"], "on_prem": true, "operator": "self",
                  "s3": { "credentials_file": "{{ceph.CredentialsFile}}" } },
                { "id": "us-s3", "kind": "s3", "uri": "{{ceph.Endpoint.GetLeftPart(UriPartial.Authority)}}/placement-us",
                  "country": "US", "on_prem": false, "operator": "cloud",
                  "s3": { "credentials_file": "{{ceph.CredentialsFile}}", "region": "us-east-1" } }
              ]
            }
            """;
        var config = JsonSerializer.Deserialize<AtelierConfig>(json, AtelierConfig.SerializerOptions)!;
        Assert.All(config.Locations, l => Assert.Equal(LocationKind.S3Bucket, l.Kind));
        var locations = new StorageLocations(config.Locations, _data, [new LocalDirectoryBlobStoreProvider(), new S3BlobStoreProvider(TimeProvider.System)]);
        _audit = new AuditLog(Path.Combine(_data, "audit"), TimeProvider.System);
        return new PlacementGuard(locations, _audit);
    }
}
