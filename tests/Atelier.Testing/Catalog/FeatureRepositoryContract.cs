using Atelier.Catalog;

namespace Atelier.Testing.Catalog;

/// <summary>
/// What every backend of <see cref="IFeatureRepository"/> must do: a test class per backend derives
/// from this and says how to open a fresh, empty repository, so the SQLite catalog and the
/// PostgreSQL one run the same assertions.
/// </summary>
public abstract class FeatureRepositoryContract
{
    // Times the repository keeps to the millisecond (creation times) or to the tick (event times).
    private static readonly DateTimeOffset T0 = new(2026, 3, 1, 12, 0, 0, 123, TimeSpan.Zero);

    /// <summary>A new, empty repository.</summary>
    protected abstract Task<IFeatureRepository> NewRepositoryAsync();

    [Fact]
    public async Task InsertedView_IsFoundByVersionAndAsLatest_WithItsDefinitionWhole()
    {
        var repository = await NewRepositoryAsync();
        var v1 = View("ws-a", "quality", 1, "{\"fields\":[\"q\"]}");
        var v2 = View("ws-a", "quality", 2, "{\"fields\":[\"q\",\"r\"]}");
        Assert.True(await repository.TryInsertViewAsync(v1));
        Assert.True(await repository.TryInsertViewAsync(v2));

        Assert.Equal(v1, await repository.FindViewAsync("ws-a", "quality", 1));
        Assert.Equal(v2, await repository.FindViewAsync("ws-a", "quality", 2));
        Assert.Equal(v2, await repository.FindViewAsync("ws-a", "quality", null));
        Assert.Null(await repository.FindViewAsync("ws-a", "quality", 3));
        Assert.Null(await repository.FindViewAsync("ws-a", "other", null));
    }

    [Fact]
    public async Task ViewWithATakenVersionOrId_IsRefused_AndTheFirstStays()
    {
        var repository = await NewRepositoryAsync();
        var first = View("ws-a", "quality", 1, "{\"first\":true}");
        Assert.True(await repository.TryInsertViewAsync(first));

        Assert.False(await repository.TryInsertViewAsync(View("ws-a", "quality", 1, "{\"second\":true}")));
        Assert.False(await repository.TryInsertViewAsync(first with { Version = 2, Definition = "{\"same_id\":true}" }));

        Assert.Equal(first, await repository.FindViewAsync("ws-a", "quality", null));
        Assert.Single(await repository.ListViewsAsync("ws-a"));
    }

    [Fact]
    public async Task Views_AreIsolatedByWorkspace_AndListedByNameThenVersion()
    {
        var repository = await NewRepositoryAsync();
        var b2 = View("ws-a", "b", 2, "{}");
        var a1 = View("ws-a", "a", 1, "{}");
        var b1 = View("ws-a", "b", 1, "{}");
        var other = View("ws-b", "a", 1, "{\"other\":true}");
        foreach (var view in new[] { b2, a1, other, b1 })
        {
            Assert.True(await repository.TryInsertViewAsync(view));
        }

        Assert.Equal(new[] { a1, b1, b2 }, await repository.ListViewsAsync("ws-a"));
        Assert.Equal(new[] { other }, await repository.ListViewsAsync("ws-b"));
        Assert.Empty(await repository.ListViewsAsync("ws-c"));
        Assert.Equal(new[] { a1, b1, b2, other }, await repository.ListViewsAsync(null));

        // The same name in another workspace is another view.
        Assert.Equal(a1, await repository.FindViewAsync("ws-a", "a", null));
        Assert.Equal(other, await repository.FindViewAsync("ws-b", "a", null));
        Assert.Null(await repository.FindViewAsync("ws-b", "b", null));
    }

    [Fact]
    public async Task Segments_AreNumberedFromOne_ListedInOrder_AndFilteredAfterASeq()
    {
        var repository = await NewRepositoryAsync();
        Assert.Equal(1, await repository.NextSegmentSeqAsync("view-1"));

        // Inserted out of order: the list is by number, not by insertion.
        var s2 = Segment("view-1", 2);
        var s1 = Segment("view-1", 1);
        var s3 = Segment("view-1", 3);
        Assert.True(await repository.TryInsertSegmentAsync(s2));
        Assert.True(await repository.TryInsertSegmentAsync(s1));
        Assert.True(await repository.TryInsertSegmentAsync(s3));
        Assert.True(await repository.TryInsertSegmentAsync(Segment("view-2", 1)));

        Assert.Equal(4, await repository.NextSegmentSeqAsync("view-1"));
        Assert.Equal(2, await repository.NextSegmentSeqAsync("view-2"));
        Assert.Equal(new[] { s1, s2, s3 }, await repository.ListSegmentsAsync("view-1"));
        Assert.Equal(new[] { s3 }, await repository.ListSegmentsAsync("view-1", afterSeq: 2));
        Assert.Empty(await repository.ListSegmentsAsync("view-1", afterSeq: 3));
        Assert.Empty(await repository.ListSegmentsAsync("view-3"));
    }

