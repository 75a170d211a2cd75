using Atelier.Modeling.SafeTensors;
using Atelier.Modeling.Tensors;

namespace Atelier.Modeling.Mistral;

/// <summary>LoRA hyper-parameters.</summary>
/// <param name="Rank">Rank r of the update <c>B·A</c>.</param>
/// <param name="Alpha">The update is scaled by <c>alpha / r</c>.</param>
/// <param name="Dropout">Dropout probability on the adapter's input during training.</param>
/// <param name="Targets">Projections to adapt; all seven when null.</param>
public sealed record LoraConfig(int Rank = 16, float Alpha = 32f, float Dropout = 0f, IReadOnlyList<LinearKind>? Targets = null)
{
    /// <summary>The scale <c>alpha / r</c> applied to the update.</summary>
    public float Scaling => Alpha / Rank;

    /// <summary>The adapted projections.</summary>
    public IReadOnlyList<LinearKind> EffectiveTargets => Targets ?? LinearKinds.All;

    internal void Validate()
    {
        if (Rank <= 0 || !(Alpha > 0) || !(Dropout >= 0 && Dropout < 1))
        {
            throw new ArgumentException("LoRA needs rank > 0, alpha > 0 and dropout in [0, 1).");
        }
    }
}

/// <summary>One adapted projection: <c>y += scaling · (x·Aᵀ)·Bᵀ</c>, with A [r × in] and B [out × r], and their gradients.</summary>
public sealed class LoraPair : IDisposable
{
    internal LoraPair(Tensor a, Tensor b)
    {
        A = a;
        B = b;
        GradA = new Tensor(a.Shape);
        GradB = new Tensor(b.Shape);
    }

    /// <summary>The down projection, [r × in].</summary>
    public Tensor A { get; }

    /// <summary>The up projection, [out × r].</summary>
    public Tensor B { get; }

    /// <summary>Accumulated gradient of <see cref="A"/>.</summary>
    public Tensor GradA { get; }

    /// <summary>Accumulated gradient of <see cref="B"/>.</summary>
    public Tensor GradB { get; }

    /// <summary>The rank.</summary>
    public int Rank => A.Shape[0];

    /// <inheritdoc />
    public void Dispose()
    {
        A.Dispose();
        B.Dispose();
        GradA.Dispose();
        GradB.Dispose();
    }
}

/// <summary>
/// A LoRA adapter over a Mistral model, initialised as mistral-finetune does (A Kaiming-uniform with
/// a = √5, so bound 1/√in; B zero, so training starts from the base model) and saved with its
/// tensor names (<c>layers.N.attention.wq.lora_A.weight</c>, <c>...lora_B.weight</c>).
/// </summary>
public sealed class LoraAdapter : IDisposable
{
    private readonly LoraPair?[,] _pairs;

    private LoraAdapter(MistralArgs args, LoraConfig config, LoraPair?[,] pairs)
    {
        Args = args;
        Config = config;
        _pairs = pairs;
    }

    /// <summary>The base model's hyper-parameters.</summary>
    public MistralArgs Args { get; }

    /// <summary>The LoRA hyper-parameters.</summary>
    public LoraConfig Config { get; }

    /// <summary>The pair adapting one projection, or null when that projection is not adapted.</summary>
    public LoraPair? this[int layer, LinearKind kind] => _pairs[layer, (int)kind];

    /// <summary>The checkpoint name of an adapter tensor.</summary>
    public static string TensorName(int layer, LinearKind kind, bool isA) => $"layers.{layer}.{LinearKinds.ModulePath(kind)}.lora_{(isA ? "A" : "B")}.weight";

    /// <summary>Every trainable tensor with its name and gradient, in a fixed order (layer, projection, A then B).</summary>
    public IEnumerable<(string Name, Tensor Value, Tensor Grad)> Parameters()
    {
        for (var l = 0; l < Args.NLayers; l++)
        {
            foreach (var kind in LinearKinds.All)
            {
                var p = _pairs[l, (int)kind];
                if (p is not null)
                {
                    yield return (TensorName(l, kind, true), p.A, p.GradA);
                    yield return (TensorName(l, kind, false), p.B, p.GradB);
                }
            }
        }
    }

