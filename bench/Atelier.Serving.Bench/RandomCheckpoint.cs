using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Atelier.Modeling.Mistral;

/// <summary>
/// Writes a Mistral-shaped checkpoint of random float32 (or bf16) weights as a safetensors file, streaming
/// one tensor at a time, so that the C# engine (through <see cref="MistralWeights.Load"/>) and the PyTorch
/// peer read the very same bytes.
/// </summary>
/// <remarks>
/// Values are uniform with the standard deviation <see cref="MistralWeights.CreateRandom"/> uses
/// (1/√fan_in for projections, 1 for embeddings, norms at one): for a throughput benchmark only the
/// scale matters, and a counter hash fills 1B values in parallel in seconds, where the Box–Muller
/// generator takes minutes on two cores.
/// </remarks>
internal static class RandomCheckpoint
{
    public static void Write(MistralArgs args, string path, ulong seed, bool bf16 = false)
    {
        var elementSize = bf16 ? 2 : 4;
        var tensors = new List<(string Name, int[] Shape, double Std)>
        {
            ("tok_embeddings.weight", [args.VocabSize, args.Dim], 1.0),
        };
        for (var l = 0; l < args.NLayers; l++)
        {
            foreach (var kind in LinearKinds.All)
            {
                var (o, i) = LinearKinds.Dims(args, kind);
                tensors.Add((MistralWeights.LinearName(l, kind), [o, i], 1.0 / Math.Sqrt(i)));
            }

            tensors.Add(($"layers.{l}.attention_norm.weight", [args.Dim], 0));
            tensors.Add(($"layers.{l}.ffn_norm.weight", [args.Dim], 0));
        }

        tensors.Add(("norm.weight", [args.Dim], 0));
        tensors.Add(("output.weight", [args.VocabSize, args.Dim], 1.0 / Math.Sqrt(args.Dim)));

        // Data in the order of the header's (sorted) keys, without gaps, as safetensors readers expect.
        tensors.Sort((x, y) => string.CompareOrdinal(x.Name, y.Name));
        var header = new Dictionary<string, object>(StringComparer.Ordinal) { ["__metadata__"] = new Dictionary<string, string> { ["format"] = "pt" } };
        long offset = 0;
        foreach (var (name, shape, _) in tensors)
        {
            var bytes = elementSize * shape.Aggregate(1L, (a, b) => a * b);
            header[name] = new { dtype = bf16 ? "BF16" : "F32", shape, data_offsets = new[] { offset, offset + bytes } };
            offset += bytes;
        }

        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        var padded = (json.Length + 7) / 8 * 8; // keeps every tensor 8-byte aligned; the spec allows trailing spaces
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20);
        Span<byte> prefix = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)padded);
        fs.Write(prefix);
        fs.Write(json);
        for (var i = json.Length; i < padded; i++)
        {
            fs.WriteByte((byte)' ');
        }

        var buffer = new float[1 << 22];
        var half = bf16 ? new ushort[buffer.Length] : null;
        ulong index = 0;
        foreach (var (_, shape, std) in tensors)
        {
            var count = shape.Aggregate(1L, (a, b) => a * b);
            for (long done = 0; done < count;)
            {
                var n = (int)Math.Min(buffer.Length, count - done);
                Fill(buffer, n, std, seed, index);
                index += (ulong)n;
                if (half is null)
                {
                    fs.Write(MemoryMarshal.AsBytes(buffer.AsSpan(0, n)));
                }
                else
                {
                    Parallel.For(0, (n + 65535) / 65536, c =>
                    {
                        var end = Math.Min(n, (c + 1) * 65536);
                        for (var i = c * 65536; i < end; i++)
                        {
                            half[i] = Atelier.Modeling.SafeTensors.SafeTensorDTypes.ToBFloat16(buffer[i]);
                        }
                    });
                    fs.Write(MemoryMarshal.AsBytes(half.AsSpan(0, n)));
                }

                done += n;
            }
        }
    }

    private static void Fill(float[] buffer, int count, double std, ulong seed, ulong index)
    {
        if (std == 0)
        {
            buffer.AsSpan(0, count).Fill(1f);
            return;
        }

        // Uniform on [−√3σ, √3σ] has standard deviation σ.
        var scale = (float)(2 * Math.Sqrt(3) * std);
        Parallel.For(0, (count + 65535) / 65536, c =>
        {
            var end = Math.Min(count, (c + 1) * 65536);
            for (var i = c * 65536; i < end; i++)
            {
                buffer[i] = (Atelier.Modeling.Tensors.DeterministicRandom.HashUniform(seed, index + (ulong)i) - 0.5f) * scale;
            }
        });
    }
}
