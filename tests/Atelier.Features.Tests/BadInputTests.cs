using Atelier.Core.Errors;
using Atelier.Features.Schema;
using Parquet.Schema;
using Parquet.Serialization;
using static Atelier.Features.Tests.FeatureStoreFixture;

namespace Atelier.Features.Tests;

public sealed class BadInputTests : IDisposable
{
    private readonly FeatureStoreFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Fact]
    public async Task Push_ToAnUnknownView_IsNotFoundAndWritesNothing()
    {
        await Assert.ThrowsAsync<NotFoundException>(() => _f.PushAsync("nope", Row("a", T0, quality: 1)));
        await Assert.ThrowsAsync<NotFoundException>(async () => await _f.Store.GetOnlineAsync(Ws, "nope", null, ["a"]));
        Assert.Empty(await _f.BlobKeysAsync());
    }

    [Fact]
    public async Task Push_WithASchemaMismatch_NamesTheFieldAndRow_AndWritesNothing()
    {
        var view = await _f.CreateQualityViewAsync();
        var rows = JsonRows("""
            [
              {"example_id": "a", "event_timestamp": "2026-01-01T00:00:00Z", "quality": 0.5},
              {"example_id": "b", "event_timestamp": "2026-01-01T00:00:00Z", "quality": "high"},
              {"example_id": "c", "event_timestamp": "2026-01-01T00:00:00Z", "emb": [1, 2, 3]},
              {"example_id": "d", "event_timestamp": "2026-01-01T00:00:00Z", "qualty": 0.1},
              {"example_id": "e", "event_timestamp": "yesterday"},
              {"event_timestamp": "2026-01-01T00:00:00Z"}
            ]
            """);
        var before = _f.Audit.LastSeq;

        var error = await Assert.ThrowsAsync<ValidationFailedException>(() => _f.Store.PushAsync(Ws, "quality", null, rows, "test", CancellationToken.None));

        Assert.Equal(5, error.TotalProblems);
        Assert.Equal((2L, "quality"), (error.Problems[0].Line!.Value, error.Problems[0].Field!));
        Assert.Contains("float64", error.Problems[0].Message, StringComparison.Ordinal);
        Assert.Contains("\"high\"", error.Problems[0].Message, StringComparison.Ordinal);
        Assert.Equal((3L, "emb"), (error.Problems[1].Line!.Value, error.Problems[1].Field!));
        Assert.Contains("3 elements", error.Problems[1].Message, StringComparison.Ordinal);
        Assert.Equal((4L, "qualty"), (error.Problems[2].Line!.Value, error.Problems[2].Field!));
        Assert.Equal((5L, "event_timestamp"), (error.Problems[3].Line!.Value, error.Problems[3].Field!));
        Assert.Equal((6L, "example_id"), (error.Problems[4].Line!.Value, error.Problems[4].Field!));
        Assert.Contains("line 2 quality", error.Message, StringComparison.Ordinal);

        Assert.Empty(await _f.BlobKeysAsync());
        Assert.Empty(await _f.Store.SegmentsAsync(view));
        Assert.Equal(before, _f.Audit.LastSeq);
        Assert.False((await _f.Store.GetOnlineAsync(view, ["a"]))[0].Found);
    }

    [Fact]
    public async Task CreateView_WithBadDefinition_ListsEveryProblemByField()
    {
        var error = await Assert.ThrowsAsync<ValidationFailedException>(async () => await _f.Store.CreateViewAsync(Ws, new FeatureViewSpec
        {
            Name = "9bad",
            Fields = [new FeatureField("x", FeatureType.Float32Vector), new FeatureField("x", FeatureType.Int64), new FeatureField("event_timestamp", FeatureType.Bool)],
            Policy = "martian",
        }));

        var fields = error.Problems.Select(p => p.Field).ToArray();
        Assert.Contains("name", fields);
        Assert.Contains("fields[0].dimension", fields);
        Assert.Contains("fields[1].name", fields);
        Assert.Contains("fields[2].name", fields);
        Assert.Contains("policy", fields);
        Assert.Empty(await _f.Store.ListViewsAsync(Ws));
    }

    [Fact]
    public async Task CreateView_Twice_IsIdempotent_AndADifferentSchemaMakesANewVersion()
    {
        var v1 = await _f.CreateQualityViewAsync();
        var same = await _f.CreateQualityViewAsync();
        var (v2, created) = await _f.Store.CreateViewAsync(Ws, new FeatureViewSpec { Name = "quality", EntityKey = "example_id", Fields = [new FeatureField("quality", FeatureType.Float64)] });

        Assert.Equal(v1.Id, same.Id);
        Assert.True(created);
        Assert.Equal(2, v2.Version);
        Assert.Equal(v2.Id, (await _f.Store.GetViewAsync(Ws, "quality")).Id);
        Assert.Equal(v1.Id, (await _f.Store.GetViewAsync(Ws, "quality", 1)).Id);
        await Assert.ThrowsAsync<NotFoundException>(async () => await _f.Store.GetViewAsync("other-workspace", "quality"));
    }

    [Fact]
    public async Task Push_UnderAPolicyTheLocationViolates_IsRefusedAuditedAndLeavesNoSegment()
    {
        var view = await _f.CreateQualityViewAsync(policy: "us-only");

        var error = await Assert.ThrowsAsync<PlacementRefusedException>(() => _f.PushAsync("quality", Row("a", T0, quality: 1)));

        Assert.Equal(("us-only", "local"), (error.PolicyName, error.LocationId));
        Assert.Empty(await _f.Store.SegmentsAsync(view));
        Assert.Empty(await _f.BlobKeysAsync());
        Assert.Contains(_f.Audit.Tail(5), e => e.Type == "placement_refused");
    }

    [Fact]
    public async Task Historical_WithAnUnknownFeature_NamesTheViewsFeatures()
    {
        await _f.CreateQualityViewAsync();

        var error = await Assert.ThrowsAsync<BadRequestException>(() =>
            _f.Store.GetHistoricalAsync(Ws, [new Offline.EntityRow("a", T0)], ["quality:qualty"], CancellationToken.None));

        Assert.Contains("no feature 'qualty'", error.Message, StringComparison.Ordinal);
        Assert.Contains("quality, cluster", error.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<NotFoundException>(() =>
            _f.Store.GetHistoricalAsync(Ws, [new Offline.EntityRow("a", T0)], ["ghost:x"], CancellationToken.None));
        await Assert.ThrowsAsync<BadRequestException>(() =>
            _f.Store.GetHistoricalAsync(Ws, [new Offline.EntityRow("a", T0)], ["no-colon"], CancellationToken.None));
    }
}

