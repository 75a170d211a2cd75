using Atelier.Features.Offline;
using Atelier.Features.Schema;
using Parquet.Serialization;
using static Atelier.Features.Tests.FeatureStoreFixture;

namespace Atelier.Features.Tests;

public sealed class PointInTimeTests : IDisposable
{
    private readonly FeatureStoreFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Fact]
    public async Task Historical_WithValuesPlantedBeforeAndAfterT_JoinsTheLatestAtOrBeforeT_NeverALaterOne()
    {
        await _f.CreateQualityViewAsync();
        await _f.PushAsync("quality", Row("a", T0.AddHours(1), quality: 0.1), Row("a", T0.AddHours(2), quality: 0.2));

        // Pushed later, but with an event time after T: it must never show up at T.
        await _f.PushAsync("quality", Row("a", T0.AddHours(3), quality: 0.3), Row("b", T0.AddHours(5), quality: 9.0));

        var table = await _f.Store.GetHistoricalAsync(
            Ws,
            [
                new EntityRow("a", T0.AddHours(2.5)),
                new EntityRow("a", T0.AddHours(3)),     // exactly at an event time: that value counts
                new EntityRow("a", T0.AddMinutes(30)),  // before any value
                new EntityRow("b", T0.AddHours(4)),     // b's only value is from after T
                new EntityRow("nobody", T0.AddHours(9)),
            ],
            ["quality:quality"],
            CancellationToken.None);

        Assert.Equal([0.2, 0.3, null, null, null], table.Rows.Select(r => (double?)r.Values[0]).ToArray());
        Assert.Equal(["a", "a", "a", "b", "nobody"], table.Rows.Select(r => r.Key).ToArray());
    }

    [Fact]
    public async Task Historical_OnSeededRandomLogs_MatchesBruteForce_AndNeverReturnsAValueFromAfterT()
    {
        await _f.CreateQualityViewAsync();
        var random = new Random(1234);
        var planted = new List<(string Key, DateTimeOffset Time, long Order, double Quality)>();
        long order = 0;
        for (var batch = 0; batch < 8; batch++)
        {
            var rows = new List<Dictionary<string, object?>>();
            for (var i = 0; i < 150; i++)
            {
                var key = "k" + random.Next(40);

                // Coarse times make ties common: ties go to the later write.
                var time = T0.AddMinutes(random.Next(0, 100) * 10);
                var quality = Math.Round(random.NextDouble(), 6);
                rows.Add(Row(key, time, quality: quality));
                planted.Add((key, time, order++, quality));
            }

            await _f.PushAsync("quality", [.. rows]);
        }

        var entities = Enumerable.Range(0, 500)
            .Select(_ => new EntityRow("k" + random.Next(45), T0.AddMinutes(random.Next(-20, 1100))))
            .ToList();
        var table = await _f.Store.GetHistoricalAsync(Ws, entities, ["quality:quality"], CancellationToken.None);

        for (var i = 0; i < entities.Count; i++)
        {
            var e = entities[i];
            var expected = planted.Where(p => p.Key == e.EntityKey && p.Time <= e.Timestamp)
                .OrderBy(p => p.Time).ThenBy(p => p.Order).Select(p => (double?)p.Quality).LastOrDefault();
            Assert.Equal(expected, (double?)table.Rows[i].Values[0]);
            if (table.Rows[i].Values[0] is double got)
            {
                Assert.Contains(planted, p => p.Key == e.EntityKey && p.Quality == got && p.Time <= e.Timestamp);
            }
        }
    }

    [Fact]
    public async Task Historical_WithTtl_DropsValuesOlderThanTheTtl()
    {
        await _f.CreateQualityViewAsync(ttl: TimeSpan.FromHours(1));
        await _f.PushAsync("quality", Row("a", T0, quality: 0.5));

        var table = await _f.Store.GetHistoricalAsync(
            Ws,
            [new EntityRow("a", T0.AddMinutes(60)), new EntityRow("a", T0.AddMinutes(61))],
            ["quality:quality"],
            CancellationToken.None);

        Assert.Equal(0.5, table.Rows[0].Values[0]);
        Assert.Null(table.Rows[1].Values[0]);
    }

    [Fact]
    public async Task Historical_AcrossTwoViews_JoinsEachAsOfTheRowAndWritesReadableParquet()
    {
        await _f.CreateQualityViewAsync();
        await _f.Store.CreateViewAsync(Ws, new FeatureViewSpec { Name = "stats", EntityKey = "example_id", Fields = [new FeatureField("tokens", FeatureType.Int64), new FeatureField("quality", FeatureType.Float64)] });
        await _f.PushAsync("quality", Row("a", T0, quality: 0.7, emb: [1, 2, 3, 4]));
        await _f.Store.PushAsync(Ws, "stats", null, [new Dictionary<string, object?> { ["example_id"] = "a", ["event_timestamp"] = T0.AddHours(1), ["tokens"] = 42L, ["quality"] = 0.9 }], "test", CancellationToken.None);

        var table = await _f.Store.GetHistoricalAsync(
            Ws,
            [new EntityRow("a", T0.AddMinutes(30)), new EntityRow("a", T0.AddHours(2))],
            ["quality:quality", "quality:emb", "stats:tokens", "stats:quality"],
            CancellationToken.None);

        // Two views have 'quality': both get prefixed names; the others keep theirs.
        Assert.Equal(["quality__quality", "emb", "tokens", "stats__quality"], table.Columns.Select(c => c.Name).ToArray());
        Assert.Null(table.Rows[0].Values[2]);
        Assert.Equal(42L, table.Rows[1].Values[2]);

        using var parquet = new MemoryStream();
        await table.WriteParquetAsync(parquet, CancellationToken.None);
        parquet.Position = 0;
        var read = await ParquetSerializer.DeserializeUntypedAsync(parquet);
        Assert.Equal(2, read.Data.Count);
        Assert.Equal("a", read.Data[1]["example_id"]);
        Assert.Equal(42L, read.Data[1]["tokens"]);
        Assert.Equal([1f, 2f, 3f, 4f], (List<float>)read.Data[1]["emb"]);
        Assert.False(read.Data[0].ContainsKey("tokens"));
    }

    [Fact]
    public void Timeline_WithEqualEventTimes_PrefersTheLaterWrite()
    {
        var rows = new[]
        {
            (new FeatureRow("a", T0, [1L]), 2L),
            (new FeatureRow("a", T0, [2L]), 1L),
        };
        var timeline = ViewTimeline.Build(rows);
        Assert.True(timeline.TryAsOf("a", T0, null, out var row));
        Assert.Equal(1L, row.Values[0]);
    }
}
