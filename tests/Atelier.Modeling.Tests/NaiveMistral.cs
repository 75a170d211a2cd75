using Atelier.Modeling.Mistral;

namespace Atelier.Modeling.Tests;

/// <summary>
/// An independent, deliberately naive Mistral forward in double precision: one token, one head, one
/// element at a time, straight from the architecture's definition (not from the library's kernels).
/// </summary>
internal static class NaiveMistral
{
    public static double[][] Logits(MistralWeights w, LoraAdapter? lora, int[] tokens, int[] sampleLengths)
    {
        var a = w.Args;
        var n = tokens.Length;
        var starts = new int[n];
        var s0 = 0;
        foreach (var len in sampleLengths)
        {
            for (var t = s0; t < s0 + len; t++)
            {
                starts[t] = s0;
            }

            s0 += len;
        }

        var h = new double[n][];
        for (var t = 0; t < n; t++)
        {
            h[t] = w.TokEmbeddings.Row(tokens[t]).ToArray().Select(v => (double)v).ToArray();
        }

        for (var l = 0; l < a.NLayers; l++)
        {
            var lw = w.Layers[l];
            var q = new double[n][];
            var k = new double[n][];
            var v = new double[n][];
            for (var t = 0; t < n; t++)
            {
                var xn = RmsNorm(h[t], lw.AttentionNorm.Span.ToArray(), a.NormEps);
                q[t] = Rope(Lin(w, lora, l, LinearKind.Wq, xn), t - starts[t], a.HeadDim, a.RopeTheta);
                k[t] = Rope(Lin(w, lora, l, LinearKind.Wk, xn), t - starts[t], a.HeadDim, a.RopeTheta);
                v[t] = Lin(w, lora, l, LinearKind.Wv, xn);
            }

            var next = new double[n][];
            for (var t = 0; t < n; t++)
            {
                var o = new double[a.NHeads * a.HeadDim];
                for (var head = 0; head < a.NHeads; head++)
                {
                    var kvh = head / (a.NHeads / a.NKvHeads);
                    var first = starts[t];
                    if (a.SlidingWindow is { } win)
                    {
                        first = Math.Max(first, t - win + 1);
                    }

                    var scores = new List<double>();
                    for (var j = first; j <= t; j++)
                    {
                        double dot = 0;
                        for (var d = 0; d < a.HeadDim; d++)
                        {
                            dot += q[t][(head * a.HeadDim) + d] * k[j][(kvh * a.HeadDim) + d];
                        }

                        scores.Add(dot / Math.Sqrt(a.HeadDim));
                    }

                    var max = scores.Max();
                    var exps = scores.Select(s => Math.Exp(s - max)).ToArray();
                    var sum = exps.Sum();
                    for (var j = first; j <= t; j++)
                    {
                        for (var d = 0; d < a.HeadDim; d++)
                        {
                            o[(head * a.HeadDim) + d] += exps[j - first] / sum * v[j][(kvh * a.HeadDim) + d];
                        }
                    }
                }

                var attnOut = Lin(w, lora, l, LinearKind.Wo, o);
                var hmid = h[t].Zip(attnOut, (x, y) => x + y).ToArray();
                var xn2 = RmsNorm(hmid, lw.FfnNorm.Span.ToArray(), a.NormEps);
                var gate = Lin(w, lora, l, LinearKind.W1, xn2);
                var up = Lin(w, lora, l, LinearKind.W3, xn2);
                var g = gate.Zip(up, (x, y) => x / (1 + Math.Exp(-x)) * y).ToArray();
                var ff = Lin(w, lora, l, LinearKind.W2, g);
                next[t] = hmid.Zip(ff, (x, y) => x + y).ToArray();
            }

            h = next;
        }

        var logits = new double[n][];
        for (var t = 0; t < n; t++)
        {
            var hn = RmsNorm(h[t], w.Norm.Span.ToArray(), a.NormEps);
            logits[t] = MatVec(w.Output.Span.ToArray(), a.VocabSize, a.Dim, hn);
        }

        return logits;
    }

    private static double[] RmsNorm(double[] x, float[] weight, double eps)
    {
        var ms = x.Sum(v => v * v) / x.Length;
        var r = 1 / Math.Sqrt(ms + eps);
        return x.Select((v, i) => v * r * weight[i]).ToArray();
    }

    private static double[] Rope(double[] x, int pos, int hd, double theta)
    {
        var y = (double[])x.Clone();
        for (var head = 0; head < x.Length / hd; head++)
        {
            for (var i = 0; i < hd / 2; i++)
            {
                var angle = pos / Math.Pow(theta, 2.0 * i / hd);
                var re = x[(head * hd) + (2 * i)];
                var im = x[(head * hd) + (2 * i) + 1];
                y[(head * hd) + (2 * i)] = (re * Math.Cos(angle)) - (im * Math.Sin(angle));
                y[(head * hd) + (2 * i) + 1] = (re * Math.Sin(angle)) + (im * Math.Cos(angle));
            }
        }

        return y;
    }

    private static double[] Lin(MistralWeights w, LoraAdapter? lora, int layer, LinearKind kind, double[] x)
    {
        var (o, i) = LinearKinds.Dims(w.Args, kind);
        var y = MatVec(w.Layers[layer][kind].Span.ToArray(), o, i, x);
        var pair = lora?[layer, kind];
        if (pair is not null)
        {
            var u = MatVec(pair.A.Span.ToArray(), pair.Rank, i, x);
            var delta = MatVec(pair.B.Span.ToArray(), o, pair.Rank, u);
            for (var j = 0; j < o; j++)
            {
                y[j] += lora!.Config.Scaling * delta[j];
            }
        }

        return y;
    }

    private static double[] MatVec(float[] m, int rows, int cols, double[] x)
    {
        var y = new double[rows];
        for (var r = 0; r < rows; r++)
        {
            double s = 0;
            for (var c = 0; c < cols; c++)
            {
                s += m[(r * cols) + c] * x[c];
            }

            y[r] = s;
        }

        return y;
    }
}
