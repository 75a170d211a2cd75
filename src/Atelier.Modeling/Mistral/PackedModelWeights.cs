using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;
using Atelier.Modeling.Kernels;
using Atelier.Modeling.SafeTensors;
using Atelier.Modeling.Tensors;

namespace Atelier.Modeling.Mistral;

/// <summary>The projections of a block that read the same input, packed as one matrix each.</summary>
public enum ProjectionStack
{
    /// <summary><c>wq | wk | wv</c>: [query + 2 × kv width × dim].</summary>
    Qkv,

    /// <summary><c>wo</c>: [dim × query width].</summary>
    Wo,

    /// <summary><c>w1 | w3</c>: [2 × hidden × dim].</summary>
    W13,

    /// <summary><c>w2</c>: [dim × hidden].</summary>
    W2,
}

/// <summary>
/// A Mistral model's weights as a serving engine holds them: each block's projections packed once for the
/// GEMM kernel in the element type they were stored in (a bf16 checkpoint stays bf16, never widened to
/// float32 in memory), the token embeddings left in the file's memory map and widened a row at a time as
/// tokens are gathered, and the norms in float32.
/// </summary>
/// <remarks>
/// <para>Unlike <see cref="MistralWeights"/> (the training path's float32 tensors), this is the only copy
/// a server needs: a 7B bf16 checkpoint takes ~14.5 GB here instead of ~29 GB widened plus ~29 GB packed.</para>
/// <para>Projections that read the same input are stacked into one matrix (<see cref="ProjectionStack"/>):
/// four products per layer instead of seven, since a decode step is dominated by each product's fixed
/// costs as much as by its FLOPs. Every output of the kernel is accumulated over k alone, so a stacked
/// product gives each output the bits of its own product.</para>
/// <para>Read-only once built, so any number of threads may use it at once.</para>
/// </remarks>
public sealed class PackedModelWeights : IDisposable
{
    private const string EmbeddingsName = "tok_embeddings.weight";
    private const string OutputName = "output.weight";

    private static readonly LinearKind[][] StackKinds = [[LinearKind.Wq, LinearKind.Wk, LinearKind.Wv], [LinearKind.Wo], [LinearKind.W1, LinearKind.W3], [LinearKind.W2]];

    private readonly PackedMatrix[,] _projections;
    private readonly float[][] _attentionNorms;
    private readonly float[][] _ffnNorms;
    private readonly float[] _norm;

    // The embeddings in their stored element type: in the file's map (_file) when loaded, or in an owned
    // array when built from in-memory weights. Rows are widened when gathered: a bf16 row is a shift.
    private readonly SafeTensorsFile? _file;
    private readonly byte[]? _embeddings;
    private readonly SafeTensorDType _embeddingDType;

    private PackedModelWeights(MistralArgs args, SafeTensorDType storageDType, PackedMatrix[,] projections, PackedMatrix output,
        float[][] attentionNorms, float[][] ffnNorms, float[] norm, SafeTensorsFile? file, byte[]? embeddings, SafeTensorDType embeddingDType)
    {
        Args = args;
        StorageDType = storageDType;
        _projections = projections;
        Output = output;
        _attentionNorms = attentionNorms;
        _ffnNorms = ffnNorms;
        _norm = norm;
        _file = file;
        _embeddings = embeddings;
        _embeddingDType = embeddingDType;
        var resident = output.StorageBytes + ((long)norm.Length * sizeof(float)) + (embeddings?.LongLength ?? 0);
        foreach (var p in projections)
        {
            resident += p.StorageBytes;
        }

        for (var l = 0; l < args.NLayers; l++)
        {
            resident += (long)(attentionNorms[l].Length + ffnNorms[l].Length) * sizeof(float);
        }

        ResidentBytes = resident;
        MappedBytes = file is null ? 0 : file.Get(EmbeddingsName).ByteLength;
    }

    /// <summary>The hyper-parameters.</summary>
    public MistralArgs Args { get; }