    /// <summary>Number of trainable parameters.</summary>
    public long ParameterCount => Parameters().Sum(p => (long)p.Value.Length);

    /// <summary>Creates a fresh adapter from a seed.</summary>
    public static LoraAdapter Create(MistralArgs args, LoraConfig config, ulong seed)
    {
        config.Validate();
        var rng = new DeterministicRandom(seed);
        var pairs = new LoraPair?[args.NLayers, LinearKinds.All.Count];
        for (var l = 0; l < args.NLayers; l++)
        {
            foreach (var kind in LinearKinds.All)
            {
                if (!config.EffectiveTargets.Contains(kind))
                {
                    continue;
                }

                var (o, i) = LinearKinds.Dims(args, kind);
                var a = Tensor.Uninitialized(config.Rank, i);
                var bound = 1.0 / Math.Sqrt(i);
                var s = a.Span;
                for (var j = 0; j < s.Length; j++)
                {
                    s[j] = (float)(((2 * rng.NextDouble()) - 1) * bound);
                }

                pairs[l, (int)kind] = new LoraPair(a, new Tensor(o, config.Rank));
            }
        }

        return new LoraAdapter(args, config, pairs);
    }

    /// <summary>Loads an adapter saved by <see cref="Save"/> (or by mistral-finetune) for a model.</summary>
    public static LoraAdapter Load(MistralArgs args, LoraConfig config, string path)
    {
        config.Validate();
        using var file = SafeTensorsFile.Open(path);
        var pairs = new LoraPair?[args.NLayers, LinearKinds.All.Count];
        var adapter = new LoraAdapter(args, config, pairs);
        try
        {
            for (var l = 0; l < args.NLayers; l++)
            {
                foreach (var kind in config.EffectiveTargets)
                {
                    var (o, i) = LinearKinds.Dims(args, kind);
                    var a = ReadChecked(file, TensorName(l, kind, true), config.Rank, i);
                    var b = ReadChecked(file, TensorName(l, kind, false), o, config.Rank);
                    pairs[l, (int)kind] = new LoraPair(a, b);
                }
            }
        }
        catch
        {
            adapter.Dispose();
            throw;
        }

        return adapter;
    }

    private static Tensor ReadChecked(SafeTensorsFile file, string name, int rows, int cols)
    {
        if (!file.Contains(name))
        {
            throw new ModelFormatException($"{file.Path}: missing adapter tensor '{name}'.");
        }

        var info = file.Get(name);
        if (info.Shape.Length != 2 || info.Shape[0] != rows || info.Shape[1] != cols)
        {
            throw new ModelFormatException($"{file.Path}: adapter tensor '{name}' has shape [{string.Join(", ", info.Shape)}], expected [{rows}, {cols}].");
        }

        return file.ReadFloat32(name);
    }

    /// <summary>Writes the adapter (float32 by default) as safetensors, atomically.</summary>
    public void Save(string path, SafeTensorDType dtype = SafeTensorDType.F32)
    {
        var writer = new SafeTensorsWriter();
        foreach (var (name, value, _) in Parameters())
        {
            writer.Add(name, value.Span, value.Shape, dtype);
        }

        writer.AddMetadata("format", "pt");
        writer.AddMetadata("lora_rank", Config.Rank.ToString(System.Globalization.CultureInfo.InvariantCulture));
        writer.AddMetadata("lora_scaling", Config.Scaling.ToString("R", System.Globalization.CultureInfo.InvariantCulture));
        writer.Save(path);
    }

    /// <summary>Sets every gradient to zero.</summary>
    public void ZeroGrad()
    {
        foreach (var (_, _, g) in Parameters())
        {
            g.Clear();
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var p in _pairs)
        {
            p?.Dispose();
        }
    }
}
