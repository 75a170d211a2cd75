using System.Globalization;
using System.Text.Json;
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
/// a = √5, so bound 1/√in; B zero, so training starts from the base model) and saved as
/// mistral-finetune's <c>lora.safetensors</c>, which mistral-inference's <c>load_lora</c> accepts.
/// </summary>
/// <remarks>
/// <para>The file mistral-inference expects, and what <see cref="Save"/> writes:</para>
/// <list type="bullet">
/// <item>Names <c>layers.N.attention.wq.lora_A.weight</c> and <c>...lora_B.weight</c>, one pair for every
/// linear projection of every layer (all seven; <c>output</c> is never adapted). mistral-inference's merge
/// visits every projection, so a projection outside <see cref="LoraConfig.Targets"/> is written as a zero
/// pair of the same rank: it adds nothing.</item>
/// <item>Shapes <c>lora_A</c> [r × in], <c>lora_B</c> [out × r], as <c>nn.Linear</c> weights.</item>
/// <item>One dtype for every tensor, equal to the base model's (bf16 for a released checkpoint): the loader
/// asserts it. <see cref="MistralModel.SaveAdapter"/> picks it from the base weights. Training keeps its
/// float32 master copy; only the exported file is rounded (round to nearest even, as torch does).</item>
/// <item>B is stored unscaled, as mistral-finetune stores it: the merged weight is
/// <c>W + scaling · B·A</c> with <c>scaling = alpha / r</c>. The file does not carry the scale to
/// mistral-inference, which takes it as <c>load_lora(path, scaling=...)</c> (default 2.0, which is Atelier's
/// default rank 8 and alpha 16) or, for an unmerged model, from <c>lora.scaling</c> in params.json.
/// The scale is recorded in <c>__metadata__</c> as <c>lora_scaling</c> (with <c>lora_rank</c> and
/// <c>lora_alpha</c>) for the caller to pass, and <see cref="Load"/> checks it against its config.</item>
/// </list>
/// </remarks>
public sealed class LoraAdapter : IDisposable
{
    /// <summary>The <c>__metadata__</c> key recording the rank.</summary>
    public const string RankKey = "lora_rank";

    /// <summary>The <c>__metadata__</c> key recording alpha.</summary>
    public const string AlphaKey = "lora_alpha";

    /// <summary>The <c>__metadata__</c> key recording the merge scale <c>alpha / r</c> (mistral-inference's <c>scaling</c>).</summary>
    public const string ScalingKey = "lora_scaling";

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
        CheckRecordedScale(file, config);
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

    /// <summary>
    /// Loads an adapter file for a base model, working out its hyper-parameters from the file: the rank and
    /// alpha Atelier records in <c>__metadata__</c> (<see cref="RankKey"/>, <see cref="AlphaKey"/>, or
    /// <see cref="ScalingKey"/>); otherwise the <c>lora</c> section (<c>rank</c>, <c>scaling</c>) of the
    /// <c>params.json</c> that mistral-finetune writes beside its <c>lora.safetensors</c>. The adapted
    /// projections are those the file holds pairs for. F32, F16 and BF16 files load alike (widened to float32).
    /// </summary>
    /// <param name="args">The base model's hyper-parameters; every tensor is checked against them.</param>
    /// <param name="path">The adapter file.</param>
    /// <exception cref="ModelFormatException">
    /// The file does not fit the model (a missing or extra tensor, a shape that differs: the message names the
    /// tensor and both shapes), or neither its metadata nor a <c>params.json</c> beside it gives the scale.
    /// </exception>
    public static LoraAdapter LoadFile(MistralArgs args, string path)
    {
        ArgumentNullException.ThrowIfNull(args);
        LoraConfig config;
        using (var file = SafeTensorsFile.Open(path))
        {
            config = ReadConfig(args, file);
        }

        return Load(args, config, path);
    }

    /// <summary>The hyper-parameters of an adapter file, checked for tensors that do not belong to the model.</summary>
    private static LoraConfig ReadConfig(MistralArgs args, SafeTensorsFile file)
    {
        var expected = new HashSet<string>(StringComparer.Ordinal);
        for (var l = 0; l < args.NLayers; l++)
        {
            foreach (var kind in LinearKinds.All)
            {
                expected.Add(TensorName(l, kind, true));
                expected.Add(TensorName(l, kind, false));
            }
        }

        foreach (var name in file.Tensors.Keys.Order(StringComparer.Ordinal))
        {
            if (!expected.Contains(name))
            {
                throw new ModelFormatException(
                    $"{file.Path}: adapter tensor '{name}' does not belong to the base model ({args.NLayers} layers; adapter tensors are named like '{TensorName(0, LinearKind.Wq, true)}').");
            }
        }

        var targets = LinearKinds.All.Where(k => file.Contains(TensorName(0, k, true))).ToArray();
        if (targets.Length == 0)
        {
            throw new ModelFormatException($"{file.Path}: no adapter tensor of layer 0 (such as '{TensorName(0, LinearKind.Wq, true)}'); is this a LoRA adapter for this model?");
        }

        var first = file.Get(TensorName(0, targets[0], true));
        var shapeRank = first.Shape.Length == 2 && first.Shape[0] is > 0 and <= int.MaxValue ? (int)first.Shape[0] : 0;
        var metadata = file.Header.Metadata;
        int? rank = metadata.TryGetValue(RankKey, out var rankText) && int.TryParse(rankText, NumberStyles.None, CultureInfo.InvariantCulture, out var r) ? r : null;
        float? alpha = metadata.TryGetValue(AlphaKey, out var alphaText) && float.TryParse(alphaText, NumberStyles.Float, CultureInfo.InvariantCulture, out var a) ? a : null;
        float? scaling = metadata.TryGetValue(ScalingKey, out var scalingText) && float.TryParse(scalingText, NumberStyles.Float, CultureInfo.InvariantCulture, out var sc) ? sc : null;
        if (rank is null || (alpha is null && scaling is null))
        {
            var (paramsRank, paramsScaling) = ReadFinetuneParams(file.Path);
            rank ??= paramsRank;
            scaling ??= paramsScaling;
        }

        rank ??= shapeRank;
        if (rank <= 0)
        {
            throw new ModelFormatException($"{file.Path}: adapter tensor '{first.Name}' has shape [{string.Join(", ", first.Shape)}], which is not [rank, in].");
        }

        var resolvedAlpha = alpha ?? (scaling * rank)
            ?? throw new ModelFormatException(
                $"{file.Path}: the adapter does not say its scale: neither '{ScalingKey}' nor '{AlphaKey}' in its metadata, nor a params.json beside it with lora.scaling (as mistral-finetune writes).");
        return new LoraConfig(rank.Value, resolvedAlpha, 0f, targets);
    }

