using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace Atelier.Modeling.Tests;

/// <summary>mistral-inference would refuse the adapter; the message says which of its checks failed.</summary>
internal sealed class LoraRejectedException(string message) : Exception(message);

/// <summary>
/// A strict stand-in for mistral-inference's <c>LoRALoaderMixin.load_lora</c> on a model loaded in the dtype of
/// its <c>consolidated.safetensors</c>, written from the facts of that loader rather than with Atelier's code:
/// it parses the safetensors bytes itself, and rejects what mistral-inference rejects (more than one dtype,
/// a dtype other than the model's, a key without "lora", a projection with no pair) and, stricter, any
/// extra tensor, a shape that is not <c>lora_A</c> [r × in] / <c>lora_B</c> [out × r], or ranks that differ.
/// Then it merges as mistral-inference does when params.json has no <c>lora</c> section:
/// <c>W' = W + (B @ A) · scaling</c> for every linear except <c>output</c>, each operation rounded to the
/// model's dtype (torch computes in the tensors' dtype, accumulating matmuls in float32).
/// </summary>
internal static class MistralInferenceLoraLoader
{
    private static readonly string[] Modules =
        ["attention.wq", "attention.wk", "attention.wv", "attention.wo", "feed_forward.w1", "feed_forward.w2", "feed_forward.w3"];

    /// <summary>One tensor of a safetensors file: its dtype as the header spells it, shape and raw bytes.</summary>
    public sealed record RawTensor(string DType, long[] Shape, byte[] Bytes)
    {
        /// <summary>The values widened to float32 (exactly, for F32, F16 and BF16).</summary>
        public float[] ToFloats()
        {
            var count = Bytes.Length / ElementSize(DType);
            var values = new float[count];
            for (var i = 0; i < count; i++)
            {
                values[i] = DType switch
                {
                    "F32" => BinaryPrimitives.ReadSingleLittleEndian(Bytes.AsSpan(i * 4)),
                    "F16" => (float)BinaryPrimitives.ReadHalfLittleEndian(Bytes.AsSpan(i * 2)),
                    "BF16" => BitConverter.UInt32BitsToSingle((uint)BinaryPrimitives.ReadUInt16LittleEndian(Bytes.AsSpan(i * 2)) << 16),
                    _ => throw new InvalidDataException($"Not a float dtype: {DType}."),
                };
            }

            return values;
        }
    }

    /// <summary>The tensors of a safetensors file, parsed from its bytes (8-byte header length, JSON header, data).</summary>
    public static Dictionary<string, RawTensor> ReadSafeTensors(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var headerLength = checked((int)BinaryPrimitives.ReadUInt64LittleEndian(bytes));
        using var header = JsonDocument.Parse(Encoding.UTF8.GetString(bytes, 8, headerLength));
        var data = 8 + headerLength;
        var tensors = new Dictionary<string, RawTensor>(StringComparer.Ordinal);
        foreach (var entry in header.RootElement.EnumerateObject())
        {
            if (entry.Name == "__metadata__")
            {
                continue;
            }

            var dtype = entry.Value.GetProperty("dtype").GetString()!;
            var shape = entry.Value.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()).ToArray();
            var offsets = entry.Value.GetProperty("data_offsets").EnumerateArray().Select(d => checked((int)d.GetInt64())).ToArray();
            var length = offsets[1] - offsets[0];
            if (length != shape.Aggregate(1L, (a, d) => a * d) * ElementSize(dtype))
            {
                throw new InvalidDataException($"{path}: '{entry.Name}' has {length} bytes for shape [{string.Join(", ", shape)}] of {dtype}.");
            }

            tensors[entry.Name] = new RawTensor(dtype, shape, bytes.AsSpan(data + offsets[0], length).ToArray());
        }

