using Atelier.Modeling.Kernels;

namespace Atelier.Modeling.Tests;

/// <summary>Each op's backward against central finite differences of Σ r·forward(x).</summary>
public class OpGradientTests
{
    [Fact]
    public void RmsNormBackward_MatchesFiniteDifferences_ForInputAndWeight()
    {
        const int rows = 3, dim = 16;
        var x = TestData.Uniform(rows * dim, 10);
        var w = TestData.Uniform(dim, 11);
        var r = TestData.Uniform(rows * dim, 12);
        double Loss()
        {
            var y = new float[rows * dim];
            Ops.RmsNormForward(x, w, 1e-5f, y, new float[rows], dim);
            return TestData.Project(y, r);
        }

        var inv = new float[rows];
        Ops.RmsNormForward(x, w, 1e-5f, new float[rows * dim], inv, dim);
        var dx = new float[rows * dim];
        var dw = new float[dim];
        Ops.RmsNormBackward(r, x, w, inv, dx, dw, dim);
        TestData.CheckGradient("dx", x, dx, Loss);
        TestData.CheckGradient("dw", w, dw, Loss);
    }

    [Fact]
    public void RopeInverse_IsTheBackwardOfRope_AndKeepsNorms()
    {
        const int rows = 4, heads = 2, hd = 8;
        var x = TestData.Uniform(rows * heads * hd, 13);
        var r = TestData.Uniform(x.Length, 14);
        var rope = new RopeAngles([0, 1, 7, 3], hd, 10_000.0);
        double Loss()
        {
            var y = (float[])x.Clone();
            rope.Apply(y, heads);
            return TestData.Project(y, r);
        }

        var dx = (float[])r.Clone();
        rope.Apply(dx, heads, inverse: true);
        TestData.CheckGradient("dx", x, dx, Loss);

        var rotated = (float[])x.Clone();
        rope.Apply(rotated, heads);
        Assert.Equal(x.Sum(v => (double)v * v), rotated.Sum(v => (double)v * v), 4);
        Assert.Equal(x.AsSpan(0, hd).ToArray(), rotated.AsSpan(0, hd).ToArray()); // position 0 is not rotated
    }

    [Fact]
    public void SoftmaxBackward_MatchesFiniteDifferences()
    {
        const int rows = 2, cols = 7;
        var x = TestData.Uniform(rows * cols, 15, 3f);
        var r = TestData.Uniform(rows * cols, 16);
        double Loss()
        {
            var y = new float[x.Length];
            Ops.SoftmaxForward(x, y, cols);
            return TestData.Project(y, r);
        }

        var yv = new float[x.Length];
        Ops.SoftmaxForward(x, yv, cols);
        Assert.Equal(1.0, yv.Take(cols).Sum(v => (double)v), 5);
        var dx = new float[x.Length];
        Ops.SoftmaxBackward(yv, r, dx, cols);
        TestData.CheckGradient("dx", x, dx, Loss);
    }

    [Fact]
    public void SwiGluBackward_MatchesFiniteDifferences_ForBothInputs()
    {
        var a = TestData.Uniform(40, 17, 4f);
        var b = TestData.Uniform(40, 18, 2f);
        var r = TestData.Uniform(40, 19);
        double Loss()
        {
            var g = new float[a.Length];
            Ops.SwiGluForward(a, b, g);
            return TestData.Project(g, r);
        }

        var da = new float[a.Length];
        var db = new float[a.Length];
        Ops.SwiGluBackward(r, a, b, da, db);
        TestData.CheckGradient("da", a, da, Loss);
        TestData.CheckGradient("db", b, db, Loss);
    }

    [Fact]
    public void EmbeddingBackward_ScatterAddsRepeatedTokens()
    {
        const int vocab = 5, dim = 3;
        var table = TestData.Uniform(vocab * dim, 20);
        int[] ids = [2, 4, 2, 0];
        var r = TestData.Uniform(ids.Length * dim, 21);
        double Loss()
        {
            var y = new float[ids.Length * dim];
            Ops.EmbeddingForward(table, ids, y, dim);
            return TestData.Project(y, r);
        }

        var dt = new float[table.Length];
        Ops.EmbeddingBackward(r, ids, dt, dim);
        TestData.CheckGradient("dtable", table, dt, Loss);
        Assert.Throws<ArgumentOutOfRangeException>(() => Ops.EmbeddingForward(table, [5], new float[dim], dim));
    }

