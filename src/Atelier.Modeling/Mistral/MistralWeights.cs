using Atelier.Modeling.SafeTensors;
using Atelier.Modeling.Tensors;

namespace Atelier.Modeling.Mistral;

/// <summary>The weights of one transformer block, in float32.</summary>
public sealed class LayerWeights : IDisposable
{
    private readonly Tensor[] _linear;

    internal LayerWeights(Tensor[] linear, Tensor attentionNorm, Tensor ffnNorm)
    {
        _linear = linear;
        AttentionNorm = attentionNorm;
        FfnNorm = ffnNorm;
    }

    /// <summary>A linear projection's weight, [out × in].</summary>
    public Tensor this[LinearKind kind] => _linear[(int)kind];

    /// <summary><c>attention_norm.weight</c>.</summary>
    public Tensor AttentionNorm { get; }

    /// <summary><c>ffn_norm.weight</c>.</summary>
    public Tensor FfnNorm { get; }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var t in _linear)
        {
            t.Dispose();
        }

        AttentionNorm.Dispose();
        FfnNorm.Dispose();
    }
}

/// <summary>
/// The weights of a Mistral model in float32, named as in Mistral's consolidated checkpoints
/// (<c>tok_embeddings.weight</c>, <c>layers.N.attention.wq.weight</c>, ..., <c>norm.weight</c>, <c>output.weight</c>).
/// </summary>
public sealed class MistralWeights : IDisposable
{
    private MistralWeights(MistralArgs args, Tensor embeddings, LayerWeights[] layers, Tensor norm, Tensor output, SafeTensorDType storageDType)
    {
        Args = args;
        StorageDType = storageDType;
        TokEmbeddings = embeddings;
        Layers = layers;
        Norm = norm;
        Output = output;
    }

    /// <summary>The hyper-parameters.</summary>
    public MistralArgs Args { get; }

    /// <summary>
    /// The element type the linear projections were stored in (<see cref="SafeTensorDType.BF16"/> for a
    /// released checkpoint; <see cref="SafeTensorDType.F32"/> for random weights). The weights are held in
    /// float32 whatever it is; it matters to what is written for the model, such as a LoRA adapter,
    /// which mistral-inference only accepts in the model's own dtype.
    /// </summary>
    public SafeTensorDType StorageDType { get; }

    /// <summary><c>tok_embeddings.weight</c> [vocab × dim].</summary>
    public Tensor TokEmbeddings { get; }

    /// <summary>The blocks.</summary>
    public IReadOnlyList<LayerWeights> Layers { get; }

    /// <summary><c>norm.weight</c> [dim].</summary>
    public Tensor Norm { get; }

    /// <summary><c>output.weight</c> [vocab × dim].</summary>
    public Tensor Output { get; }

    /// <summary>The checkpoint name of a layer's linear weight.</summary>
    public static string LinearName(int layer, LinearKind kind) => $"layers.{layer}.{LinearKinds.ModulePath(kind)}.weight";

    /// <summary>Every tensor with its checkpoint name and shape, in a fixed order.</summary>
    public IEnumerable<(string Name, Tensor Tensor)> Named()
    {
        yield return ("tok_embeddings.weight", TokEmbeddings);
        for (var l = 0; l < Layers.Count; l++)
        {
            foreach (var kind in LinearKinds.All)
            {
                yield return (LinearName(l, kind), Layers[l][kind]);
            }

            yield return ($"layers.{l}.attention_norm.weight", Layers[l].AttentionNorm);
            yield return ($"layers.{l}.ffn_norm.weight", Layers[l].FfnNorm);
        }

        yield return ("norm.weight", Norm);
        yield return ("output.weight", Output);
    }