    [Fact]
    public async Task SegmentWithATakenNumber_IsRefused_AndTheFirstStays()
    {
        var repository = await NewRepositoryAsync();
        var first = Segment("view-1", 1);
        Assert.True(await repository.TryInsertSegmentAsync(first));
        Assert.False(await repository.TryInsertSegmentAsync(first with { BlobKey = "feature/view-1/other.parquet", Rows = 99 }));
        Assert.Equal(new[] { first }, await repository.ListSegmentsAsync("view-1"));
    }

    [Fact]
    public async Task SegmentFields_RoundTrip_EventTimesToTheTick()
    {
        var repository = await NewRepositoryAsync();
        var segment = new FeatureSegment(
            "view-1", 1, "eu-west", "feature/view-1/0000000001.parquet", 12_345, 6_789_012, new string('a', 64),
            T0.AddTicks(-7), T0.AddDays(3).AddTicks(13), "parquet:shard-0.parquet", T0);
        Assert.True(await repository.TryInsertSegmentAsync(segment));
        var read = Assert.Single(await repository.ListSegmentsAsync("view-1"));
        Assert.Equal(segment, read);
        Assert.Equal(TimeSpan.Zero, read.MinEventTime.Offset);
    }

    [Fact]
    public async Task TrainingSets_AreVersionedPerName_FoundOnlyInTheirWorkspace_AndListedNewestFirst()
    {
        var repository = await NewRepositoryAsync();
        Assert.Equal(1, await repository.NextTrainingSetVersionAsync("ws-a", "clean"));
        var clean1 = TrainingSet("ts-1", "ws-a", "clean", 1, T0);
        var clean2 = TrainingSet("ts-2", "ws-a", "clean", 2, T0.AddMinutes(5));
        var other = TrainingSet("ts-3", "ws-a", "other", 1, T0.AddMinutes(1));
        var elsewhere = TrainingSet("ts-4", "ws-b", "clean", 1, T0.AddMinutes(9));
        foreach (var set in new[] { clean1, other, clean2, elsewhere })
        {
            Assert.True(await repository.TryInsertTrainingSetAsync(set));
        }

        Assert.Equal(3, await repository.NextTrainingSetVersionAsync("ws-a", "clean"));
        Assert.Equal(2, await repository.NextTrainingSetVersionAsync("ws-b", "clean"));
        Assert.Equal(clean2, await repository.FindTrainingSetAsync("ws-a", "ts-2"));
        Assert.Null(await repository.FindTrainingSetAsync("ws-b", "ts-2"));
        Assert.Null(await repository.FindTrainingSetAsync("ws-a", "ts-9"));
        Assert.Equal(new[] { clean2, other, clean1 }, await repository.ListTrainingSetsAsync("ws-a"));
        Assert.Equal(new[] { elsewhere }, await repository.ListTrainingSetsAsync("ws-b"));
    }

    [Fact]
    public async Task TrainingSetWithATakenVersionOrId_IsRefused()
    {
        var repository = await NewRepositoryAsync();
        var first = TrainingSet("ts-1", "ws-a", "clean", 1, T0);
        Assert.True(await repository.TryInsertTrainingSetAsync(first));
        Assert.False(await repository.TryInsertTrainingSetAsync(TrainingSet("ts-2", "ws-a", "clean", 1, T0)));
        Assert.False(await repository.TryInsertTrainingSetAsync(TrainingSet("ts-1", "ws-a", "clean", 2, T0)));
        Assert.Equal(new[] { first }, await repository.ListTrainingSetsAsync("ws-a"));
    }

    private static FeatureViewRecord View(string workspace, string name, int version, string definition) =>
        new($"{workspace}-{name}-{version}", workspace, name, version, definition, T0.AddMinutes(version));

    private static FeatureSegment Segment(string viewId, long seq) =>
        new(viewId, seq, "local", $"feature/{viewId}/{seq:D10}.parquet", seq * 10, seq * 1000, new string((char)('a' + (int)seq), 64),
            T0.AddHours(seq), T0.AddHours(seq + 1), "push", T0.AddSeconds(seq));

    private static TrainingSetRecord TrainingSet(string id, string workspace, string name, int version, DateTimeOffset createdAt) =>
        new(id, workspace, name, version, $"{{\"id\":\"{id}\",\"rows\":{version}}}", createdAt);
}
