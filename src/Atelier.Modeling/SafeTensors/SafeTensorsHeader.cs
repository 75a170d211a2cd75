using System.Text.Json;

namespace Atelier.Modeling.SafeTensors;

/// <summary>One tensor's entry in a safetensors header.</summary>
/// <param name="Name">The tensor's name.</param>
/// <param name="DType">Its element type.</param>
/// <param name="Shape">Its dimensions.</param>
/// <param name="Begin">Offset of its first byte, relative to the start of the data section.</param>
/// <param name="End">Offset one past its last byte.</param>
public sealed record SafeTensorInfo(string Name, SafeTensorDType DType, long[] Shape, long Begin, long End)
{
    /// <summary>The number of elements.</summary>
    public long ElementCount
    {
        get
        {
            long n = 1;
            foreach (var d in Shape)
            {
                n *= d;
            }

            return n;
        }
    }

    /// <summary>The number of bytes.</summary>
    public long ByteLength => End - Begin;
}

/// <summary>
/// The parsed and validated header of a safetensors file. Validation follows the format's own
/// rules: a bounded header, a JSON object of entries with known dtypes, non-negative shapes, and
/// data offsets that exactly tile the data section (in bounds, no overlaps, no holes), each entry's
/// size being the product of its shape times its element size.
/// </summary>
public sealed class SafeTensorsHeader
{
    /// <summary>The default bound on the header size (as the reference implementation: 100 MB).</summary>
    public const long DefaultMaxHeaderBytes = 100_000_000;

    private readonly Dictionary<string, SafeTensorInfo> _tensors;

    private SafeTensorsHeader(Dictionary<string, SafeTensorInfo> tensors, Dictionary<string, string> metadata, long headerLength)
    {
        _tensors = tensors;
        Metadata = metadata;
        HeaderLength = headerLength;
    }

    /// <summary>Entries by name.</summary>
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors => _tensors;

    /// <summary>The free-form <c>__metadata__</c> strings.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Length of the JSON header in bytes (the data section starts at 8 + this).</summary>
    public long HeaderLength { get; }

    /// <summary>
    /// Validates the 8-byte length prefix against the file length and the bound; returns the header length.
    /// </summary>
    public static long ReadHeaderLength(ReadOnlySpan<byte> prefix, long fileLength, long maxHeaderBytes, string source)
    {
        if (fileLength < 8 || prefix.Length < 8)
        {
            throw new SafeTensorsFormatException($"{source}: file of {fileLength} bytes is too short for a safetensors header.");
        }

        var n = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (n > (ulong)maxHeaderBytes)
        {
            throw new SafeTensorsFormatException($"{source}: header length {n} exceeds the limit of {maxHeaderBytes} bytes.");
        }

        if (n < 2)
        {
            throw new SafeTensorsFormatException($"{source}: header length {n} is too small for a JSON object.");
        }

        if ((long)n > fileLength - 8)
        {
            throw new SafeTensorsFormatException($"{source}: header length {n} runs past the end of the file ({fileLength} bytes).");
        }

        return (long)n;
    }