    /// <summary>
    /// Random weights: each linear weight from N(0, σ²) with σ = <paramref name="std"/> or, when null,
    /// 1/√fan_in (so activations keep unit scale at any width); embeddings from N(0, 1) or
    /// N(0, <paramref name="std"/>²); norms at one.
    /// </summary>
    public static MistralWeights CreateRandom(MistralArgs args, ulong seed, float? std = null)
    {
        args.Validate();
        var rng = new DeterministicRandom(seed);
        Tensor Normal(double sigma, params int[] shape)
        {
            var t = Tensor.Uninitialized(shape);
            var s = t.Span;
            for (var i = 0; i < s.Length; i++)
            {
                s[i] = (float)(rng.NextGaussian() * sigma);
            }

            return t;
        }

        Tensor Ones(int n)
        {
            var t = Tensor.Uninitialized(n);
            t.Span.Fill(1f);
            return t;
        }

        var emb = Normal(std ?? 1.0, args.VocabSize, args.Dim);
        var layers = new LayerWeights[args.NLayers];
        for (var l = 0; l < args.NLayers; l++)
        {
            var linear = new Tensor[LinearKinds.All.Count];
            foreach (var kind in LinearKinds.All)
            {
                var (o, i) = LinearKinds.Dims(args, kind);
                linear[(int)kind] = Normal(std ?? (1.0 / Math.Sqrt(i)), o, i);
            }

            layers[l] = new LayerWeights(linear, Ones(args.Dim), Ones(args.Dim));
        }

        return new MistralWeights(args, emb, layers, Ones(args.Dim), Normal(std ?? (1.0 / Math.Sqrt(args.Dim)), args.VocabSize, args.Dim), SafeTensorDType.F32);
    }

    /// <summary>Loads weights from a consolidated safetensors file, widening bf16/fp16 to float32 and checking every shape.</summary>
    public static MistralWeights Load(MistralArgs args, string safetensorsPath)
    {
        using var file = SafeTensorsFile.Open(safetensorsPath);
        var loaded = new List<Tensor>();
        try
        {
            Tensor Read(string name, params int[] shape)
            {
                RequireTensor(file, safetensorsPath, name, shape);
                var t = file.ReadFloat32(name);
                loaded.Add(t);
                return t;
            }

            var emb = Read("tok_embeddings.weight", args.VocabSize, args.Dim);
            var layers = new LayerWeights[args.NLayers];
            for (var l = 0; l < args.NLayers; l++)
            {
                var linear = new Tensor[LinearKinds.All.Count];
                foreach (var kind in LinearKinds.All)
                {
                    var (o, i) = LinearKinds.Dims(args, kind);
                    linear[(int)kind] = Read(LinearName(l, kind), o, i);
                }

                layers[l] = new LayerWeights(linear, Read($"layers.{l}.attention_norm.weight", args.Dim), Read($"layers.{l}.ffn_norm.weight", args.Dim));
            }

            var norm = Read("norm.weight", args.Dim);
            var output = file.Contains("output.weight") ? Read("output.weight", args.VocabSize, args.Dim) : emb.Clone();

            // The projections' dtype is the model's: it is what an adapter merges into, and released
            // checkpoints store every tensor in it.
            return new MistralWeights(args, emb, layers, norm, output, file.Get(LinearName(0, LinearKind.Wq)).DType);
        }
        catch
        {
            foreach (var t in loaded)
            {
                t.Dispose();
            }

            throw;
        }
    }

    /// <summary>
    /// The entry of tensor <paramref name="name"/>, which must be in <paramref name="file"/> with exactly
    /// <paramref name="shape"/> (from <c>params.json</c>); else a <see cref="ModelFormatException"/> naming the file and tensor.
    /// Every loader of a model's weights (training's and serving's) checks through this one, so they refuse alike.
    /// </summary>
    internal static SafeTensorInfo RequireTensor(SafeTensorsFile file, string path, string name, int[] shape)
    {
        if (!file.Contains(name))
        {
            throw new ModelFormatException($"{path}: missing tensor '{name}'.");
        }

        var info = file.Get(name);
        if (info.Shape.Length != shape.Length || !info.Shape.Select(d => (int)d).SequenceEqual(shape))
        {
            throw new ModelFormatException(
                $"{path}: tensor '{name}' has shape [{string.Join(", ", info.Shape)}], expected [{string.Join(", ", shape)}] from params.json.");
        }

        return info;
    }

    /// <summary>Writes the weights as a consolidated safetensors file.</summary>
    public void Save(string path, SafeTensorDType dtype = SafeTensorDType.BF16)
    {
        var writer = new SafeTensorsWriter();
        foreach (var (name, t) in Named())
        {
            writer.Add(name, t.Span, t.Shape, dtype);
        }

        writer.AddMetadata("format", "pt");
        writer.Save(path);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        TokEmbeddings.Dispose();
        foreach (var l in Layers)
        {
            l.Dispose();
        }

        Norm.Dispose();
        Output.Dispose();
    }
}