        return tensors;
    }

    /// <summary>
    /// Loads the adapter at <paramref name="loraPath"/> onto the model in <paramref name="modelDirectory"/> and
    /// returns every merged projection weight by its checkpoint name, widened to float32 from the model's dtype.
    /// </summary>
    public static Dictionary<string, float[]> LoadAndMerge(string modelDirectory, string loraPath, float scaling)
    {
        var model = ReadSafeTensors(Path.Combine(modelDirectory, "consolidated.safetensors"));
        var modelDTypes = model.Values.Select(t => t.DType).Distinct().ToArray();
        if (modelDTypes.Length != 1)
        {
            throw new InvalidDataException($"The base model mixes dtypes {string.Join(", ", modelDTypes)}.");
        }

        var modelDType = modelDTypes[0];
        using var paramsJson = JsonDocument.Parse(File.ReadAllText(Path.Combine(modelDirectory, "params.json")));
        var p = paramsJson.RootElement;
        var dim = p.GetProperty("dim").GetInt32();
        var nLayers = p.GetProperty("n_layers").GetInt32();
        var headDim = p.GetProperty("head_dim").GetInt32();
        var hidden = p.GetProperty("hidden_dim").GetInt32();
        var q = p.GetProperty("n_heads").GetInt32() * headDim;
        var kv = p.GetProperty("n_kv_heads").GetInt32() * headDim;
        (int Out, int In) Dims(string module) => module switch
        {
            "attention.wq" => (q, dim),
            "attention.wk" or "attention.wv" => (kv, dim),
            "attention.wo" => (dim, q),
            "feed_forward.w1" or "feed_forward.w3" => (hidden, dim),
            _ => (dim, hidden),
        };

        var lora = ReadSafeTensors(loraPath);

        // mistral-inference: one dtype for all LoRA weights, and it must be the model's.
        var loraDTypes = lora.Values.Select(t => t.DType).Distinct().ToArray();
        if (loraDTypes.Length != 1)
        {
            throw new LoraRejectedException($"LoRA weights have multiple different dtypes {string.Join(", ", loraDTypes)}.");
        }

        if (loraDTypes[0] != modelDType)
        {
            throw new LoraRejectedException($"LoRA weights dtype differs from model's dtype {loraDTypes[0]} != {modelDType}.");
        }

        if (lora.Keys.FirstOrDefault(k => !k.Contains("lora", StringComparison.Ordinal)) is { } notLora)
        {
            throw new LoraRejectedException($"'{notLora}' is not a LoRA weight.");
        }

        // Every projection of every layer has a pair (mistral-inference indexes them all), nothing else is there.
        var expected = new HashSet<string>(StringComparer.Ordinal);
        for (var l = 0; l < nLayers; l++)
        {
            foreach (var module in Modules)
            {
                expected.Add($"layers.{l}.{module}.lora_A.weight");
                expected.Add($"layers.{l}.{module}.lora_B.weight");
            }
        }

        if (expected.FirstOrDefault(n => !lora.ContainsKey(n)) is { } missing)
        {
            throw new LoraRejectedException($"Missing LoRA weight '{missing}'.");
        }

        if (lora.Keys.FirstOrDefault(n => !expected.Contains(n)) is { } extra)
        {
            throw new LoraRejectedException($"Unexpected LoRA weight '{extra}'.");
        }

        var rank = lora["layers.0.attention.wq.lora_A.weight"].Shape[0];
        var merged = new Dictionary<string, float[]>(StringComparer.Ordinal);
        for (var l = 0; l < nLayers; l++)
        {
            foreach (var module in Modules)
            {
                var (o, i) = Dims(module);
                var name = $"layers.{l}.{module}";
                var a = lora[name + ".lora_A.weight"];
                var b = lora[name + ".lora_B.weight"];
                if (!a.Shape.SequenceEqual([rank, (long)i]) || !b.Shape.SequenceEqual([(long)o, rank]))
                {
                    throw new LoraRejectedException(
                        $"'{name}' has lora_A [{string.Join(", ", a.Shape)}] and lora_B [{string.Join(", ", b.Shape)}]; expected [{rank}, {i}] and [{o}, {rank}].");
                }

                var w = model[name + ".weight"].ToFloats();
                var av = a.ToFloats();
                var bv = b.ToFloats();
                var r = (int)rank;
                var scale = Round(scaling, modelDType);
                var result = new float[o * i];
                for (var row = 0; row < o; row++)
                {
                    for (var col = 0; col < i; col++)
                    {
                        var acc = 0f;
                        for (var k = 0; k < r; k++)
                        {
                            acc += bv[(row * r) + k] * av[(k * i) + col];
                        }

                        var update = Round(Round(acc, modelDType) * scale, modelDType);
                        result[(row * i) + col] = Round(w[(row * i) + col] + update, modelDType);
                    }
                }

                merged[name + ".weight"] = result;
            }
        }

        return merged;
    }

    /// <summary>Rounds a float32 to the nearest value of the dtype, ties to even, as torch's casts do.</summary>
    public static float Round(float value, string dtype) => dtype switch
    {
        "F32" => value,
        "F16" => (float)(Half)value,
        "BF16" => RoundToBFloat16(value),
        _ => throw new InvalidDataException($"Not a float dtype: {dtype}."),
    };

    /// <summary>The bfloat16 nearest to <paramref name="value"/> (ties to even), found from its two neighbours.</summary>
    private static float RoundToBFloat16(float value)
    {
        if (float.IsNaN(value) || float.IsInfinity(value))
        {
            return value;
        }

        // The bfloat16 values either side: the float32 truncated to 16 bits, and the next one away from zero.
        var bits = BitConverter.SingleToUInt32Bits(value);
        var down = bits & 0xFFFF0000u;
        var up = down + 0x10000u;
        var lo = (double)BitConverter.UInt32BitsToSingle(down);
        var hi = (double)BitConverter.UInt32BitsToSingle(up);
        var v = (double)value;
        var dLo = Math.Abs(v - lo);
        var dHi = Math.Abs(hi - v);
        var pick = dLo < dHi ? down : dHi < dLo ? up : ((down >> 16) & 1) == 0 ? down : up;
        return BitConverter.UInt32BitsToSingle(pick);
    }

    private static int ElementSize(string dtype) => dtype switch
    {
        "F32" => 4,
        "F16" or "BF16" => 2,
        _ => throw new InvalidDataException($"Not a float dtype: {dtype}."),
    };
}
