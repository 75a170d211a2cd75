using Atelier.Modeling.Mistral;
using Atelier.Modeling.Tensors;

namespace Atelier.Inference.Tests;

/// <summary>Tiny random Mistral models and adapters made in the test: nothing is downloaded.</summary>
internal static class TinyModels
{
    public static MistralArgs Args(int? window = null) => new(
        Dim: 32, NLayers: 2, HeadDim: 8, HiddenDim: 48, NHeads: 4, NKvHeads: 2,
        NormEps: 1e-5f, VocabSize: 64, RopeTheta: 10_000.0, SlidingWindow: window);

    /// <summary>
    /// Weights whose greedy continuations are not one token repeated: a larger init spreads the logits,
    /// so that a wrong cache or a wrong adapter shows in the tokens.
    /// </summary>
    public static MistralWeights Weights(MistralArgs args, ulong seed = 7) => MistralWeights.CreateRandom(args, seed);

    /// <summary>An adapter whose B matrices are random (a fresh one has B = 0 and changes nothing).</summary>
    public static LoraAdapter Adapter(MistralArgs args, ulong seed)
    {
        var adapter = LoraAdapter.Create(args, new LoraConfig(Rank: 4, Alpha: 8), seed);
        var rng = new DeterministicRandom(seed + 1000);
        foreach (var (name, value, _) in adapter.Parameters())
        {
            if (name.Contains("lora_B", StringComparison.Ordinal))
            {
                var s = value.Span;
                for (var i = 0; i < s.Length; i++)
                {
                    s[i] = (float)(rng.NextGaussian() * 0.5);
                }
            }
        }

        return adapter;
    }

    /// <summary>A loader for adapters named <c>a1</c>, <c>a2</c>, ...: each load makes a new instance from the name's seed.</summary>
    public static Func<string, CancellationToken, ValueTask<LoraAdapter>> Loader(MistralArgs args)
        => (id, _) => id.StartsWith('a') && ulong.TryParse(id.AsSpan(1), out var n)
            ? ValueTask.FromResult(Adapter(args, 100 + n))
            : ValueTask.FromException<LoraAdapter>(new FileNotFoundException($"No adapter '{id}'."));

    /// <summary>A deterministic prompt of <paramref name="length"/> tokens.</summary>
    public static int[] Prompt(int length, int seed, int vocab = 64)
    {
        var rng = new Random(seed);
        var p = new int[length];
        for (var i = 0; i < length; i++)
        {
            p[i] = rng.Next(1, vocab);
        }

        return p;
    }
}
