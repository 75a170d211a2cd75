using System.Diagnostics.Metrics;
using Atelier.Features.Online;
using BitFaster.Caching.Scheduler;
using static Atelier.Features.Tests.FeatureStoreFixture;

namespace Atelier.Features.Tests;

public sealed class OnlineStoreTests : IDisposable
{
    private readonly FeatureStoreFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Fact]
    public async Task Online_AfterSeveralPushes_ReturnsTheLatestByEventTime_EvenWhenAnOlderEventArrivesLast()
    {
        await _f.CreateQualityViewAsync();
        await _f.PushAsync("quality", Row("a", T0.AddHours(1), quality: 0.1, lang: "fr"), Row("b", T0, quality: 0.5));
        await _f.PushAsync("quality", Row("a", T0.AddHours(3), quality: 0.3, emb: [1, 0, 0, 1]));
        await _f.PushAsync("quality", Row("a", T0.AddHours(2), quality: 0.2)); // a late backfill

        var values = await _f.Store.GetOnlineAsync(Ws, "quality", null, ["a", "b", "missing"]);

        Assert.Equal(0.3, values[0].Values![0]);
        Assert.Equal(T0.AddHours(3), values[0].EventTime);
        Assert.Null(values[0].Values![3]); // the latest row did not carry lang: no stale mix of rows
        Assert.Equal([1f, 0f, 0f, 1f], (float[])values[0].Values![4]!);
        Assert.Equal(0.5, values[1].Values![0]);
        Assert.False(values[2].Found);
    }

    [Fact]
    public async Task Online_AfterACachedLookup_APushOfANewerValueIsSeenAtOnce()
    {
        await _f.CreateQualityViewAsync();
        await _f.PushAsync("quality", Row("a", T0, quality: 0.1));
        Assert.Equal(0.1, (await _f.Store.GetOnlineAsync(Ws, "quality", null, ["a", "z"]))[0].Values![0]);
        Assert.Equal(0.1, (await _f.Store.GetOnlineAsync(Ws, "quality", null, ["a"]))[0].Values![0]); // from the cache

        await _f.PushAsync("quality", Row("a", T0.AddSeconds(1), quality: 0.9), Row("z", T0, quality: 0.4));

        var after = await _f.Store.GetOnlineAsync(Ws, "quality", null, ["a", "z"]);
        Assert.Equal(0.9, after[0].Values![0]);
        Assert.Equal(0.4, after[1].Values![0]); // a cached "absent" was dropped too
        Assert.True(_f.Store.Online.Statistics.Hits >= 1);
    }

    [Fact]
    public async Task Online_AfterACrashBeforeTheOnlineStoreCaughtUp_ReplaysCommittedSegmentsOnCatchUp()
    {
        await _f.CreateQualityViewAsync();
        await _f.PushAsync("quality", Row("a", T0, quality: 0.1));
        await _f.PushAsync("quality", Row("a", T0.AddHours(1), quality: 0.2), Row("b", T0, quality: 0.7));

        // A fresh online file stands for an online store that missed every segment.
        var (reopened, recovered) = await _f.ReopenAsync("features-online-lost.db");

        Assert.Equal(2, recovered);
        var values = await reopened.GetOnlineAsync(Ws, "quality", null, ["a", "b"]);
        Assert.Equal(0.2, values[0].Values![0]);
        Assert.Equal(0.7, values[1].Values![0]);
    }

    [Fact]
    public async Task Cache_WithSmallCapacity_KeepsTheHotKeysThroughAScanOfColdKeys()
    {
        using var f = new FeatureStoreFixture(cacheCapacity: 50, scheduler: new ForegroundScheduler());
        var view = await f.CreateQualityViewAsync();
        var rows = Enumerable.Range(0, 2000).Select(i => Row("k" + i, T0, quality: i)).ToArray();
        await f.PushAsync("quality", rows);

        var hot = Enumerable.Range(0, 20).Select(i => "k" + i).ToArray();
        for (var round = 0; round < 30; round++)
        {
            await f.Store.GetOnlineAsync(view, hot);
            f.Store.Online.DoCacheMaintenance();
        }

        // A one-pass scan of 1,500 cold keys: an LRU would end up holding only scan keys.
        for (var i = 500; i < 2000; i += 10)
        {
            await f.Store.GetOnlineAsync(view, [.. Enumerable.Range(i, 10).Select(j => "k" + j)]);
            f.Store.Online.DoCacheMaintenance();
        }

        var stats = f.Store.Online.Statistics;
        Assert.True(stats.Count <= 50, $"cache holds {stats.Count} entries, capacity 50");
        Assert.True(stats.Evicted > 0);
        var stillHot = hot.Count(k => f.Store.Online.IsCached(view.Id, k));
        Assert.True(stillHot >= 18, $"only {stillHot} of 20 hot keys survived the scan");
    }

}

/// <summary>Runs alone: a meter listener hears every store in the process.</summary>
[CollectionDefinition("metrics", DisableParallelization = true)]
public sealed class MetricsCollection;

[Collection("metrics")]
public sealed class FeatureMetricsTests : IDisposable
{
    private readonly FeatureStoreFixture _f = new();

    public void Dispose() => _f.Dispose();

    [Fact]
    public async Task Cache_Lookups_AreCountedOnTheAtelierMeter()
    {
        var view = await _f.CreateQualityViewAsync();
        await _f.PushAsync("quality", Row("a", T0, quality: 0.1));
        long hits = 0, misses = 0;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == FeatureMetrics.MeterName && instrument.Name.StartsWith("atelier_feature_cache_", StringComparison.Ordinal))
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, _, _) =>
        {
            if (instrument.Name == "atelier_feature_cache_hits")
            {
                Interlocked.Add(ref hits, value);
            }
            else if (instrument.Name == "atelier_feature_cache_misses")
            {
                Interlocked.Add(ref misses, value);
            }
        });
        listener.Start();

        await _f.Store.GetOnlineAsync(view, ["a", "b"]);
        await _f.Store.GetOnlineAsync(view, ["a", "b", "a"]);

        Assert.Equal(2, Interlocked.Read(ref misses));
        Assert.Equal(3, Interlocked.Read(ref hits));
        Assert.Equal(0.6, _f.Store.Online.Statistics.HitRatio, 3);
    }
}
