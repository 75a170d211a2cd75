using Atelier.Server.Hosting;

namespace Atelier.Server.Tests;

public sealed class ReceiveBlockPoolTests
{
    [Fact]
    public void ReturnedBlock_IsReusedWholeAndAtItsFullSize()
    {
        using var pool = new ReceiveBlockPool();
        var first = pool.Rent(4096);
        Assert.Equal(ReceiveBlockPool.BlockSize, first.Memory.Length);
        var array = first.Memory;
        first.Dispose();
        var second = pool.Rent();
        Assert.True(array.Span == second.Memory.Span, "the returned block was not reused");
        second.Dispose();
    }

    [Fact]
    public void DisposingABlockTwice_NeverHandsItToTwoRenters()
    {
        using var pool = new ReceiveBlockPool();
        var block = pool.Rent();
        block.Dispose();
        block.Dispose();
        var a = pool.Rent();
        var b = pool.Rent();
        Assert.False(a.Memory.Span == b.Memory.Span, "one block was rented twice at once");
    }

    [Fact]
    public void RequestLargerThanABlock_IsRefused() =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new ReceiveBlockPool().Rent(ReceiveBlockPool.BlockSize + 1));

    [Fact]
    public void FreeBlocksKept_AreBounded()
    {
        using var pool = new ReceiveBlockPool();
        var rented = Enumerable.Range(0, ReceiveBlockPool.MaxRetainedBlocks + 10).Select(_ => pool.Rent()).ToList();
        var arrays = rented.Select(r => r.Memory).ToList();
        rented.ForEach(r => r.Dispose());

        // Renting them all again reuses at most the retained number; the rest are new blocks.
        var again = Enumerable.Range(0, ReceiveBlockPool.MaxRetainedBlocks + 10).Select(_ => pool.Rent()).ToList();
        var reused = again.Count(r => arrays.Any(a => a.Span == r.Memory.Span));
        Assert.Equal(ReceiveBlockPool.MaxRetainedBlocks, reused);
    }
}
