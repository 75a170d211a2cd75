using System.Runtime.InteropServices;
using Apache.Arrow;
using Apache.Arrow.Ipc;
using Apache.Arrow.Types;
using Atelier.Data.Packing;

namespace Atelier.Data.Shards;

/// <summary>
/// Writes packed windows as an Arrow IPC file (one record batch per shard), one row per window:
/// <c>input_ids: list&lt;int32&gt;</c>, <c>labels: list&lt;int32&gt;</c>, <c>loss_mask: list&lt;uint8&gt;</c>,
/// <c>sizes: list&lt;int32&gt;</c> (sample boundaries), <c>sample_ordinals: list&lt;int64&gt;</c>.
/// Readable with <c>pyarrow.ipc.open_file</c>. The bytes depend only on the windows.
/// </summary>
public static class ArrowShardWriter
{
    /// <summary>The shard schema.</summary>
    public static Schema Schema { get; } = new Schema.Builder()
        .Field(f => f.Name("input_ids").DataType(new ListType(Int32Type.Default)).Nullable(false))
        .Field(f => f.Name("labels").DataType(new ListType(Int32Type.Default)).Nullable(false))
        .Field(f => f.Name("loss_mask").DataType(new ListType(UInt8Type.Default)).Nullable(false))
        .Field(f => f.Name("sizes").DataType(new ListType(Int32Type.Default)).Nullable(false))
        .Field(f => f.Name("sample_ordinals").DataType(new ListType(Int64Type.Default)).Nullable(false))
        .Metadata("format", "atelier-token-shard/1")
        .Build();

    /// <summary>Writes <paramref name="windows"/> to <paramref name="stream"/>.</summary>
    public static async Task WriteAsync(Stream stream, IReadOnlyList<PackedWindow> windows, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(windows);
        IArrowArray[] columns =
        [
            ListOf(windows, static w => w.InputIds, static (b, l) => new Int32Array(b, ArrowBuffer.Empty, l, 0, 0), Int32Type.Default),
            ListOf(windows, static w => w.Labels, static (b, l) => new Int32Array(b, ArrowBuffer.Empty, l, 0, 0), Int32Type.Default),
            ListOf(windows, static w => w.LossMask, static (b, l) => new UInt8Array(b, ArrowBuffer.Empty, l, 0, 0), UInt8Type.Default),
            ListOf(windows, static w => w.Sizes, static (b, l) => new Int32Array(b, ArrowBuffer.Empty, l, 0, 0), Int32Type.Default),
            ListOf(windows, static w => w.SampleOrdinals, static (b, l) => new Int64Array(b, ArrowBuffer.Empty, l, 0, 0), Int64Type.Default),
        ];
        using var batch = new RecordBatch(Schema, columns, windows.Count);
        using var writer = new ArrowFileWriter(stream, Schema, leaveOpen: true);
        await writer.WriteStartAsync(cancellationToken).ConfigureAwait(false);
        await writer.WriteRecordBatchAsync(batch, cancellationToken).ConfigureAwait(false);
        await writer.WriteEndAsync(cancellationToken).ConfigureAwait(false);
    }

    private static ListArray ListOf<T>(IReadOnlyList<PackedWindow> windows, Func<PackedWindow, T[]> select, Func<ArrowBuffer, int, IArrowArray> makeValues, IArrowType valueType)
        where T : unmanaged
    {
        int total = 0;
        foreach (PackedWindow window in windows)
        {
            total += select(window).Length;
        }

        byte[] values = new byte[total * System.Runtime.CompilerServices.Unsafe.SizeOf<T>()];
        byte[] offsets = new byte[(windows.Count + 1) * sizeof(int)];
        Span<int> offsetSpan = MemoryMarshal.Cast<byte, int>(offsets.AsSpan());
        Span<T> valueSpan = MemoryMarshal.Cast<byte, T>(values.AsSpan());
        int position = 0;
        for (int i = 0; i < windows.Count; i++)
        {
            T[] items = select(windows[i]);
            offsetSpan[i] = position;
            items.CopyTo(valueSpan[position..]);
            position += items.Length;
        }

        offsetSpan[windows.Count] = position;
        IArrowArray valueArray = makeValues(new ArrowBuffer(values), total);
        return new ListArray(new ListType(valueType), windows.Count, new ArrowBuffer(offsets), valueArray, ArrowBuffer.Empty, 0, 0);
    }
}