    [Fact]
    public void CrossEntropy_MatchesFiniteDifferences_AndIgnoresMaskedPositions()
    {
        const int rows = 4, vocab = 9;
        var z = TestData.Uniform(rows * vocab, 22, 3f);
        int[] targets = [1, 8, 0, 3];
        float[] mask = [1, 0, 1, 0.5f];
        double Loss() => Ops.CrossEntropy(z, targets, mask, vocab, default);

        var dz = new float[z.Length];
        var loss = Ops.CrossEntropy(z, targets, mask, vocab, dz);
        TestData.CheckGradient("dlogits", z, dz, Loss);
        Assert.All(dz.AsSpan(vocab, vocab).ToArray(), v => Assert.Equal(0f, v));

        // Independent value: mean of w·(logsumexp − z_y) over the mask.
        double expected = 0;
        for (var t = 0; t < rows; t++)
        {
            var row = z.AsSpan(t * vocab, vocab).ToArray();
            var lse = Math.Log(row.Sum(v => Math.Exp(v)));
            expected += mask[t] * (lse - row[targets[t]]);
        }

        Assert.Equal(expected / 2.5, loss, 6);
    }

    [Fact]
    public void CrossEntropy_WritingTheGradientOverTheLogits_GivesTheSameLossAndGradient()
    {
        const int rows = 3, vocab = 40;
        var z = TestData.Uniform(rows * vocab, 33, 4f);
        int[] targets = [5, 39, 0];
        float[] mask = [1, 1, 0];
        var separate = new float[z.Length];
        var loss = Ops.CrossEntropy(z, targets, mask, vocab, separate, 0.5f);
        var inPlace = (float[])z.Clone();
        var lossInPlace = Ops.CrossEntropy(inPlace, targets, mask, vocab, inPlace, 0.5f);
        Assert.Equal(loss, lossInPlace);
        Assert.Equal(separate, inPlace);
    }

    [Fact]
    public void LinearBackward_MatchesFiniteDifferences_ForInputAndWeight()
    {
        const int rows = 5, inF = 7, outF = 6;
        var x = TestData.Uniform(rows * inF, 23);
        var w = TestData.Uniform(outF * inF, 24);
        var r = TestData.Uniform(rows * outF, 25);
        double Loss()
        {
            var y = new float[rows * outF];
            Ops.LinearForward(x, w, y, rows, inF, outF);
            return TestData.Project(y, r);
        }

        var dx = new float[x.Length];
        var dw = new float[w.Length];
        Ops.LinearBackwardInput(r, w, dx, rows, inF, outF);
        Ops.LinearBackwardWeight(r, x, dw, rows, inF, outF);
        TestData.CheckGradient("dx", x, dx, Loss);
        TestData.CheckGradient("dw", w, dw, Loss);
    }

    [Theory]
    [InlineData(null)]
    [InlineData(3)]
    public void AttentionBackward_MatchesFiniteDifferences_WithGroupedHeadsAndPackedSamples(int? window)
    {
        // Two packed samples (5 + 4 rows), 4 query heads sharing 2 key/value heads.
        var shape = new Attention.Shape(9, 9, 4, 2, 8);
        int[] lengths = [5, 4];
        var lo = new int[9];
        var hi = new int[9];
        var start = 0;
        foreach (var n in lengths)
        {
            for (var t = start; t < start + n; t++)
            {
                lo[t] = window is { } w ? Math.Max(start, t - w + 1) : start;
                hi[t] = t;
            }

            start += n;
        }

        var q = TestData.Uniform(9 * 32, 26);
        var k = TestData.Uniform(9 * 16, 27);
        var v = TestData.Uniform(9 * 16, 28);
        var r = TestData.Uniform(9 * 32, 29);
        double Loss()
        {
            var o = new float[q.Length];
            Attention.Forward(shape, q, k, v, lo, hi, o, new float[4 * 9]);
            return TestData.Project(o, r);
        }

        var ov = new float[q.Length];
        var lse = new float[4 * 9];
        Attention.Forward(shape, q, k, v, lo, hi, ov, lse);
        var dq = new float[q.Length];
        var dk = new float[k.Length];
        var dv = new float[v.Length];
        Attention.Backward(shape, r, q, k, v, ov, lse, lo, hi, dq, dk, dv);
        TestData.CheckGradient("dq", q, dq, Loss);
        TestData.CheckGradient("dk", k, dk, Loss);
        TestData.CheckGradient("dv", v, dv, Loss);
    }

