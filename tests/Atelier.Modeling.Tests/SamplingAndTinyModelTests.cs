using System.Text.Json;
using Atelier.Modeling.Mistral;
using Atelier.Modeling.Sampling;

namespace Atelier.Modeling.Tests;

public sealed class SamplingAndTinyModelTests : IDisposable
{
    private readonly string _dir = Atelier.Testing.TestCleanup.CreateDirectory("atelier-tiny-");

    public void Dispose() => Directory.Delete(_dir, true);

    [Fact]
    public void GreedySampling_PicksTheLargestLogit()
    {
        var sampler = new Sampler(new SamplingOptions());
        Assert.Equal(2, sampler.Sample([0.1f, -1f, 3f, 2.9f]));
    }

    [Fact]
    public void TemperatureSampling_FollowsTheSoftmax_AndRepeatsForTheSameSeed()
    {
        float[] logits = [1f, 0f, -1f, 2f];
        var sampler = new Sampler(new SamplingOptions(Temperature: 0.8f, Seed: 9));
        var counts = new int[4];
        const int n = 20_000;
        var draws = new int[n];
        for (var i = 0; i < n; i++)
        {
            draws[i] = sampler.Sample(logits);
            counts[draws[i]]++;
        }

        var z = logits.Select(l => Math.Exp(l / 0.8)).ToArray();
        for (var k = 0; k < 4; k++)
        {
            var p = z[k] / z.Sum();
            var sd = Math.Sqrt(n * p * (1 - p));
            Assert.True(Math.Abs(counts[k] - (n * p)) < 5 * sd, $"token {k}: {counts[k]} draws, expected {n * p:F0}");
        }

        var again = new Sampler(new SamplingOptions(Temperature: 0.8f, Seed: 9));
        Assert.Equal(draws.Take(100), Enumerable.Range(0, 100).Select(_ => again.Sample(logits)));
    }

    [Fact]
    public void TopPSampling_DrawsOnlyFromTheNucleus()
    {
        // Probabilities ≈ 0.64, 0.24, 0.09, 0.03: top_p 0.8 keeps the first two only.
        float[] logits = [3f, 2f, 1f, 0f];
        var sampler = new Sampler(new SamplingOptions(Temperature: 1f, TopP: 0.8f, Seed: 1));
        var seen = Enumerable.Range(0, 2000).Select(_ => sampler.Sample(logits)).ToHashSet();
        Assert.Equal(new HashSet<int> { 0, 1 }, seen);
    }

    [Fact]
    public void InitTiny_WritesADirectoryThatLoadsAndGeneratesGreedilyLikeTheFullForward()
    {
        var args = TinyModelWriter.Write(_dir, seed: 21);
        Assert.True(File.Exists(Path.Combine(_dir, "consolidated.safetensors")));
        using var model = MistralModel.Load(_dir);
        Assert.Equal(args, model.Args);

        var tekken = JsonDocument.Parse(File.ReadAllText(Path.Combine(_dir, "tekken.json"))).RootElement;
        Assert.Equal(256, tekken.GetProperty("vocab").GetArrayLength());
        Assert.Equal(args.VocabSize, tekken.GetProperty("config").GetProperty("default_vocab_size").GetInt32());
        var specials = tekken.GetProperty("special_tokens").GetArrayLength();
        Assert.Equal(specials, tekken.GetProperty("config").GetProperty("default_num_special_tokens").GetInt32());
        Assert.Equal("AQ==", tekken.GetProperty("vocab")[1].GetProperty("token_bytes").GetString());

        // Greedy generation equals repeatedly taking the argmax of a full (cache-free) forward.
        int[] prompt = [1, 20 + 'H', 20 + 'i'];
        var generated = Generator.Generate(model, prompt, 6, new SamplingOptions());
        var seq = prompt.ToList();
        for (var i = 0; i < 6; i++)
        {
            using var logits = model.ForwardLogits(new TrainingBatch([.. seq], new int[seq.Count], new float[seq.Count], [seq.Count]));
            seq.Add(Sampler.Argmax(logits.Row(seq.Count - 1)));
        }

        Assert.Equal(seq.Skip(prompt.Length), generated);

        var sampled1 = Generator.Generate(model, prompt, 8, new SamplingOptions(1f, 0.9f, 4));
        var sampled2 = Generator.Generate(model, prompt, 8, new SamplingOptions(1f, 0.9f, 4));
        Assert.Equal(sampled1, sampled2);
        var stopped = Generator.Generate(model, prompt, 6, new SamplingOptions(), stopTokens: [generated[1]]);
        Assert.Equal(generated.Take(2), stopped);
    }

    [Fact]
    public void Bf16Weights_AreWidenedOnLoad_ToTheRoundedValuesOfTheOriginal()
    {
        var args = TinyModelWriter.Write(_dir, seed: 22, dtype: Atelier.Modeling.SafeTensors.SafeTensorDType.BF16);
        using var original = MistralWeights.CreateRandom(args, 22);
        using var model = MistralModel.Load(_dir);
        var a = original.Layers[1][LinearKind.Wk].Span.ToArray();
        var b = model.Weights.Layers[1][LinearKind.Wk].Span.ToArray();
        for (var i = 0; i < a.Length; i++)
        {
            Assert.True(Math.Abs(a[i] - b[i]) <= Math.Abs(a[i]) / 256, $"element {i}: {b[i]} vs {a[i]}");
        }

        Assert.Contains(a.Zip(b), p => p.First != p.Second);
    }
}
