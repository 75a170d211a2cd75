using System.Text.Json;
using System.Text.Json.Nodes;
using Atelier.Modeling.SafeTensors;

namespace Atelier.Modeling.Mistral;

/// <summary>The hyper-parameters of a Mistral-architecture model, as in <c>params.json</c>.</summary>
/// <param name="Dim">Model (residual stream) width.</param>
/// <param name="NLayers">Number of transformer blocks.</param>
/// <param name="HeadDim">Width of one attention head.</param>
/// <param name="HiddenDim">Width of the feed-forward layer.</param>
/// <param name="NHeads">Query heads.</param>
/// <param name="NKvHeads">Key/value heads (grouped-query attention when fewer than <paramref name="NHeads"/>).</param>
/// <param name="NormEps">RMSNorm epsilon.</param>
/// <param name="VocabSize">Vocabulary size.</param>
/// <param name="RopeTheta">RoPE base.</param>
/// <param name="SlidingWindow">Attention window in tokens, or null for full causal attention.</param>
public sealed record MistralArgs(
    int Dim, int NLayers, int HeadDim, int HiddenDim, int NHeads, int NKvHeads,
    float NormEps, int VocabSize, double RopeTheta = 1_000_000.0, int? SlidingWindow = null)
{
    /// <summary>Width of the concatenated query heads.</summary>
    public int QueryWidth => NHeads * HeadDim;

    /// <summary>Width of the concatenated key (or value) heads.</summary>
    public int KvWidth => NKvHeads * HeadDim;

    /// <summary>Number of parameters of the base model.</summary>
    public long ParameterCount =>
        (2L * VocabSize * Dim) + Dim +
        (NLayers * ((long)Dim * QueryWidth * 2 + (2L * Dim * KvWidth) + (3L * Dim * HiddenDim) + (2L * Dim)));

    /// <summary>Checks the values are usable; throws <see cref="ModelFormatException"/> otherwise.</summary>
    public void Validate(string source = "params.json")
    {
        void Positive(int v, string name)
        {
            if (v <= 0)
            {
                throw new ModelFormatException($"{source}: {name} must be positive, got {v}.");
            }
        }

        Positive(Dim, "dim");
        Positive(NLayers, "n_layers");
        Positive(HeadDim, "head_dim");
        Positive(HiddenDim, "hidden_dim");
        Positive(NHeads, "n_heads");
        Positive(NKvHeads, "n_kv_heads");
        Positive(VocabSize, "vocab_size");
        if (HeadDim % 2 != 0)
        {
            throw new ModelFormatException($"{source}: head_dim must be even for RoPE, got {HeadDim}.");
        }

        if (NHeads % NKvHeads != 0)
        {
            throw new ModelFormatException($"{source}: n_heads ({NHeads}) must be a multiple of n_kv_heads ({NKvHeads}).");
        }

        if (!(NormEps > 0) || !(RopeTheta > 1))
        {
            throw new ModelFormatException($"{source}: norm_eps must be positive and rope_theta greater than 1.");
        }

        if (SlidingWindow is <= 0)
        {
            throw new ModelFormatException($"{source}: sliding_window must be positive when given, got {SlidingWindow}.");
        }
    }

    /// <summary>Reads and validates <c>params.json</c>.</summary>
    public static MistralArgs Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new ModelFormatException($"{path}: file not found.");
        }

        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Parses and validates params.json text. Unknown fields (e.g. <c>lora</c>, <c>moe</c>) are ignored.</summary>
    public static MistralArgs Parse(string json, string source = "params.json")
    {
        JsonNode? node;
        try
        {
            node = JsonNode.Parse(json);
        }
        catch (JsonException e)
        {
            throw new ModelFormatException($"{source}: not valid JSON ({e.Message}).", e);
        }

        if (node is not JsonObject o)
        {
            throw new ModelFormatException($"{source}: not a JSON object.");
        }

        int Int(string name, int? fallback = null)
        {
            var v = o[name];
            if (v is null)
            {
                return fallback ?? throw new ModelFormatException($"{source}: missing field '{name}'.");
            }

            try
            {
                return v.GetValue<int>();
            }
            catch (Exception e) when (e is FormatException or InvalidOperationException)
            {
                throw new ModelFormatException($"{source}: field '{name}' is not an integer.", e);
            }
        }

        double Num(string name, double fallback)
        {
            var v = o[name];
            if (v is null)
            {
                return fallback;
            }

            try
            {
                return v.GetValue<double>();
            }
            catch (Exception e) when (e is FormatException or InvalidOperationException)
            {
                throw new ModelFormatException($"{source}: field '{name}' is not a number.", e);
            }
        }

        var dim = Int("dim");
        var nHeads = Int("n_heads");
        int? window = o["sliding_window"] is null ? null : Int("sliding_window");
        // No rope_theta: 10,000, the base Mistral 7B v0.1 was trained with (its params.json, the only
        // released one without the field, omits it) and mistral-finetune's default. mistral-inference
        // would use 1e6 instead, which is wrong for that model; every later release writes the field.
        var args = new MistralArgs(
            dim, Int("n_layers"), Int("head_dim", nHeads > 0 ? dim / nHeads : 0), Int("hidden_dim"), nHeads, Int("n_kv_heads", nHeads),
            (float)Num("norm_eps", 1e-5), Int("vocab_size"), Num("rope_theta", 10_000.0), window);
        args.Validate(source);
        return args;
    }

    /// <summary>The params.json text for these values.</summary>
    public string ToJson()
    {
        var o = new JsonObject
        {
            ["dim"] = Dim,
            ["n_layers"] = NLayers,
            ["head_dim"] = HeadDim,
            ["hidden_dim"] = HiddenDim,
            ["n_heads"] = NHeads,
            ["n_kv_heads"] = NKvHeads,
            ["norm_eps"] = NormEps,
            ["vocab_size"] = VocabSize,
            ["rope_theta"] = RopeTheta,
        };
        if (SlidingWindow is not null)
        {
            o["sliding_window"] = SlidingWindow;
        }

        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }
}
