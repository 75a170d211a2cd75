using System.Text;
using Atelier.Storage.Audit;

namespace Atelier.Storage.Tests;

public sealed class AuditLogTests
{
    private static string NewDirectory() => Atelier.Testing.TestCleanup.CreateDirectory("atelier-audit");

    private static async Task<string> WriteEventsAsync(int count)
    {
        var dir = NewDirectory();
        using var log = new AuditLog(dir, TimeProvider.System);
        for (var i = 0; i < count; i++)
        {
            await log.AppendAsync(new AuditEvent { Type = "placement", ArtifactId = $"a{i}", Bytes = i });
        }

        return dir;
    }

    [Fact]
    public async Task Events_AreChainedAndVerify()
    {
        var dir = await WriteEventsAsync(5);
        using var log = new AuditLog(dir, TimeProvider.System);
        var events = log.Read(0, 100);
        Assert.Equal([1L, 2, 3, 4, 5], events.Select(e => e.Seq));
        Assert.Equal(AuditLog.GenesisHash, events[0].PrevHash);
        for (var i = 1; i < events.Count; i++)
        {
            Assert.Equal(events[i - 1].Hash, events[i].PrevHash);
        }

        var verification = log.Verify();
        Assert.True(verification.Valid);
        Assert.Equal(5, verification.Events);
        Assert.Equal(events[^1].Hash, verification.HeadHash);
    }

    [Fact]
    public async Task EditedEvent_BreaksTheChainAtThatEvent()
    {
        var dir = await WriteEventsAsync(5);
        var path = Path.Combine(dir, "audit.jsonl");
        var lines = File.ReadAllLines(path);
        lines[2] = lines[2].Replace("\"bytes\":2", "\"bytes\":9", StringComparison.Ordinal);
        File.WriteAllLines(path, lines);

        using var log = new AuditLog(dir, TimeProvider.System);
        var verification = log.Verify();
        Assert.False(verification.Valid);
        Assert.Equal(3, verification.FirstBadSeq);
        Assert.Contains("edited", verification.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RemovedEvent_BreaksTheChain()
    {
        var dir = await WriteEventsAsync(5);
        var path = Path.Combine(dir, "audit.jsonl");
        var lines = File.ReadAllLines(path).ToList();
        lines.RemoveAt(1);
        File.WriteAllLines(path, lines);

        using var log = new AuditLog(dir, TimeProvider.System);
        var verification = log.Verify();
        Assert.False(verification.Valid);
        Assert.Equal(3, verification.FirstBadSeq);
    }

    [Fact]
    public async Task TornLastLine_IsCutOffAndTheChainContinues()
    {
        var dir = await WriteEventsAsync(3);
        var path = Path.Combine(dir, "audit.jsonl");
        await File.AppendAllTextAsync(path, "{\"seq\":4,\"time\":\"2026-", Encoding.UTF8);

        using (var log = new AuditLog(dir, TimeProvider.System))
        {
            Assert.Equal(3, log.LastSeq);
            var appended = await log.AppendAsync(new AuditEvent { Type = "placement" });
            Assert.Equal(4, appended.Seq);
            Assert.True(log.Verify().Valid);
        }
    }

    [Fact]
    public async Task ConcurrentAppends_KeepOneUnbrokenChain()
    {
        var dir = NewDirectory();
        using var log = new AuditLog(dir, TimeProvider.System);
        await Task.WhenAll(Enumerable.Range(0, 8).Select(t => Task.Run(async () =>
        {
            for (var i = 0; i < 25; i++)
            {
                await log.AppendAsync(new AuditEvent { Type = "placement", ArtifactId = $"{t}-{i}" });
            }
        })));
        var verification = log.Verify();
        Assert.True(verification.Valid, verification.Reason);
        Assert.Equal(200, verification.Events);
    }

    [Fact]
    public async Task Tail_ReturnsTheNewestInOrder()
    {
        var dir = await WriteEventsAsync(10);
        using var log = new AuditLog(dir, TimeProvider.System);
        Assert.Equal([8L, 9, 10], log.Tail(3).Select(e => e.Seq));
    }
}
