using Atelier.Modeling.Mistral;
using Atelier.Modeling.Tensors;

namespace Atelier.Modeling.Tests;

internal static class ModelTestFixtures
{
    public static MistralArgs SmallArgs(int? window = null) => new(
        Dim: 32, NLayers: 2, HeadDim: 8, HiddenDim: 48, NHeads: 4, NKvHeads: 2,
        NormEps: 1e-5f, VocabSize: 50, RopeTheta: 10_000.0, SlidingWindow: window);

    /// <summary>A small model with an adapter whose B matrices are random (so the LoRA path matters).</summary>
    public static MistralModel ModelWithActiveLora(MistralArgs args, float dropout = 0f, ulong seed = 1, IReadOnlyList<LinearKind>? targets = null)
    {
        var weights = MistralWeights.CreateRandom(args, seed);
        var adapter = LoraAdapter.Create(args, new LoraConfig(Rank: 4, Alpha: 8, Dropout: dropout, Targets: targets), seed + 100);
        RandomizeB(adapter, seed + 200);
        return new MistralModel(weights, adapter);
    }

    /// <summary>Replaces the adapter's zero B matrices with N(0, 0.3²) values, as if it had been trained.</summary>
    public static void RandomizeB(LoraAdapter adapter, ulong seed)
    {
        var rng = new DeterministicRandom(seed);
        foreach (var (name, value, _) in adapter.Parameters())
        {
            if (name.Contains("lora_B", StringComparison.Ordinal))
            {
                var s = value.Span;
                for (var i = 0; i < s.Length; i++)
                {
                    s[i] = (float)(rng.NextGaussian() * 0.3);
                }
            }
        }
    }
}