public sealed class ParquetIngestTests : IDisposable
{
    private readonly FeatureStoreFixture _f = new();

    public void Dispose() => _f.Dispose();

    private static async Task<MemoryStream> ParquetAsync(ParquetSchema schema, params Dictionary<string, object?>[] rows)
    {
        var stream = new MemoryStream();
        await ParquetSerializer.SerializeUntypedAsync([.. rows.Select(r => (IDictionary<string, object?>)r)], schema, stream);
        stream.Position = 0;
        return stream;
    }

    [Fact]
    public async Task Ingest_APerExampleFileWithExtraColumnsAndNoEventTime_TakesTheViewsColumnsAtTheDefaultTime()
    {
        var view = await _f.CreateQualityViewAsync();
        var schema = new ParquetSchema(
            new DataField<string>("example_id"),
            new DataField<string>("text"),
            new DataField<double>("quality"),
            new DataField<int>("cluster"),
            new ListField("emb", new DataField<float>("element")));
        using var file = await ParquetAsync(
            schema,
            new() { ["example_id"] = "x1", ["text"] = "hello", ["quality"] = 0.8, ["cluster"] = 3, ["emb"] = new List<float> { 1, 2, 3, 4 } },
            new() { ["example_id"] = "x2", ["text"] = "world", ["quality"] = 0.2, ["cluster"] = 3, ["emb"] = new List<float> { 0, 0, 0, 1 } });

        var result = await _f.Store.IngestParquetAsync(Ws, "quality", null, file, "/data/v3/features.parquet", T0, "test", CancellationToken.None);

        Assert.Equal(2, result.Rows);
        Assert.Equal("parquet:features.parquet", (await _f.Store.SegmentsAsync(view))[0].Source);
        var online = await _f.Store.GetOnlineAsync(view, ["x1", "x2"]);
        Assert.Equal(0.8, online[0].Values![0]);
        Assert.Equal(3L, online[0].Values![1]);
        Assert.Equal(T0, online[1].EventTime);
        Assert.Equal([0f, 0f, 0f, 1f], (float[])online[1].Values![4]!);
    }

    [Fact]
    public async Task Ingest_AFileWithAWronglyTypedColumn_NamesTheFieldAndRowAndFile_AndWritesNothing()
    {
        var view = await _f.CreateQualityViewAsync();
        var schema = new ParquetSchema(new DataField<string>("example_id"), new DataField<string>("quality"));
        using var file = await ParquetAsync(schema, new Dictionary<string, object?> { ["example_id"] = "x1", ["quality"] = "0.8" });

        var error = await Assert.ThrowsAsync<ValidationFailedException>(() =>
            _f.Store.IngestParquetAsync(Ws, "quality", null, file, "features.parquet", T0, "test", CancellationToken.None));

        var problem = Assert.Single(error.Problems);
        Assert.Equal(("features.parquet", 1L, "quality"), (problem.File, problem.Line!.Value, problem.Field));
        Assert.Empty(await _f.Store.SegmentsAsync(view));
        Assert.Empty(await _f.BlobKeysAsync());
    }

    [Fact]
    public async Task Ingest_BytesThatAreNotParquet_IsABadRequest()
    {
        await _f.CreateQualityViewAsync();
        using var junk = new MemoryStream("not parquet at all"u8.ToArray());

        await Assert.ThrowsAsync<BadRequestException>(() =>
            _f.Store.IngestParquetAsync(Ws, "quality", null, junk, "junk.parquet", T0, "test", CancellationToken.None));
        Assert.Empty(await _f.BlobKeysAsync());
    }
}
