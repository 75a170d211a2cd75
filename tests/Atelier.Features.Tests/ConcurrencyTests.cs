using BitFaster.Caching.Scheduler;
using static Atelier.Features.Tests.FeatureStoreFixture;

namespace Atelier.Features.Tests;

public sealed class ConcurrencyTests
{
    [Fact]
    public async Task Online_WithLookupsRacingPushes_EndsWithTheLatestValueOfEveryKey_NeverAStaleCachedOne()
    {
        using var f = new FeatureStoreFixture(cacheCapacity: 1000, scheduler: new ThreadPoolScheduler());
        var view = await f.CreateQualityViewAsync();
        var keys = Enumerable.Range(0, 50).Select(i => "k" + i).ToArray();
        using var done = new CancellationTokenSource();

        var readers = Enumerable.Range(0, 2).Select(_ => Task.Run(async () =>
        {
            var random = new Random(99);
            while (!done.IsCancellationRequested)
            {
                await f.Store.GetOnlineAsync(view, [keys[random.Next(keys.Length)], keys[random.Next(keys.Length)]]);
            }
        })).ToArray();

        for (var round = 1; round <= 40; round++)
        {
            await f.PushAsync("quality", [.. keys.Select(k => Row(k, T0.AddSeconds(round), quality: round))]);
        }

        await done.CancelAsync();
        await Task.WhenAll(readers);

        var values = await f.Store.GetOnlineAsync(view, keys);
        Assert.All(values, v => Assert.Equal(40.0, v.Values![0]));
    }
}