    [Trait("Category", "Slow")]
    [Theory]
    [InlineData(null)]
    [InlineData(40)]
    public void Attention_MatchesANaiveReference_AcrossManyBlocksPackedSamplesAndWindows(int? window)
    {
        // 150 rows in three packed samples: more than one 64-row block per sample.
        int[] lengths = [90, 13, 47];
        const int rows = 150, heads = 4, kv = 2, hd = 16;
        var shape = new Attention.Shape(rows, rows, heads, kv, hd);
        var lo = new int[rows];
        var hi = new int[rows];
        var start = 0;
        foreach (var n in lengths)
        {
            for (var t = start; t < start + n; t++)
            {
                lo[t] = window is { } w ? Math.Max(start, t - w + 1) : start;
                hi[t] = t;
            }

            start += n;
        }

        var q = TestData.Uniform(rows * heads * hd, 34);
        var k = TestData.Uniform(rows * kv * hd, 35);
        var v = TestData.Uniform(rows * kv * hd, 36);
        var o = new float[q.Length];
        var lse = new float[heads * rows];
        Attention.Forward(shape, q, k, v, lo, hi, o, lse);
        for (var h = 0; h < heads; h++)
        {
            var g = h / 2;
            for (var t = 0; t < rows; t++)
            {
                var scores = Enumerable.Range(lo[t], hi[t] - lo[t] + 1)
                    .Select(j => Enumerable.Range(0, hd).Sum(d => (double)q[(t * heads * hd) + (h * hd) + d] * k[(j * kv * hd) + (g * hd) + d]) / 4.0).ToArray();
                var max = scores.Max();
                var z = scores.Sum(x => Math.Exp(x - max));
                if (Math.Abs(max + Math.Log(z) - lse[(h * rows) + t]) > 1e-4)
                {
                    Assert.Fail($"lse[{h},{t}] = {lse[(h * rows) + t]}, expected {max + Math.Log(z)}");
                }
                var probs = scores.Select(x => Math.Exp(x - max) / z).ToArray();
                for (var d = 0; d < hd; d++)
                {
                    double expected = 0;
                    for (var i = 0; i < probs.Length; i++)
                    {
                        expected += probs[i] * v[((lo[t] + i) * kv * hd) + (g * hd) + d];
                    }

                    if (Math.Abs(expected - o[(t * heads * hd) + (h * hd) + d]) >= 1e-5)
                    {
                        Assert.Fail($"o[{t},{h},{d}] = {o[(t * heads * hd) + (h * hd) + d]}, expected {expected}");
                    }
                }
            }
        }

        var r = TestData.Uniform(q.Length, 37);
        double Loss()
        {
            var oo = new float[q.Length];
            Attention.Forward(shape, q, k, v, lo, hi, oo, new float[heads * rows]);
            return TestData.Project(oo, r);
        }

        var dq = new float[q.Length];
        var dk = new float[k.Length];
        var dv = new float[v.Length];
        Attention.Backward(shape, r, q, k, v, o, lse, lo, hi, dq, dk, dv);
        TestData.CheckGradient("dq", q, dq, Loss, indices: TestData.Sample(q.Length, 25, 1));
        TestData.CheckGradient("dk", k, dk, Loss, indices: TestData.Sample(k.Length, 25, 2));
        TestData.CheckGradient("dv", v, dv, Loss, indices: TestData.Sample(v.Length, 25, 3));
    }

    [Fact]
    public void AttentionForward_DoesNotLetASampleSeeTheNextOne()
    {
        var shape = new Attention.Shape(4, 4, 1, 1, 4);
        int[] lo = [0, 0, 2, 2];
        int[] hi = [0, 1, 2, 3];
        var q = TestData.Uniform(16, 30);
        var k = TestData.Uniform(16, 31);
        var v = TestData.Uniform(16, 32);
        var o1 = new float[16];
        Attention.Forward(shape, q, k, v, lo, hi, o1, new float[4]);

        // Changing the second sample's keys and values leaves the first sample's outputs unchanged.
        for (var i = 8; i < 16; i++)
        {
            k[i] += 1f;
            v[i] -= 2f;
        }

        var o2 = new float[16];
        Attention.Forward(shape, q, k, v, lo, hi, o2, new float[4]);
        Assert.Equal(o1.AsSpan(0, 8).ToArray(), o2.AsSpan(0, 8).ToArray());
        Assert.NotEqual(o1.AsSpan(8, 8).ToArray(), o2.AsSpan(8, 8).ToArray());

        // The first position of each sample attends only to itself: its output is its own value row.
        Assert.Equal(v.AsSpan(0, 4).ToArray(), o2.AsSpan(0, 4).ToArray());
    }
}
