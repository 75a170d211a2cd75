using Atelier.Catalog;

namespace Atelier.Testing.Catalog;

/// <summary>
/// What every backend of <see cref="IOnlineFeatureRows"/> must do: a test class per backend derives
/// from this and says how to open a fresh store and how to open it again.
/// </summary>
public abstract class OnlineFeatureRowsContract
{
    private static readonly DateTimeOffset T0 = new(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);

    /// <summary>A new, empty store.</summary>
    protected abstract Task<IOnlineFeatureRows> NewRowsAsync();

    /// <summary>The same store opened again, as a restarted process would.</summary>
    protected abstract Task<IOnlineFeatureRows> ReopenAsync(IOnlineFeatureRows rows);

    [Fact]
    public async Task EmptyStore_HasNoWatermark_AndNoRows()
    {
        var rows = await NewRowsAsync();
        Assert.Equal(0, await rows.WatermarkAsync("view-1"));
        Assert.Empty(await rows.GetAsync("view-1", ["a", "b"]));
        Assert.Empty(await rows.GetAsync("view-1", []));
    }

    [Fact]
    public async Task AppliedRows_AreReadBack_WithTheirEventTimeOrdinalAndBytes_AndMissingKeysAreLeftOut()
    {
        var rows = await NewRowsAsync();
        var a = Row("a", T0.AddTicks(3), 1, 0, [1, 2, 3]);
        var b = Row("b", T0.AddDays(-400), 1, 1, []);
        await rows.ApplyAsync("view-1", 1, [a, b]);

        var read = await GetAsync(rows, "view-1", "b", "a", "missing");
        Assert.Equal(2, read.Count);
        AssertRow(a, read["a"]);
        AssertRow(b, read["b"]);
        Assert.Equal(1, await rows.WatermarkAsync("view-1"));
    }

    [Fact]
    public async Task ALaterEventTime_Replaces_AndAnEarlierOne_NeverOverwritesANewerValue()
    {
        var rows = await NewRowsAsync();
        await rows.ApplyAsync("view-1", 1, [Row("k", T0, 1, 0, [1])]);

        // A backfill of older events, in a later segment: the newer value stays.
        await rows.ApplyAsync("view-1", 2, [Row("k", T0.AddTicks(-1), 2, 0, [2])]);
        AssertRow(Row("k", T0, 1, 0, [1]), (await GetAsync(rows, "view-1", "k"))["k"]);

        await rows.ApplyAsync("view-1", 3, [Row("k", T0.AddTicks(1), 3, 0, [3])]);
        AssertRow(Row("k", T0.AddTicks(1), 3, 0, [3]), (await GetAsync(rows, "view-1", "k"))["k"]);
    }

    [Fact]
    public async Task AtEqualEventTimes_TheGreaterOrdinalWins_WhicheverIsAppliedFirst()
    {
        var rows = await NewRowsAsync();
        var earlier = Row("k", T0, 5, 7, [1]);
        var later = Row("k", T0, 5, 8, [2]);

        // Within one batch, and across batches in either order.
        await rows.ApplyAsync("view-1", 5, [earlier, later]);
        AssertRow(later, (await GetAsync(rows, "view-1", "k"))["k"]);
        await rows.ApplyAsync("view-1", 5, [earlier]);
        AssertRow(later, (await GetAsync(rows, "view-1", "k"))["k"]);

        await rows.ApplyAsync("view-2", 5, [later]);
        await rows.ApplyAsync("view-2", 5, [earlier]);
        AssertRow(later, (await GetAsync(rows, "view-2", "k"))["k"]);
    }

    [Fact]
    public async Task ReplayingASegment_ChangesNothing()
    {
        var rows = await NewRowsAsync();
        var batch = new[] { Row("a", T0, 1, 0, [1]), Row("b", T0, 1, 1, [2]) };
        await rows.ApplyAsync("view-1", 1, batch);
        await rows.ApplyAsync("view-1", 2, [Row("a", T0.AddSeconds(1), 2, 0, [9])]);
        await rows.ApplyAsync("view-1", 1, batch);

        var read = await GetAsync(rows, "view-1", "a", "b");
        AssertRow(Row("a", T0.AddSeconds(1), 2, 0, [9]), read["a"]);
        AssertRow(batch[1], read["b"]);
        Assert.Equal(2, await rows.WatermarkAsync("view-1"));
    }