    /// <summary>
    /// The element type the checkpoint stored the projections in (what a LoRA adapter for this model is
    /// written in), whatever the packed matrices hold.
    /// </summary>
    public SafeTensorDType StorageDType { get; }

    /// <summary>How the packed projections and output matrix hold their values.</summary>
    public PackedElementType ElementType => Output.ElementType;

    /// <summary><c>output.weight</c> [vocab × dim], packed (the embeddings' values when the checkpoint ties them).</summary>
    public PackedMatrix Output { get; }

    /// <summary><c>norm.weight</c> [dim].</summary>
    public ReadOnlySpan<float> Norm => _norm;

    /// <summary>
    /// Bytes of memory the weights hold of their own: the packed matrices, the norms, and the embeddings
    /// when they are not mapped from the file (<see cref="MappedBytes"/> are not counted: the page cache
    /// holds them and may drop them).
    /// </summary>
    public long ResidentBytes { get; }

    /// <summary>Bytes of the checkpoint used in place through its memory map (the token embeddings of a loaded file).</summary>
    public long MappedBytes { get; }

    /// <summary>The projections of <paramref name="stack"/>, in the order they are stacked (their outputs' column order).</summary>
    public static IReadOnlyList<LinearKind> KindsOf(ProjectionStack stack) => StackKinds[(int)stack];

    /// <summary>A block's stacked projection, [Σ out × in].</summary>
    public PackedMatrix Projection(int layer, ProjectionStack stack) => _projections[layer, (int)stack];

    /// <summary>A block's <c>attention_norm.weight</c> [dim].</summary>
    public ReadOnlySpan<float> AttentionNorm(int layer) => _attentionNorms[layer];

    /// <summary>A block's <c>ffn_norm.weight</c> [dim].</summary>
    public ReadOnlySpan<float> FfnNorm(int layer) => _ffnNorms[layer];

    /// <summary>Writes the embedding of each of <paramref name="tokens"/> as a float32 row of <paramref name="destination"/> [tokens × dim].</summary>
    /// <exception cref="ArgumentOutOfRangeException">A token is outside the vocabulary.</exception>
    public void GatherEmbeddings(ReadOnlySpan<int> tokens, Span<float> destination)
    {
        var dim = Args.Dim;
        var table = _embeddings is null ? _file!.GetBytes(EmbeddingsName) : _embeddings;
        var rowBytes = dim * SafeTensorDTypes.SizeOf(_embeddingDType);
        for (var i = 0; i < tokens.Length; i++)
        {
            var t = tokens[i];
            if ((uint)t >= (uint)Args.VocabSize)
            {
                ThrowTokenOutOfRange(t, Args.VocabSize);
            }

            Widen(_embeddingDType, table.Slice(t * rowBytes, rowBytes), destination.Slice(i * dim, dim));
        }
    }

    /// <summary>
    /// Loads a model directory (<c>params.json</c> and <c>consolidated.safetensors</c>) for serving.
    /// </summary>
    /// <param name="directory">The model directory.</param>
    /// <param name="elementType">The packed projections' element type; null keeps the checkpoint's (bf16 stays bf16, anything else is float32).</param>
    public static PackedModelWeights LoadDirectory(string directory, PackedElementType? elementType = null)
    {
        var args = MistralArgs.Load(Path.Combine(directory, "params.json"));
        var weightsPath = Path.Combine(directory, "consolidated.safetensors");
        if (!File.Exists(weightsPath))
        {
            throw new ModelFormatException($"{directory}: no consolidated.safetensors.");
        }

        return Load(args, weightsPath, elementType);
    }

