using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using Atelier.Features.Schema;

namespace Atelier.Features.Online;

/// <summary>
/// The compact binary form of one row's values in the online store: per field a presence byte,
/// then the value (int64 and float64 as 8 little-endian bytes, bool as 1, string as a 4-byte
/// length and UTF-8, a vector as its floats). The schema is not repeated: the view version says it.
/// </summary>
internal static class OnlineValueCodec
{
    public static byte[] Encode(IReadOnlyList<FeatureField> fields, object?[] values)
    {
        var size = 0;
        for (var i = 0; i < fields.Count; i++)
        {
            size += 1 + values[i] switch
            {
                null => 0,
                string s => 4 + Encoding.UTF8.GetByteCount(s),
                bool => 1,
                float[] v => v.Length * sizeof(float),
                _ => 8,
            };
        }

        var buffer = new byte[size];
        var span = buffer.AsSpan();
        for (var i = 0; i < fields.Count; i++)
        {
            var value = values[i];
            span[0] = value is null ? (byte)0 : (byte)1;
            span = span[1..];
            switch (value)
            {
                case null:
                    break;
                case long l:
                    BinaryPrimitives.WriteInt64LittleEndian(span, l);
                    span = span[8..];
                    break;
                case double d:
                    BinaryPrimitives.WriteDoubleLittleEndian(span, d);
                    span = span[8..];
                    break;
                case bool b:
                    span[0] = b ? (byte)1 : (byte)0;
                    span = span[1..];
                    break;
                case string s:
                    var n = Encoding.UTF8.GetBytes(s, span[4..]);
                    BinaryPrimitives.WriteInt32LittleEndian(span, n);
                    span = span[(4 + n)..];
                    break;
                case float[] v:
                    MemoryMarshal.AsBytes(v.AsSpan()).CopyTo(span);
                    span = span[(v.Length * sizeof(float))..];
                    break;
                default:
                    throw new InvalidOperationException($"Unexpected feature value of type {value.GetType().Name}.");
            }
        }

        return buffer;
    }

    public static object?[] Decode(IReadOnlyList<FeatureField> fields, ReadOnlySpan<byte> span)
    {
        var values = new object?[fields.Count];
        for (var i = 0; i < fields.Count; i++)
        {
            var present = span[0] != 0;
            span = span[1..];
            if (!present)
            {
                continue;
            }

            var field = fields[i];
            switch (field.Type)
            {
                case FeatureType.Int64:
                    values[i] = BinaryPrimitives.ReadInt64LittleEndian(span);
                    span = span[8..];
                    break;
                case FeatureType.Float64:
                    values[i] = BinaryPrimitives.ReadDoubleLittleEndian(span);
                    span = span[8..];
                    break;
                case FeatureType.Bool:
                    values[i] = span[0] != 0;
                    span = span[1..];
                    break;
                case FeatureType.String:
                    var n = BinaryPrimitives.ReadInt32LittleEndian(span);
                    values[i] = Encoding.UTF8.GetString(span.Slice(4, n));
                    span = span[(4 + n)..];
                    break;
                case FeatureType.Float32Vector:
                    var bytes = field.Dimension * sizeof(float);
                    values[i] = MemoryMarshal.Cast<byte, float>(span[..bytes]).ToArray();
                    span = span[bytes..];
                    break;
            }
        }

        return values;
    }
}
