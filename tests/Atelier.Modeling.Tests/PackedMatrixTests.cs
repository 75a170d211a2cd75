using Atelier.Modeling.Kernels;

namespace Atelier.Modeling.Tests;

/// <summary>
/// The packed-weight product in float32 and bf16: bf16 storage widens exactly, so a bf16 <see cref="PackedMatrix"/>
/// must give the bits of the float32 one holding the widened values, on every kernel and loop order.
/// </summary>
[Collection(GlobalKernelSettings.Name)]
public class PackedMatrixTests
{
    /// <summary>bf16 bit patterns of values in [-1, 1) (the upper halves of float32 values), with exact zeros and a tiny value mixed in.</summary>
    private static ushort[] BFloat16(int count, int seed)
    {
        var x = TestData.Uniform(count, seed);
        var bits = new ushort[count];
        for (var i = 0; i < count; i++)
        {
            bits[i] = (ushort)(BitConverter.SingleToUInt32Bits(x[i]) >> 16);
        }

        bits[0] = 0;
        bits[count / 2] = 0x8000; // -0
        bits[count - 1] = 0x0001; // the smallest subnormal
        return bits;
    }

    private static float[] Widen(ushort[] bits) => bits.Select(b => BitConverter.UInt32BitsToSingle((uint)b << 16)).ToArray();

    private static float[] Product(int m, float alpha, float[] a, int k, PackedMatrix w, float beta, float[] c0)
    {
        var c = (float[])c0.Clone();
        Sgemm.MultiplyBatchInvariant(m, alpha, a, k, w, beta, c, w.Rows);
        return c;
    }

    public static TheoryData<int, int, float, float> Shapes => new()
    {
        { 70, 300, 1f, 0f },
        { 33, 513, 0.5f, 1f },
        { 1000, 40, -1.5f, 0.25f },
        { 32, 256, 1f, -1f },
        { 260, 600, 1f, 1f },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void FromBFloat16_GivesTheBitsOfTheWidenedFloat32Matrix_ForEveryRowCountKernelAndLoopOrder(int n, int k, float alpha, float beta)
    {
        var bits = BFloat16(n * k, 11);
        using var bf16 = PackedMatrix.FromBFloat16(bits, n, k);
        var wide = Widen(bits);
        using var fp32 = new PackedMatrix(wide, n, k);
        var a = TestData.Uniform(40 * k, 12);
        var c0 = TestData.Uniform(40 * n, 13);
        var savedRows = Sgemm.PanelOuterMaxRows;
        var savedThreads = KernelParallelism.MaxThreads;
        try
        {
            foreach (var force256 in new[] { false, true })
            {
                Sgemm.ForceVector256 = force256;
                for (var m = 1; m <= 40; m++)
                {
                    // The reference: the unpacked product on the widened values, blocked loop, every thread.
                    KernelParallelism.MaxThreads = savedThreads;
                    var expected = (float[])c0.Clone();
                    Sgemm.MultiplyBatchInvariant(false, true, m, n, k, alpha, a, k, wide, k, beta, expected, n);
                    foreach (var panelOuterRows in new[] { 0, 4, 40 })
                    {
                        foreach (var threads in new[] { 1, 2, 3 })
                        {
                            Sgemm.PanelOuterMaxRows = panelOuterRows;
                            KernelParallelism.MaxThreads = threads;
                            Assert.Equal(expected, Product(m, alpha, a, k, fp32, beta, c0));
                            Assert.Equal(expected, Product(m, alpha, a, k, bf16, beta, c0));
                        }
                    }
                }
            }
        }
        finally
        {
            Sgemm.ForceVector256 = false;
            Sgemm.PanelOuterMaxRows = savedRows;
            KernelParallelism.MaxThreads = savedThreads;
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void FromBFloat16_GivesEachRowTheSameBits_WhateverTheRowCountAndPlace(bool force256)
    {
        const int n = 100, k = 530, rows = 37;
        using var w = PackedMatrix.FromBFloat16(BFloat16(n * k, 21), n, k);
        var a = TestData.Uniform(rows * k, 22);
        try
        {
            Sgemm.ForceVector256 = force256;
            var all = Product(rows, 1f, a, k, w, 0f, new float[rows * n]);
            foreach (var row in new[] { 0, 4, 11, 12, 31, 36 })
            {
                var one = new float[n];
                Sgemm.MultiplyBatchInvariant(1, 1f, a.AsSpan(row * k, k), k, w, 0f, one, n);
                Assert.Equal(all.AsSpan(row * n, n).ToArray(), one);
                var start = Math.Min(row, rows - 5);
                var five = new float[5 * n];
                Sgemm.MultiplyBatchInvariant(5, 1f, a.AsSpan(start * k, 5 * k), k, w, 0f, five, n);
                Assert.Equal(all.AsSpan(start * n, 5 * n).ToArray(), five);
            }
        }
        finally
        {
            Sgemm.ForceVector256 = false;
        }
    }

    [Fact]
    public void ACopyOfTwoMebibytesOrMore_AlignedForHugePages_GivesTheBitsOfTheUnpackedProduct()
    {
        // Past 2 MiB a packed copy is 2 MiB aligned and asks Linux for huge pages (PackedMatrix.AllocateStreamed):
        // the layout inside it is unchanged, so the bits must be too.
        const int n = 1056, k = 1024;
        var bits = BFloat16(n * k, 21);
        using var bf16 = PackedMatrix.FromBFloat16(bits, n, k);
        var wide = Widen(bits);
        using var fp32 = new PackedMatrix(wide, n, k);
        Assert.True(bf16.StorageBytes >= 2 << 20);
        var a = TestData.Uniform(32 * k, 22);
        var c0 = TestData.Uniform(32 * n, 23);
        var savedThreads = KernelParallelism.MaxThreads;
        try
        {
            foreach (var m in new[] { 1, 7, 32 })
            {
                KernelParallelism.MaxThreads = savedThreads;
                var expected = (float[])c0.Clone();
                Sgemm.MultiplyBatchInvariant(false, true, m, n, k, 1f, a, k, wide, k, 0.5f, expected, n);
                foreach (var threads in new[] { 1, 2 })
                {
                    KernelParallelism.MaxThreads = threads;
                    Assert.Equal(expected, Product(m, 1f, a, k, fp32, 0.5f, c0));
                    Assert.Equal(expected, Product(m, 1f, a, k, bf16, 0.5f, c0));
                }
            }
        }
        finally
        {
            KernelParallelism.MaxThreads = savedThreads;
        }
    }

    [Fact]
    public void StorageBytes_IsTwoBytesAValueForBFloat16AndFourForFloat32_OverWholeSlivers()
    {
        const int n = 70, k = 9;
        using var bf16 = PackedMatrix.FromBFloat16(new ushort[n * k], n, k);
        using var fp32 = new PackedMatrix(new float[n * k], n, k);
        Assert.Equal(PackedElementType.BFloat16, bf16.ElementType);
        Assert.Equal(PackedElementType.Float32, fp32.ElementType);
        Assert.Equal(96L * k * 2, bf16.StorageBytes);
        Assert.Equal(96L * k * 4, fp32.StorageBytes);
    }

    [Fact]
    public void FromBFloat16_RejectsAMatrixOfTheWrongLength()
    {
        var e = Assert.Throws<ArgumentException>(() => PackedMatrix.FromBFloat16(new ushort[10], 3, 4));
        Assert.Contains("Expected 12 values, got 10", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => PackedMatrix.FromBFloat16([], 0, 4));
    }
}