    /// <summary>The <c>lora</c> section of the <c>params.json</c> beside a mistral-finetune adapter, if there is one.</summary>
    private static (int? Rank, float? Scaling) ReadFinetuneParams(string adapterPath)
    {
        var paramsPath = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(adapterPath))!, "params.json");
        if (!File.Exists(paramsPath))
        {
            return (null, null);
        }

        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(paramsPath));
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("lora", out var lora) || lora.ValueKind != JsonValueKind.Object)
            {
                return (null, null);
            }

            int? rank = lora.TryGetProperty("rank", out var r) && r.TryGetInt32(out var rv) ? rv : null;
            float? scaling = lora.TryGetProperty("scaling", out var s) && s.ValueKind == JsonValueKind.Number ? s.GetSingle() : null;
            return (rank, scaling);
        }
        catch (JsonException e)
        {
            throw new ModelFormatException($"{paramsPath}: not valid JSON ({e.Message}); it is read for the adapter's lora.rank and lora.scaling.", e);
        }
    }

    /// <summary>
    /// A file that records its rank and scale must match the config it is loaded with: merging at another
    /// scale would silently give another model.
    /// </summary>
    private static void CheckRecordedScale(SafeTensorsFile file, LoraConfig config)
    {
        var metadata = file.Header.Metadata;
        if (metadata.TryGetValue(RankKey, out var rankText)
            && (!int.TryParse(rankText, NumberStyles.None, CultureInfo.InvariantCulture, out var rank) || rank != config.Rank))
        {
            throw new ModelFormatException($"{file.Path}: the adapter was saved with {RankKey} {rankText}, but is loaded with rank {config.Rank}.");
        }

        if (metadata.TryGetValue(ScalingKey, out var scalingText)
            && (!float.TryParse(scalingText, NumberStyles.Float, CultureInfo.InvariantCulture, out var scaling) || scaling != config.Scaling))
        {
            throw new ModelFormatException(
                $"{file.Path}: the adapter was saved with {ScalingKey} {scalingText}, but is loaded with alpha / rank = {config.Scaling.ToString("R", CultureInfo.InvariantCulture)}.");
        }
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

    /// <summary>
    /// Writes the adapter as mistral-finetune's <c>lora.safetensors</c> (see the remarks on
    /// <see cref="LoraAdapter"/>), atomically. <paramref name="dtype"/> must be the base model's for
    /// mistral-inference to load it; <see cref="MistralModel.SaveAdapter"/> chooses it so.
    /// </summary>
    /// <param name="path">The file to write.</param>
    /// <param name="dtype">F32, BF16 or F16; narrower types are rounded to nearest even.</param>
    public void Save(string path, SafeTensorDType dtype)
    {
        if (dtype is not (SafeTensorDType.F32 or SafeTensorDType.BF16 or SafeTensorDType.F16))
        {
            throw new ArgumentException($"An adapter is stored as F32, BF16 or F16, not {SafeTensorDTypes.Name(dtype)}.", nameof(dtype));
        }

        var writer = new SafeTensorsWriter();
        for (var l = 0; l < Args.NLayers; l++)
        {
            foreach (var kind in LinearKinds.All)
            {
                var (o, i) = LinearKinds.Dims(Args, kind);
                var pair = _pairs[l, (int)kind];
                if (pair is not null)
                {
                    writer.Add(TensorName(l, kind, true), pair.A.Span, pair.A.Shape, dtype);
                    writer.Add(TensorName(l, kind, false), pair.B.Span, pair.B.Shape, dtype);
                }
                else
                {
                    // Not adapted: a zero pair, because mistral-inference merges into every projection
                    // and fails on a missing one. Zero bits are zero in every float type.
                    var size = SafeTensorDTypes.SizeOf(dtype);
                    writer.AddRaw(TensorName(l, kind, true), dtype, [Config.Rank, i], new byte[(long)Config.Rank * i * size]);
                    writer.AddRaw(TensorName(l, kind, false), dtype, [o, Config.Rank], new byte[(long)o * Config.Rank * size]);
                }
            }
        }

        writer.AddMetadata("format", "pt");
        writer.AddMetadata(RankKey, Config.Rank.ToString(CultureInfo.InvariantCulture));
        writer.AddMetadata(AlphaKey, Config.Alpha.ToString("R", CultureInfo.InvariantCulture));
        writer.AddMetadata(ScalingKey, Config.Scaling.ToString("R", CultureInfo.InvariantCulture));
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
