using System.Text.Json;
using Atelier.Core.Errors;
using Atelier.Features.Materialization;
using Parquet.Serialization;
using static Atelier.Features.Tests.FeatureStoreFixture;

namespace Atelier.Features.Tests;

public sealed class MaterializationTests : IDisposable
{
    private readonly FeatureStoreFixture _f = new();

    public void Dispose() => _f.Dispose();

    private static readonly DateTimeOffset AsOf = T0.AddDays(1);

    private async Task PlantAsync()
    {
        await _f.CreateQualityViewAsync();
        await _f.PushAsync(
            "quality",
            Row("e1", T0, quality: 0.9, cluster: 1, contaminated: false),
            Row("e2", T0, quality: 0.95, cluster: 1, contaminated: false),   // same cluster as e1, higher quality: kept
            Row("e3", T0, quality: 0.4, cluster: 2, contaminated: false),    // below the bar
            Row("e4", T0, quality: 0.8, cluster: 3, contaminated: true),     // contaminated
            Row("e5", T0, quality: 0.7, cluster: 4),                        // contamination unknown: fails eq false
            Row("e6", T0, quality: 0.3, cluster: 5, contaminated: false),    // rises above the bar only after T
            Row("e7", T0, quality: 0.85, cluster: 6, contaminated: false),   // flagged contaminated only after T
            Row("e8", T0, quality: 0.99, contaminated: false));             // no cluster: kept on its own
        await _f.PushAsync(
            "quality",
            Row("e6", AsOf.AddSeconds(1), quality: 0.99, cluster: 5, contaminated: false),
            Row("e7", AsOf.AddHours(1), quality: 0.85, cluster: 6, contaminated: true),
            Row("e9", AsOf.AddHours(2), quality: 1.0, cluster: 7, contaminated: false)); // exists only after T
    }

    private static TrainingSetRequest Query(string name = "sft-clean") => new()
    {
        Name = name,
        AsOf = AsOf,
        Features = ["quality:quality", "quality:cluster"],
        Filters =
        [
            new FeatureFilter("quality:quality", "gt", 0.5),
            new FeatureFilter("quality:contaminated", "eq", false),
        ],
        OnePer = "quality:cluster",
        PreferHighest = "quality:quality",
    };

    [Fact]
    public async Task Materialize_QualityAboveXOnePerClusterNotContaminatedAsOfT_SelectsExactlyTheQualifyingExamples()
    {
        await PlantAsync();

        var manifest = await _f.Store.MaterializeAsync(Ws, Query(), "test", CancellationToken.None);

        Assert.Equal(8, manifest.CandidateRows); // e9 has no value as of T
        Assert.Equal(3, manifest.Rows);
        Assert.Equal(4, manifest.FilteredOut);   // e3, e4, e5, e6
        Assert.Equal(1, manifest.DeduplicatedOut); // e1
        await using var stream = await _f.Store.OpenTrainingSetBlobAsync(manifest, manifest.Examples.Key, CancellationToken.None);
        var copy = new MemoryStream();
        await stream.CopyToAsync(copy);
        copy.Position = 0;
        var read = await ParquetSerializer.DeserializeUntypedAsync(copy);
        Assert.Equal(["e2", "e7", "e8"], read.Data.Select(r => (string)r["example_id"]).ToArray());
        Assert.Equal(0.95, read.Data[0]["quality"]);
        Assert.Equal(1L, read.Data[0]["cluster"]);
        Assert.Equal(["quality", "cluster"], manifest.Columns);
    }

