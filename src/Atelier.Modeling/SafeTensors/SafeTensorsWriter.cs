using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace Atelier.Modeling.SafeTensors;

/// <summary>
/// Builds a safetensors file: tensors are added (converted to their stored dtype at once), then
/// written in name order with a header padded to 8 bytes. The file is written to a temporary name,
/// flushed to disk and renamed, so a crash leaves either the whole file or none.
/// </summary>
public sealed class SafeTensorsWriter
{
    private readonly SortedDictionary<string, (SafeTensorDType DType, long[] Shape, byte[] Data)> _tensors = new(StringComparer.Ordinal);
    private readonly SortedDictionary<string, string> _metadata = new(StringComparer.Ordinal);

    /// <summary>Adds a float tensor, stored as F32, BF16 or F16.</summary>
    public SafeTensorsWriter Add(string name, ReadOnlySpan<float> values, ReadOnlySpan<int> shape, SafeTensorDType dtype = SafeTensorDType.F32)
    {
        long count = 1;
        var longShape = new long[shape.Length];
        for (var i = 0; i < shape.Length; i++)
        {
            count *= shape[i];
            longShape[i] = shape[i];
        }

        if (count != values.Length)
        {
            throw new ArgumentException($"Tensor '{name}' has {values.Length} values but shape [{string.Join(", ", longShape)}].", nameof(values));
        }

        byte[] data;
        switch (dtype)
        {
            case SafeTensorDType.F32:
                data = MemoryMarshal.AsBytes(values).ToArray();
                break;
            case SafeTensorDType.BF16:
                data = new byte[values.Length * 2];
                for (var i = 0; i < values.Length; i++)
                {
                    BinaryPrimitives.WriteUInt16LittleEndian(data.AsSpan(i * 2), SafeTensorDTypes.ToBFloat16(values[i]));
                }

                break;
            case SafeTensorDType.F16:
                data = new byte[values.Length * 2];
                for (var i = 0; i < values.Length; i++)
                {
                    BinaryPrimitives.WriteHalfLittleEndian(data.AsSpan(i * 2), (Half)values[i]);
                }

                break;
            default:
                throw new ArgumentException($"Float tensors are stored as F32, BF16 or F16, not {dtype}.", nameof(dtype));
        }

        return AddRaw(name, dtype, longShape, data);
    }

    /// <summary>Adds a tensor from raw little-endian bytes.</summary>
    public SafeTensorsWriter AddRaw(string name, SafeTensorDType dtype, long[] shape, byte[] data)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        if (name == "__metadata__")
        {
            throw new ArgumentException("'__metadata__' is reserved.", nameof(name));
        }

        if (!_tensors.TryAdd(name, (dtype, shape, data)))
        {
            throw new ArgumentException($"Tensor '{name}' was already added.", nameof(name));
        }

        return this;
    }

    /// <summary>Adds a <c>__metadata__</c> string.</summary>
    public SafeTensorsWriter AddMetadata(string key, string value)
    {
        _metadata[key] = value;
        return this;
    }

    /// <summary>The header JSON and data layout, as bytes.</summary>
    internal byte[] BuildHeader()
    {
        var entries = new List<(string Name, SafeTensorDType DType, long[] Shape, long Length)>(_tensors.Count);
        foreach (var (name, t) in _tensors)
        {
            entries.Add((name, t.DType, t.Shape, t.Data.Length));
        }

        return BuildHeader(entries, _metadata);
    }

    /// <summary>
    /// A header (JSON padded with spaces to a multiple of 8 bytes, without the length prefix) for tensors
    /// whose data follow one another in the order given, each <c>Length</c> bytes long.
    /// </summary>
    internal static byte[] BuildHeader(IReadOnlyList<(string Name, SafeTensorDType DType, long[] Shape, long Length)> tensors, IEnumerable<KeyValuePair<string, string>> metadata)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            var wroteMetadata = false;
            foreach (var (k, v) in metadata)
            {
                if (!wroteMetadata)
                {
                    w.WriteStartObject("__metadata__");
                    wroteMetadata = true;
                }

                w.WriteString(k, v);
            }

            if (wroteMetadata)
            {
                w.WriteEndObject();
            }

            long offset = 0;
            foreach (var (name, dtype, shape, length) in tensors)
            {
                w.WriteStartObject(name);
                w.WriteString("dtype", SafeTensorDTypes.Name(dtype));
                w.WriteStartArray("shape");
                foreach (var d in shape)
                {
                    w.WriteNumberValue(d);
                }

                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + length);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += length;
            }

            w.WriteEndObject();
        }

        // Pad with spaces so the data section starts 8-byte aligned (as the reference writer does).
        var json = ms.ToArray();
        var padded = (json.Length + 7) / 8 * 8;
        var result = new byte[padded];
        json.CopyTo(result, 0);
        result.AsSpan(json.Length).Fill((byte)' ');
        return result;
    }

    /// <summary>Writes the file atomically (temp file, flush to disk, rename).</summary>
    public void Save(string path)
    {
        var header = BuildHeader();
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
        Atelier.Core.IO.AtomicFile.Write(path, fs =>
        {
            Span<byte> prefix = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(prefix, (ulong)header.Length);
            fs.Write(prefix);
            fs.Write(header);
            foreach (var (_, t) in _tensors)
            {
                fs.Write(t.Data);
            }
        });
    }

    /// <summary>A readable summary for diagnostics.</summary>
    public override string ToString()
    {
        var sb = new StringBuilder();
        foreach (var (name, t) in _tensors)
        {
            sb.Append(name).Append(": ").Append(SafeTensorDTypes.Name(t.DType)).Append(" [").AppendJoin(", ", t.Shape).AppendLine("]");
        }

        return sb.ToString();
    }
}
