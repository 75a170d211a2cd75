using System.Text.Json.Serialization;
using Atelier.Features.Materialization;
using Atelier.Features.Schema;
using Parquet.Serialization;
using static Atelier.Features.Tests.FeatureStoreFixture;

namespace Atelier.Features.Tests;

/// <summary>
/// The data pipeline's per-example feature files (Atelier.Data's <c>ExampleFeatures</c>, written as
/// <c>features/part-NNNNN.parquet</c>) feed a view directly: the columns here mirror that class.
/// </summary>
public sealed class DataPipelineIngestTests : IDisposable
{
    private readonly FeatureStoreFixture _f = new();

    public void Dispose() => _f.Dispose();

    public sealed class PipelineFeatures
    {
        [JsonPropertyName("ordinal")]
        public long Ordinal { get; set; }

        [JsonPropertyName("source_file")]
        public string SourceFile { get; set; } = "";

        [JsonPropertyName("drop_reason")]
        public string? DropReason { get; set; }

        [JsonPropertyName("token_count")]
        public int TokenCount { get; set; }

        [JsonPropertyName("dedup_cluster")]
        public long DedupCluster { get; set; }

        [JsonPropertyName("contaminated")]
        public bool Contaminated { get; set; }

        [JsonPropertyName("quality_alphabetic_fraction")]
        public double QualityAlphabeticFraction { get; set; }
    }

    [Fact]
    public async Task Ingest_ThePipelinesPerExampleFeatures_ThenMaterialise_OnePerDedupClusterNotContaminatedAboveAQualityBar()
    {
        await _f.Store.CreateViewAsync(Ws, new FeatureViewSpec
        {
            Name = "pipeline",
            EntityKey = "ordinal",
            Source = FeatureSourceKind.Parquet,
            Fields =
            [
                new FeatureField("token_count", FeatureType.Int64),
                new FeatureField("dedup_cluster", FeatureType.Int64),
                new FeatureField("contaminated", FeatureType.Bool),
                new FeatureField("quality_alphabetic_fraction", FeatureType.Float64),
                new FeatureField("drop_reason", FeatureType.String),
            ],
        });
        var random = new Random(2026);
        var examples = Enumerable.Range(0, 200).Select(i => new PipelineFeatures
        {
            Ordinal = i,
            SourceFile = "train.jsonl",
            TokenCount = random.Next(10, 500),
            DedupCluster = i / 4,               // clusters of 4
            Contaminated = i % 10 == 3,
            QualityAlphabeticFraction = Math.Round(random.NextDouble(), 3),
        }).ToList();
        using var file = new MemoryStream();
        await ParquetSerializer.SerializeAsync(examples, file);
        file.Position = 0;

        var pushed = await _f.Store.IngestParquetAsync(Ws, "pipeline", null, file, "features/part-00000.parquet", T0, "test", CancellationToken.None);
        var manifest = await _f.Store.MaterializeAsync(Ws, new TrainingSetRequest
        {
            Name = "clean",
            AsOf = T0,
            Features = ["pipeline:token_count", "pipeline:quality_alphabetic_fraction"],
            Filters = [new FeatureFilter("pipeline:contaminated", "eq", false), new FeatureFilter("pipeline:quality_alphabetic_fraction", "gte", 0.5)],
            OnePer = "pipeline:dedup_cluster",
            PreferHighest = "pipeline:quality_alphabetic_fraction",
        }, "test", CancellationToken.None);

        var expected = examples
            .Where(e => !e.Contaminated && e.QualityAlphabeticFraction >= 0.5)
            .GroupBy(e => e.DedupCluster)
            .Select(g => g.OrderByDescending(e => e.QualityAlphabeticFraction).ThenBy(e => e.Ordinal.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparer.Ordinal).First())
            .Select(e => e.Ordinal.ToString(System.Globalization.CultureInfo.InvariantCulture))
            .Order(StringComparer.Ordinal)
            .ToArray();
        Assert.Equal(200, pushed.Rows);
        Assert.Equal(expected.Length, manifest.Rows);
        await using var blob = await _f.Store.OpenTrainingSetBlobAsync(manifest, manifest.Examples.Key, CancellationToken.None);
        var copy = new MemoryStream();
        await blob.CopyToAsync(copy);
        copy.Position = 0;
        var read = await ParquetSerializer.DeserializeUntypedAsync(copy);
        Assert.Equal(expected, read.Data.Select(r => (string)r["ordinal"]).ToArray());
        Assert.Equal("parquet:part-00000.parquet", (await _f.Store.SegmentsAsync(await _f.Store.GetViewAsync(Ws, "pipeline")))[0].Source);
    }

    [Fact]
    public async Task EntityDataframe_FromParquet_ReadsKeysAndTimestamps()
    {
        var schema = new Parquet.Schema.ParquetSchema(new Parquet.Schema.DataField<string>("example_id"), new Parquet.Schema.DataField<DateTime>("ts"));
        using var file = new MemoryStream();
        await ParquetSerializer.SerializeUntypedAsync(
            [new Dictionary<string, object?> { ["example_id"] = "a", ["ts"] = new DateTime(2026, 1, 2, 3, 4, 5, DateTimeKind.Utc) }],
            schema,
            file);
        file.Position = 0;

        var rows = await FeatureStore.ReadEntityRowsAsync(file, "example_id", "ts", CancellationToken.None);

        var row = Assert.Single(rows);
        Assert.Equal(new Offline.EntityRow("a", new DateTimeOffset(2026, 1, 2, 3, 4, 5, TimeSpan.Zero)), row);
    }
}
