using System.Buffers.Binary;

namespace Atelier.Training.Loading;

/// <summary>
/// A bounds-checked view of one FlatBuffers table, just enough to read the Arrow IPC footer and
/// record batch messages (Apache.Arrow keeps its FlatBuffers types internal). Every offset is
/// checked against the buffer, so a corrupt shard gives an <see cref="InvalidDataException"/>
/// rather than an out-of-range read.
/// </summary>
internal readonly struct FlatBufferTable
{
    private readonly ReadOnlyMemory<byte> _buffer;
    private readonly int _table;
    private readonly int _vtable;
    private readonly int _vtableSize;

    private FlatBufferTable(ReadOnlyMemory<byte> buffer, int table)
    {
        _buffer = buffer;
        _table = table;
        _vtable = Checked(table - ReadInt32(buffer.Span, table), 4, buffer.Length);
        _vtableSize = BinaryPrimitives.ReadUInt16LittleEndian(buffer.Span[_vtable..]);
        Checked(_vtable, _vtableSize, buffer.Length);
    }

    /// <summary>The root table of a FlatBuffers buffer.</summary>
    public static FlatBufferTable Root(ReadOnlyMemory<byte> buffer) => new(buffer, Checked(ReadInt32(buffer.Span, 0), 4, buffer.Length));

    /// <summary>True when field <paramref name="field"/> is present.</summary>
    public bool Has(int field) => FieldOffset(field) != 0;

    /// <summary>A scalar <c>ubyte</c> field.</summary>
    public byte GetByte(int field, byte defaultValue = 0)
    {
        int offset = FieldOffset(field);
        return offset == 0 ? defaultValue : _buffer.Span[Checked(_table + offset, 1, _buffer.Length)];
    }

    /// <summary>A scalar <c>long</c> field.</summary>
    public long GetInt64(int field)
    {
        int offset = FieldOffset(field);
        return offset == 0 ? 0 : BinaryPrimitives.ReadInt64LittleEndian(_buffer.Span[Checked(_table + offset, 8, _buffer.Length)..]);
    }

    /// <summary>A table field (a child table or a union value).</summary>
    public FlatBufferTable? GetTable(int field)
    {
        int target = Indirect(field);
        return target < 0 ? null : new FlatBufferTable(_buffer, target);
    }

    /// <summary>A vector of structs of <paramref name="structSize"/> bytes: the span of its elements and their count.</summary>
    public ReadOnlySpan<byte> GetStructVector(int field, int structSize, out int count)
    {
        int vector = Indirect(field);
        if (vector < 0)
        {
            count = 0;
            return [];
        }

        count = ReadInt32(_buffer.Span, vector);
        if (count < 0 || (long)count * structSize > _buffer.Length)
        {
            throw new InvalidDataException("FlatBuffers vector length out of range.");
        }

        return _buffer.Span.Slice(Checked(vector + 4, count * structSize, _buffer.Length), count * structSize);
    }

    private int FieldOffset(int field)
    {
        int entry = 4 + (2 * field);
        return entry + 2 > _vtableSize ? 0 : BinaryPrimitives.ReadUInt16LittleEndian(_buffer.Span[(_vtable + entry)..]);
    }

    // The absolute position an offset field points to, or -1 when the field is absent.
    private int Indirect(int field)
    {
        int offset = FieldOffset(field);
        if (offset == 0)
        {
            return -1;
        }

        int at = Checked(_table + offset, 4, _buffer.Length);
        long target = at + (long)(uint)ReadInt32(_buffer.Span, at);
        return Checked(target, 4, _buffer.Length);
    }

    private static int ReadInt32(ReadOnlySpan<byte> buffer, int at) =>
        BinaryPrimitives.ReadInt32LittleEndian(buffer[Checked(at, 4, buffer.Length)..]);

    private static int Checked(long at, int size, int length) =>
        at < 0 || at + size > length ? throw new InvalidDataException("FlatBuffers offset out of range.") : (int)at;
}
