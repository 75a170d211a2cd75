using Atelier.Modeling.Kernels;

namespace Atelier.Modeling.Tests;

[Collection(GlobalKernelSettings.Name)]
public class PagedAttentionTests
{
    [Theory]
    [InlineData(null, 8)]
    [InlineData(5, 8)]
    [InlineData(null, 64)] // the head size whose values are accumulated in registers
    [InlineData(5, 64)]
    public void PagedForward_EqualsContiguousAttention_WhenBlocksAreScattered(int? window, int hd)
    {
        const int heads = 4, kvHeads = 2, bs = 4, keys = 19, poolBlocks = 9;
        var kvWidth = kvHeads * hd;
        var q = TestData.Uniform(keys * heads * hd, 1);
        var k = TestData.Uniform(keys * kvWidth, 2);
        var v = TestData.Uniform(keys * kvWidth, 3);

        // Scatter the sequence's positions over the pool in a shuffled block order.
        int[] table = [7, 2, 5, 0, 8];
        var kPool = new float[poolBlocks * bs * kvWidth];
        var vPool = new float[poolBlocks * bs * kvWidth];
        for (var p = 0; p < keys; p++)
        {
            var slot = (table[p / bs] * bs) + (p % bs);
            k.AsSpan(p * kvWidth, kvWidth).CopyTo(kPool.AsSpan(slot * kvWidth));
            v.AsSpan(p * kvWidth, kvWidth).CopyTo(vPool.AsSpan(slot * kvWidth));
        }

        var lo = new int[keys];
        var hi = new int[keys];
        for (var t = 0; t < keys; t++)
        {
            lo[t] = window is { } w ? Math.Max(0, t - w + 1) : 0;
            hi[t] = t;
        }

        var expected = new float[q.Length];
        Attention.Forward(new Attention.Shape(keys, keys, heads, kvHeads, hd), q, k, v, lo, hi, expected, new float[heads * keys]);
        var actual = new float[q.Length];
        Attention.PagedForward(new Attention.PagedShape(keys, heads, kvHeads, hd, bs), q, kPool, vPool, table, new int[keys], lo, hi, actual);
        for (var i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(expected[i] - actual[i]) < 1e-5, $"element {i}: {expected[i]} vs {actual[i]}");
        }

        // A row computed on its own gives the same bits as inside the whole call.
        var last = keys - 1;
        var single = new float[heads * hd];
        Attention.PagedForward(new Attention.PagedShape(1, heads, kvHeads, hd, bs), q.AsSpan(last * heads * hd, heads * hd), kPool, vPool, table, [0], [lo[last]], [hi[last]], single);
        Assert.Equal(actual.AsSpan(last * heads * hd).ToArray(), single);
    }

    [Fact]
    public void PagedForward_RejectsABlockOutsideThePool()
    {
        var pool = new float[2 * 4 * 8];
        Assert.Throws<ArgumentOutOfRangeException>(() => Attention.PagedForward(new Attention.PagedShape(1, 1, 1, 8, 4),
            new float[8], pool, pool, [3], [0], [0], [0], new float[8]));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void MultiplyBatchInvariant_GivesEachRowTheSameBits_WhateverTheRowCount(bool transB)
    {
        const int n = 70, k = 300;
        var a = TestData.Uniform(37 * k, 4);
        var b = TestData.Uniform(n * k, 5);
        var all = new float[37 * n];
        Sgemm.MultiplyBatchInvariant(false, transB, 37, n, k, 1f, a, k, b, transB ? k : n, 0f, all, n);
        foreach (var row in new[] { 0, 11, 12, 36 })
        {
            var one = new float[n];
            Sgemm.MultiplyBatchInvariant(false, transB, 1, n, k, 1f, a.AsSpan(row * k, k), k, b, transB ? k : n, 0f, one, n);
            Assert.Equal(all.AsSpan(row * n, n).ToArray(), one);
            var three = new float[3 * n];
            var start = Math.Min(row, 34);
            Sgemm.MultiplyBatchInvariant(false, transB, 3, n, k, 1f, a.AsSpan(start * k, 3 * k), k, b, transB ? k : n, 0f, three, n);
            Assert.Equal(all.AsSpan(start * n, 3 * n).ToArray(), three);
        }
    }

    [Theory]
    [InlineData(1, 70, 300)]
    [InlineData(5, 4100, 300)]
    [InlineData(13, 33, 17)]
    public void MultiplyBatchInvariant_WithPackedWeights_GivesTheBitsOfTheUnpackedProduct(int m, int n, int k)
    {
        var a = TestData.Uniform(m * k, 6);
        var w = TestData.Uniform(n * k, 7);
        var c0 = TestData.Uniform(m * n, 8);
        var expected = (float[])c0.Clone();
        Sgemm.MultiplyBatchInvariant(false, true, m, n, k, 0.5f, a, k, w, k, 1f, expected, n);
        using var packed = new PackedMatrix(w, n, k);
        var actual = (float[])c0.Clone();
        Sgemm.MultiplyBatchInvariant(m, 0.5f, a, k, packed, 1f, actual, n);
        Assert.Equal(expected, actual);
    }
}