    /// <summary>Parses and validates header JSON against a data section of <paramref name="dataLength"/> bytes.</summary>
    public static SafeTensorsHeader Parse(ReadOnlySpan<byte> json, long dataLength, string source)
    {
        if (json.Length == 0 || json[0] != (byte)'{')
        {
            throw new SafeTensorsFormatException($"{source}: header does not start with '{{'.");
        }

        // JsonDocument checks UTF-8 inside strings only when they are read; refuse it up front.
        if (!System.Text.Unicode.Utf8.IsValid(json))
        {
            throw new SafeTensorsFormatException($"{source}: header is not valid UTF-8.");
        }

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json.ToArray(), new JsonDocumentOptions { MaxDepth = 4 });
        }
        catch (JsonException e)
        {
            throw new SafeTensorsFormatException($"{source}: header is not valid JSON ({e.Message}).", e);
        }

        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new SafeTensorsFormatException($"{source}: header is not a JSON object.");
            }

            var tensors = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var sawMetadata = false;
            foreach (var prop in root.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    if (sawMetadata)
                    {
                        throw new SafeTensorsFormatException($"{source}: duplicate __metadata__.");
                    }

                    sawMetadata = true;
                    ParseMetadata(prop.Value, metadata, source);
                    continue;
                }

                if (tensors.ContainsKey(prop.Name))
                {
                    throw new SafeTensorsFormatException($"{source}: tensor '{prop.Name}' appears twice.");
                }

                tensors.Add(prop.Name, ParseEntry(prop.Name, prop.Value, source));
            }

            CheckTiling(tensors, dataLength, source);
            return new SafeTensorsHeader(tensors, metadata, json.Length);
        }
    }

    private static void ParseMetadata(JsonElement value, Dictionary<string, string> metadata, string source)
    {
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new SafeTensorsFormatException($"{source}: __metadata__ is not an object.");
        }

        foreach (var m in value.EnumerateObject())
        {
            if (m.Value.ValueKind != JsonValueKind.String)
            {
                throw new SafeTensorsFormatException($"{source}: __metadata__.{m.Name} is not a string.");
            }

            if (!metadata.TryAdd(m.Name, m.Value.GetString()!))
            {
                throw new SafeTensorsFormatException($"{source}: __metadata__.{m.Name} appears twice.");
            }
        }
    }

    private static SafeTensorInfo ParseEntry(string name, JsonElement value, string source)
    {
        var where = $"{source}: tensor '{name}'";
        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new SafeTensorsFormatException($"{where} is not an object.");
        }

        string? dtypeName = null;
        long[]? shape = null;
        long[]? offsets = null;
        foreach (var p in value.EnumerateObject())
        {
            switch (p.Name)
            {
                case "dtype" when dtypeName is null:
                    if (p.Value.ValueKind != JsonValueKind.String)
                    {
                        throw new SafeTensorsFormatException($"{where}: dtype is not a string.");
                    }

                    dtypeName = p.Value.GetString()!;
                    break;
                case "shape" when shape is null:
                    shape = ReadIntegers(p.Value, $"{where}: shape", null);
                    break;
                case "data_offsets" when offsets is null:
                    offsets = ReadIntegers(p.Value, $"{where}: data_offsets", 2);
                    break;
                default:
                    throw new SafeTensorsFormatException($"{where}: unexpected or repeated field '{p.Name}'.");
            }
        }

        if (dtypeName is null || shape is null || offsets is null)
        {
            throw new SafeTensorsFormatException($"{where}: needs dtype, shape and data_offsets.");
        }

        if (!SafeTensorDTypes.TryParse(dtypeName, out var dtype))
        {
            throw new SafeTensorsFormatException($"{where}: unknown dtype '{dtypeName}'.");
        }

        if (offsets[1] < offsets[0])
        {
            throw new SafeTensorsFormatException($"{where}: data_offsets [{offsets[0]}, {offsets[1]}] end before they begin.");
        }

        long bytes;
        try
        {
            bytes = SafeTensorDTypes.SizeOf(dtype);
            foreach (var d in shape)
            {
                bytes = checked(bytes * d);
            }
        }
        catch (OverflowException e)
        {
            throw new SafeTensorsFormatException($"{where}: shape [{string.Join(", ", shape)}] is too large.", e);
        }

        if (bytes != offsets[1] - offsets[0])
        {
            throw new SafeTensorsFormatException(
                $"{where}: shape [{string.Join(", ", shape)}] of {dtypeName} needs {bytes} bytes but data_offsets [{offsets[0]}, {offsets[1]}] hold {offsets[1] - offsets[0]}.");
        }

        return new SafeTensorInfo(name, dtype, shape, offsets[0], offsets[1]);
    }

    private static long[] ReadIntegers(JsonElement value, string where, int? count)
    {
        if (value.ValueKind != JsonValueKind.Array)
        {
            throw new SafeTensorsFormatException($"{where} is not an array.");
        }

        var n = value.GetArrayLength();
        if ((count is not null && n != count) || n > 64)
        {
            throw new SafeTensorsFormatException($"{where} has {n} entries.");
        }

        var result = new long[n];
        var i = 0;
        foreach (var e in value.EnumerateArray())
        {
            if (e.ValueKind != JsonValueKind.Number || !e.TryGetInt64(out var x) || x < 0)
            {
                throw new SafeTensorsFormatException($"{where}[{i}] is not a non-negative integer.");
            }

            result[i++] = x;
        }

        return result;
    }

    private static void CheckTiling(Dictionary<string, SafeTensorInfo> tensors, long dataLength, string source)
    {
        var sorted = new List<SafeTensorInfo>(tensors.Values);
        sorted.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
        long expected = 0;
        foreach (var t in sorted)
        {
            if (t.End > dataLength)
            {
                throw new SafeTensorsFormatException($"{source}: tensor '{t.Name}' data_offsets [{t.Begin}, {t.End}] run past the data section of {dataLength} bytes.");
            }

            if (t.Begin < expected)
            {
                throw new SafeTensorsFormatException($"{source}: tensor '{t.Name}' data_offsets [{t.Begin}, {t.End}] overlap the previous tensor (which ends at {expected}).");
            }

            if (t.Begin > expected)
            {
                throw new SafeTensorsFormatException($"{source}: bytes [{expected}, {t.Begin}) before tensor '{t.Name}' belong to no tensor.");
            }

            expected = t.End;
        }

        if (expected != dataLength)
        {
            throw new SafeTensorsFormatException($"{source}: bytes [{expected}, {dataLength}) at the end of the data section belong to no tensor.");
        }
    }
}