    /// <summary>
    /// Loads a consolidated safetensors file tensor by tensor, checking every shape as
    /// <see cref="MistralWeights.Load"/> does, and packing each projection as it is read: memory peaks at
    /// the result plus the largest tensor and one stacked projection. The token embeddings stay in the
    /// file's map.
    /// </summary>
    /// <param name="args">The hyper-parameters (from <c>params.json</c>).</param>
    /// <param name="safetensorsPath">The file.</param>
    /// <param name="elementType">The packed projections' element type; null keeps the checkpoint's (bf16 stays bf16, anything else is float32).</param>
    /// <exception cref="ModelFormatException">A tensor is missing or has the wrong shape.</exception>
    public static PackedModelWeights Load(MistralArgs args, string safetensorsPath, PackedElementType? elementType = null)
    {
        ArgumentNullException.ThrowIfNull(args);
        args.Validate();
        var file = SafeTensorsFile.Open(safetensorsPath);
        var built = new List<PackedMatrix>();
        var scratch = Array.Empty<byte>();
        try
        {
            using var handle = File.OpenHandle(safetensorsPath);
            SafeTensorInfo Check(string name, params int[] shape)
            {
                var info = MistralWeights.RequireTensor(file, safetensorsPath, name, shape);
                if (info.DType is not (SafeTensorDType.F32 or SafeTensorDType.BF16 or SafeTensorDType.F16 or SafeTensorDType.F64))
                {
                    throw new ModelFormatException($"{safetensorsPath}: tensor '{name}' has dtype {SafeTensorDTypes.Name(info.DType)}, which is not a float type.");
                }

                return info;
            }

            // Read with positioned reads into one scratch buffer rather than through the map: pages touched
            // through a map count in the process's resident set until it is unmapped, so packing 14.5 GB
            // from the map would show ~29 GB resident at the end of a 7B load. Read, the file's pages stay
            // the page cache's, and memory peaks at the result plus this buffer (the largest tensor).
            ReadOnlySpan<byte> Bytes(string name, params int[] shape)
            {
                var info = Check(name, shape);
                var length = checked((int)info.ByteLength);
                if (scratch.Length < length)
                {
                    scratch = GC.AllocateUninitializedArray<byte>(length);
                }

                var span = scratch.AsSpan(0, length);
                var at = 8 + file.Header.HeaderLength + info.Begin;
                for (var done = 0; done < length;)
                {
                    var n = RandomAccess.Read(handle, span[done..], at + done);
                    if (n == 0)
                    {
                        throw new ModelFormatException($"{safetensorsPath}: tensor '{name}' ends past the end of the file.");
                    }

                    done += n;
                }

                return span;
            }

            float[] Vector(string name, int length)
            {
                var bytes = Bytes(name, length);
                var v = new float[length];
                Widen(file.Get(name).DType, bytes, v);
                return v;
            }

            // Checked first, in the order MistralWeights.Load reads them, so a bad file fails before any packing.
            Check(EmbeddingsName, args.VocabSize, args.Dim);
            var storage = file.Contains(MistralWeights.LinearName(0, LinearKind.Wq)) ? file.Get(MistralWeights.LinearName(0, LinearKind.Wq)).DType : SafeTensorDType.F32;
            var target = elementType ?? (storage == SafeTensorDType.BF16 ? PackedElementType.BFloat16 : PackedElementType.Float32);
            var projections = new PackedMatrix[args.NLayers, StackKinds.Length];
            var attentionNorms = new float[args.NLayers][];
            var ffnNorms = new float[args.NLayers][];
            for (var l = 0; l < args.NLayers; l++)
            {
                for (var s = 0; s < StackKinds.Length; s++)
                {
                    var layer = l;
                    projections[l, s] = PackStack(args, StackKinds[s], target, (LinearKind kind, out SafeTensorDType dtype) =>
                    {
                        var name = MistralWeights.LinearName(layer, kind);
                        var (o, i) = LinearKinds.Dims(args, kind);
                        var bytes = Bytes(name, o, i);
                        dtype = file.Get(name).DType;
                        return bytes;
                    });
                    built.Add(projections[l, s]);
                }

                attentionNorms[l] = Vector($"layers.{l}.attention_norm.weight", args.Dim);
                ffnNorms[l] = Vector($"layers.{l}.ffn_norm.weight", args.Dim);
            }

            var norm = Vector("norm.weight", args.Dim);

            // An absent output.weight is tied to the embeddings (as MistralWeights.Load reads it): packed from their values.
            var outputName = file.Contains(OutputName) ? OutputName : EmbeddingsName;
            var output = PackOne(target, file.Get(outputName).DType, Bytes(outputName, args.VocabSize, args.Dim), args.VocabSize, args.Dim);
            built.Add(output);
            return new PackedModelWeights(args, storage, projections, output, attentionNorms, ffnNorms, norm, file, null, file.Get(EmbeddingsName).DType);
        }
        catch
        {
            foreach (var p in built)
            {
                p.Dispose();
            }

            file.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Packs in-memory float32 weights (random weights, tests) in <paramref name="elementType"/>:
    /// <see cref="PackedElementType.BFloat16"/> rounds every value to nearest even, embeddings included,
    /// as saving them as a bf16 checkpoint would. <paramref name="weights"/> is not kept.
    /// </summary>
    public static PackedModelWeights Pack(MistralWeights weights, PackedElementType elementType = PackedElementType.Float32)
    {
        ArgumentNullException.ThrowIfNull(weights);
        var args = weights.Args;
        var dtype = elementType == PackedElementType.BFloat16 ? SafeTensorDType.BF16 : SafeTensorDType.F32;
        static ReadOnlySpan<byte> Raw(Tensor t) => MemoryMarshal.AsBytes(t.Span);
        var projections = new PackedMatrix[args.NLayers, StackKinds.Length];
        var attentionNorms = new float[args.NLayers][];
        var ffnNorms = new float[args.NLayers][];
        for (var l = 0; l < args.NLayers; l++)
        {
            var layer = weights.Layers[l];
            for (var s = 0; s < StackKinds.Length; s++)
            {
                projections[l, s] = PackStack(args, StackKinds[s], elementType, (LinearKind kind, out SafeTensorDType dtype) =>
                {
                    dtype = SafeTensorDType.F32;
                    return Raw(layer[kind]);
                });
            }

            attentionNorms[l] = layer.AttentionNorm.Span.ToArray();
            ffnNorms[l] = layer.FfnNorm.Span.ToArray();
        }

        var output = PackOne(elementType, SafeTensorDType.F32, Raw(weights.Output), args.VocabSize, args.Dim);
        var embeddings = new byte[(long)args.VocabSize * args.Dim * SafeTensorDTypes.SizeOf(dtype)];
        if (dtype == SafeTensorDType.BF16)
        {
            ToBFloat16(weights.TokEmbeddings.Span, MemoryMarshal.Cast<byte, ushort>(embeddings.AsSpan()));
        }
        else
        {
            Raw(weights.TokEmbeddings).CopyTo(embeddings);
        }

        return new PackedModelWeights(args, weights.StorageDType, projections, output, attentionNorms, ffnNorms, weights.Norm.Span.ToArray(), null, embeddings, dtype);
    }

    /// <summary>A projection's raw bytes and the dtype they are stored in.</summary>
    private delegate ReadOnlySpan<byte> ProjectionSource(LinearKind kind, out SafeTensorDType dtype);

    private static PackedMatrix PackStack(MistralArgs args, LinearKind[] kinds, PackedElementType target, ProjectionSource source)
    {
        var columns = LinearKinds.Dims(args, kinds[0]).In;
        if (kinds.Length == 1)
        {
            var bytes = source(kinds[0], out var dtype);
            return PackOne(target, dtype, bytes, LinearKinds.Dims(args, kinds[0]).Out, columns);
        }

        // Row-major [out × in] matrices stack by concatenation, into one temporary in the target type
        // (the only copy a load makes besides the packed result).
        var rows = 0;
        foreach (var kind in kinds)
        {
            rows += LinearKinds.Dims(args, kind).Out;
        }

        var length = (long)rows * columns;
        if (target == PackedElementType.BFloat16)
        {
            var stacked = GC.AllocateUninitializedArray<ushort>(checked((int)length));
            var at = 0;
            foreach (var kind in kinds)
            {
                var bytes = source(kind, out var dtype);
                at += ToBFloat16(dtype, bytes, stacked.AsSpan(at));
            }

            return PackedMatrix.FromBFloat16(stacked, rows, columns);
        }
        else
        {
            var stacked = GC.AllocateUninitializedArray<float>(checked((int)length));
            var at = 0;
            foreach (var kind in kinds)
            {
                var bytes = source(kind, out var dtype);
                var n = bytes.Length / SafeTensorDTypes.SizeOf(dtype);
                Widen(dtype, bytes, stacked.AsSpan(at, n));
                at += n;
            }

            return new PackedMatrix(stacked, rows, columns);
        }
    }

    /// <summary>Packs one matrix, using the source bytes in place when they already are the target type.</summary>
    private static PackedMatrix PackOne(PackedElementType target, SafeTensorDType dtype, ReadOnlySpan<byte> bytes, int rows, int columns)
    {
        if (target == PackedElementType.BFloat16)
        {
            if (dtype == SafeTensorDType.BF16)
            {
                return PackedMatrix.FromBFloat16(MemoryMarshal.Cast<byte, ushort>(bytes), rows, columns);
            }

            var rounded = GC.AllocateUninitializedArray<ushort>(checked(rows * columns));
            ToBFloat16(dtype, bytes, rounded);
            return PackedMatrix.FromBFloat16(rounded, rows, columns);
        }

        if (dtype == SafeTensorDType.F32)
        {
            return new PackedMatrix(MemoryMarshal.Cast<byte, float>(bytes), rows, columns);
        }

        var wide = GC.AllocateUninitializedArray<float>(checked(rows * columns));
        Widen(dtype, bytes, wide);
        return new PackedMatrix(wide, rows, columns);
    }

    /// <summary>Writes raw float bytes as bf16 bits (a copy for BF16, round to nearest even otherwise); returns the values written.</summary>
    private static int ToBFloat16(SafeTensorDType dtype, ReadOnlySpan<byte> bytes, Span<ushort> destination)
    {
        if (dtype == SafeTensorDType.BF16)
        {
            var bits = MemoryMarshal.Cast<byte, ushort>(bytes);
            bits.CopyTo(destination);
            return bits.Length;
        }

        var n = bytes.Length / SafeTensorDTypes.SizeOf(dtype);
        if (dtype == SafeTensorDType.F32)
        {
            ToBFloat16(MemoryMarshal.Cast<byte, float>(bytes), destination);
            return n;
        }

        // F16 and F64 round through float32, a row-sized chunk at a time.
        var chunk = new float[Math.Min(n, 1 << 16)];
        var elementSize = SafeTensorDTypes.SizeOf(dtype);
        for (var start = 0; start < n; start += chunk.Length)
        {
            var count = Math.Min(chunk.Length, n - start);
            Widen(dtype, bytes.Slice(start * elementSize, count * elementSize), chunk.AsSpan(0, count));
            ToBFloat16(chunk.AsSpan(0, count), destination.Slice(start, count));
        }

        return n;
    }

    private static void ToBFloat16(ReadOnlySpan<float> values, Span<ushort> destination)
    {
        for (var i = 0; i < values.Length; i++)
        {
            destination[i] = SafeTensorDTypes.ToBFloat16(values[i]);
        }
    }

    private static void Widen(SafeTensorDType dtype, ReadOnlySpan<byte> bytes, Span<float> destination)
    {
        if (dtype == SafeTensorDType.BF16)
        {
            // bf16 → float32 is a 16-bit shift: done here with SIMD-friendly integer widening rather than the scalar converter.
            var bits = MemoryMarshal.Cast<byte, ushort>(bytes);
            var wide = MemoryMarshal.Cast<float, uint>(destination);
            for (var i = 0; i < bits.Length; i++)
            {
                wide[i] = (uint)bits[i] << 16;
            }

            return;
        }

        SafeTensorsFile.ConvertToFloat32(dtype, bytes, destination, "a weight");
    }

    [DoesNotReturn]
    private static void ThrowTokenOutOfRange(int token, int vocab)
        => throw new ArgumentOutOfRangeException(nameof(token), $"Token {token} is outside the vocabulary of {vocab}.");

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var p in _projections)
        {
            p.Dispose();
        }

        Output.Dispose();
        _file?.Dispose();
    }
}