    [Fact]
    public async Task Materialize_RecordsLineageQueryAndPolicy_AndWritesParquetThenManifestThroughTheGuard()
    {
        await PlantAsync();
        var before = _f.Audit.LastSeq;

        var manifest = await _f.Store.MaterializeAsync(Ws, Query(), "key:test", CancellationToken.None);
        var again = await _f.Store.MaterializeAsync(Ws, Query(), "key:test", CancellationToken.None);

        Assert.Equal(1, manifest.Version);
        Assert.Equal(2, again.Version);
        var source = Assert.Single(manifest.Sources);
        Assert.Equal("quality", source.View);
        Assert.Equal(1, source.Version);

        // Only the first segment has events at or before T; the second cannot contribute.
        var segment = Assert.Single(source.Segments);
        Assert.Equal(1, segment.Seq);
        Assert.Equal((await _f.Store.SegmentsAsync(await _f.Store.GetViewAsync(Ws, "quality")))[0].Sha256, segment.Sha256);
        Assert.Equal("default", manifest.Policy.Name);
        Assert.Equal("quality:cluster", manifest.Query.OnePer);
        Assert.Equal("0.5", manifest.Query.Filters[0].Value);

        var placements = _f.Audit.Read(before, 100).Where(e => e.Type == "placement" && e.ArtifactId == manifest.Id).ToList();
        // Parquet first, manifest last.
        Assert.Equal([manifest.Examples.Sha256, await ShaAsync($"dataset/{manifest.Id}/manifest.json")], placements.Select(e => e.Sha256!).ToArray());
        Assert.All(placements, e => Assert.Equal("dataset", e.ArtifactKind));

        // The stored manifest is the catalog's, and reads back equal.
        await using var blob = await _f.Store.OpenTrainingSetBlobAsync(manifest, $"dataset/{manifest.Id}/manifest.json", CancellationToken.None);
        var stored = await JsonSerializer.DeserializeAsync<TrainingSetManifest>(blob, Storage.FeatureCatalog.Json);
        Assert.Equal(manifest.Id, stored!.Id);
        Assert.Equal(manifest.Examples, stored.Examples);
        Assert.Equal(manifest.Id, (await _f.Store.GetTrainingSetAsync(Ws, manifest.Id)).Id);
    }

    private async Task<string> ShaAsync(string key)
    {
        var s = await _f.Guard.OpenReadAsync("local", key, CancellationToken.None);
        Assert.NotNull(s);
        await using (s)
        {
            return Convert.ToHexStringLower(await System.Security.Cryptography.SHA256.HashDataAsync(s));
        }
    }

    [Fact]
    public async Task Materialize_FromViewsWithDifferentPolicies_PlacesUnderTheirIntersection()
    {
        await PlantAsync();
        await _f.Store.CreateViewAsync(Ws, new Schema.FeatureViewSpec
        {
            Name = "tox",
            EntityKey = "example_id",
            Fields = [new Schema.FeatureField("toxicity", Schema.FeatureType.Float64)],
            Policy = "eu-onprem-2",
        });
        await _f.Store.PushAsync(Ws, "tox", null, [new Dictionary<string, object?> { ["example_id"] = "e2", ["event_timestamp"] = T0, ["toxicity"] = 0.01 }], "test", CancellationToken.None);

        var manifest = await _f.Store.MaterializeAsync(Ws, Query() with { Features = ["quality:quality", "tox:toxicity"] }, "test", CancellationToken.None);

        Assert.Equal("default&eu-onprem-2", manifest.Policy.Name);
        Assert.Equal(["EU"], manifest.Policy.AllowedJurisdictions);
        Assert.True(manifest.Policy.RequireOnPrem);
        Assert.Equal(2, manifest.Policy.MinReplicas);
        Assert.Equal(["quality", "tox"], manifest.Sources.Select(s => s.View).ToArray());
    }

    [Fact]
    public async Task Materialize_ToALocationThePolicyForbids_IsRefusedAndLeavesNoDataset()
    {
        await PlantAsync();

        var error = await Assert.ThrowsAsync<PlacementRefusedException>(() =>
            _f.Store.MaterializeAsync(Ws, Query() with { Location = "us-cloud" }, "test", CancellationToken.None));

        Assert.Equal("default", error.PolicyName);
        Assert.Empty(await _f.Locations.ListKeysAsync("us-cloud", "dataset/", CancellationToken.None).ToListAsync());
        Assert.Empty(await _f.BlobKeysAsync("dataset/"));
        Assert.Empty(await _f.Store.ListTrainingSetsAsync(Ws));
    }

    [Fact]
    public async Task Materialize_WithAFilterValueOfTheWrongType_NamesTheFilterAndWritesNothing()
    {
        await PlantAsync();

        var error = await Assert.ThrowsAsync<BadRequestException>(() =>
            _f.Store.MaterializeAsync(Ws, Query() with { Filters = [new FeatureFilter("quality:quality", "gt", "high")] }, "test", CancellationToken.None));

        Assert.Contains("filters[0]", error.Message, StringComparison.Ordinal);
        Assert.Contains("float64", error.Message, StringComparison.Ordinal);
        Assert.Empty(await _f.BlobKeysAsync("dataset/"));
    }
}