    [Fact]
    public async Task Watermark_MovesWithEachSegment_AndNeverBackwards_PerView()
    {
        var rows = await NewRowsAsync();
        await rows.ApplyAsync("view-1", 3, [Row("a", T0, 3, 0, [1])]);
        await rows.ApplyAsync("view-1", 2, [Row("b", T0, 2, 0, [1])]);
        await rows.ApplyAsync("view-2", 1, []);

        Assert.Equal(3, await rows.WatermarkAsync("view-1"));
        Assert.Equal(1, await rows.WatermarkAsync("view-2"));
        Assert.Equal(0, await rows.WatermarkAsync("view-3"));
    }

    [Fact]
    public async Task Views_AreIsolated_TheSameKeyHoldsOneValuePerView()
    {
        var rows = await NewRowsAsync();
        await rows.ApplyAsync("view-1", 1, [Row("k", T0, 1, 0, [1])]);
        await rows.ApplyAsync("view-2", 1, [Row("k", T0.AddDays(-1), 1, 0, [2])]);

        AssertRow(Row("k", T0, 1, 0, [1]), (await GetAsync(rows, "view-1", "k"))["k"]);
        AssertRow(Row("k", T0.AddDays(-1), 1, 0, [2]), (await GetAsync(rows, "view-2", "k"))["k"]);
        Assert.Empty(await rows.GetAsync("view-3", ["k"]));
    }

    [Fact]
    public async Task ALargeBatch_IsAppliedWhole_AndALookupOfThousandsOfKeysFindsEachOne()
    {
        var rows = await NewRowsAsync();
        var batch = Enumerable.Range(0, 2_345).Select(i => Row($"key-{i}", T0.AddSeconds(i), 1, i, BitConverter.GetBytes(i))).ToArray();
        await rows.ApplyAsync("view-1", 1, batch);

        var asked = batch.Select(r => r.EntityKey).Append("absent").ToArray();
        var read = (await rows.GetAsync("view-1", asked)).ToDictionary(r => r.EntityKey);
        Assert.Equal(batch.Length, read.Count);
        foreach (var row in batch)
        {
            AssertRow(row, read[row.EntityKey]);
        }
    }

    [Fact]
    public async Task RowsAndWatermarks_SurviveAReopen()
    {
        var rows = await NewRowsAsync();
        var row = Row("a", T0, 4, 2, [4, 2]);
        await rows.ApplyAsync("view-1", 4, [row]);

        var reopened = await ReopenAsync(rows);
        Assert.Equal(4, await reopened.WatermarkAsync("view-1"));
        AssertRow(row, (await GetAsync(reopened, "view-1", "a"))["a"]);
    }

    private static OnlineFeatureRow Row(string key, DateTimeOffset eventTime, long segment, int position, byte[] values) =>
        new(key, eventTime, (segment << 32) | (uint)position, values);

    private static async Task<Dictionary<string, OnlineFeatureRow>> GetAsync(IOnlineFeatureRows rows, string viewId, params string[] keys) =>
        (await rows.GetAsync(viewId, keys)).ToDictionary(r => r.EntityKey);

    // Field by field: the record's equality would compare the byte arrays by reference.
    private static void AssertRow(OnlineFeatureRow expected, OnlineFeatureRow actual)
    {
        Assert.Equal(expected.EntityKey, actual.EntityKey);
        Assert.Equal(expected.EventTime, actual.EventTime);
        Assert.Equal(expected.EventTime.UtcTicks, actual.EventTime.UtcTicks);
        Assert.Equal(expected.Ordinal, actual.Ordinal);
        Assert.Equal(expected.Values, actual.Values);
    }
}
