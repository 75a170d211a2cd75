using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using Apache.Arrow.Ipc;
using Apache.Arrow.Types;
using Atelier.Data.Shards;

namespace Atelier.Training.Loading;

/// <summary>
/// Random access to the rows of one Arrow IPC token shard. On first use it reads the footer, each
/// record batch's metadata and the list offsets of the four columns the trainer needs (a few bytes
/// per row); after that a window is four slices of exactly its bytes (fetched by range reads that
/// coalesce neighbouring slices of the windows read together), whatever the size
/// of the record batch (<see cref="ArrowShardWriter"/> writes one batch per shard, tens of MiB, so
/// decoding whole batches would multiply the I/O of a global shuffle by the rows per batch).
/// Uncompressed shards only (what Atelier writes); a compressed one is rejected by name.
/// <para>Thread-safe: each read rents a stream of its own from a small per-shard pool.</para>
/// </summary>
internal sealed class ShardFile : IDisposable
{
    private const string FormatTag = "atelier-token-shard/1";
    private const int MessageHeaderRecordBatch = 3;
    private const int ColumnsPerWindow = 4;

    private readonly ShardSource _source;
    private readonly StreamBudget _budget;
    private readonly ConcurrentBag<Stream> _idle = [];
    private readonly Lock _gate = new();
    private Task<ShardLayout>? _layout;
    private bool _disposed;

    public ShardFile(ShardSource source, StreamBudget budget)
    {
        _source = source;
        _budget = budget;
    }

    public string Name => _source.Name;

    /// <summary>Reads and checks the shard's metadata (once; later calls share the outcome).</summary>
    public async Task CheckAsync(CancellationToken cancellationToken)
    {
        try
        {
            _ = await LayoutAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw Describe(e);
        }
    }

    /// <summary>
    /// Reads the windows at <paramref name="rows"/> (0-based within the shard), in that order. The
    /// column slices they need are sorted by file offset and slices closer than
    /// <see cref="RangeReadPlan.GapBytes"/> are fetched by one range read, so that a remote store pays
    /// one round trip for several slices; the range reads run concurrently, at most as many at once
    /// over the whole loader as <paramref name="reads"/> allows.
    /// </summary>
    public async Task<ShardWindow[]> ReadWindowsAsync(long[] rows, RangeReadPlan plan, SemaphoreSlim reads, LoaderCounters counters, CancellationToken cancellationToken)
    {
        byte[][]? buffers = null;
        try
        {
            ShardLayout layout = await LayoutAsync(cancellationToken).ConfigureAwait(false);

            // Four slices per window, in column order: input_ids, labels, loss_mask, sizes.
            var slices = new ColumnSlice[rows.Length * ColumnsPerWindow];
            long windowBytes = 0;
            for (int i = 0; i < rows.Length; i++)
            {
                int batchIndex = layout.FindBatch(rows[i]);
                BatchLayout batch = layout.Batches[batchIndex];
                int r = checked((int)(rows[i] - layout.BatchStarts[batchIndex]));
                slices[(i * ColumnsPerWindow) + 0] = batch.InputIds.Slice(r, sizeof(int));
                slices[(i * ColumnsPerWindow) + 1] = batch.Labels.Slice(r, sizeof(int));
                slices[(i * ColumnsPerWindow) + 2] = batch.LossMask.Slice(r, sizeof(byte));
                slices[(i * ColumnsPerWindow) + 3] = batch.Sizes.Slice(r, sizeof(int));
            }

            (ByteRange[] ranges, int[] rangeOf) = Coalesce(slices, plan);
            buffers = new byte[ranges.Length][];
            var pending = new Task[ranges.Length];
            for (int k = 0; k < ranges.Length; k++)
            {
                pending[k] = FetchAsync(ranges[k], buffers, k, reads, cancellationToken);
            }

            await Task.WhenAll(pending).ConfigureAwait(false);

            var windows = new ShardWindow[rows.Length];
            for (int i = 0; i < rows.Length; i++)
            {
                int at = i * ColumnsPerWindow;
                int[] inputIds = Int32s(slices[at], ranges, rangeOf[at], buffers);
                int[] labels = Int32s(slices[at + 1], ranges, rangeOf[at + 1], buffers);
                byte[] lossMask = Bytes(slices[at + 2], ranges, rangeOf[at + 2], buffers);
                int[] sizes = Int32s(slices[at + 3], ranges, rangeOf[at + 3], buffers);
                long total = 0;
                foreach (int size in sizes)
                {
                    total += size;
                }

                if (total != inputIds.Length)
                {
                    throw new InvalidDataException($"row {rows[i]}: the sizes sum to {total} but the window holds {inputIds.Length} tokens.");
                }

                windowBytes += slices[at].Length + slices[at + 1].Length + slices[at + 2].Length + slices[at + 3].Length;
                windows[i] = new ShardWindow(inputIds, labels, lossMask, sizes);
            }

            long fetched = 0;
            foreach (ByteRange range in ranges)
            {
                fetched += range.Length;
            }

            counters.AddBytes(windowBytes);
            counters.AddRangeReads(ranges.Length, fetched);
            return windows;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            throw Describe(e);
        }
        finally
        {
            if (buffers is not null)
            {
                foreach (byte[]? buffer in buffers)
                {
                    if (buffer is not null)
                    {
                        ArrayPool<byte>.Shared.Return(buffer);
                    }
                }
            }
        }
    }

    public void Dispose()
    {
        _disposed = true;
        while (_idle.TryTake(out Stream? stream))
        {
            _budget.Release();
            stream.Dispose();
        }
    }

    private Task<ShardLayout> LayoutAsync(CancellationToken cancellationToken)
    {
        // One load per shard, shared by the workers; a failed load fails every later read the same way.
        lock (_gate)
        {
            return _layout ??= LoadLayoutAsync(cancellationToken);
        }
    }

    private async Task<ShardLayout> LoadLayoutAsync(CancellationToken cancellationToken)
    {
        Stream stream = await RentAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ShardLayout layout = await ShardLayout.ReadAsync(stream, cancellationToken).ConfigureAwait(false);
            if (layout.Rows != _source.Rows)
            {
                throw new InvalidDataException($"it holds {layout.Rows} windows but {_source.Rows} were declared (truncated or replaced shard?).");
            }

            Return(stream);
            return layout;
        }
        catch
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private async ValueTask<Stream> RentAsync(CancellationToken cancellationToken)
    {
        if (_idle.TryTake(out Stream? pooled))
        {
            _budget.Release();
            return pooled;
        }

        Stream stream = await _source.OpenAsync(cancellationToken).ConfigureAwait(false);
        if (!stream.CanSeek || !stream.CanRead)
        {
            await stream.DisposeAsync().ConfigureAwait(false);
            throw new InvalidOperationException("OpenAsync must return a readable, seekable stream.");
        }

        return stream;
    }

    private void Return(Stream stream)
    {
        if (_disposed || !_budget.TryReserve())
        {
            stream.Dispose();
            return;
        }

        _idle.Add(stream);
    }

    private Exception Describe(Exception e) => e switch
    {
        InvalidDataException => new InvalidDataException($"Shard '{Name}': {e.Message}", e),
        IOException => new IOException($"Shard '{Name}' could not be read: {e.Message}", e),
        InvalidOperationException when e.InnerException is null => new InvalidOperationException($"Shard '{Name}': {e.Message}", e),
        _ => new InvalidDataException($"Shard '{Name}' is not a readable Arrow IPC token shard: {e.Message}", e),
    };

    // Sorts the slices by offset and merges neighbours into ranges: a slice joins the range before it
    // when the hole between them is at most GapBytes and the range stays within MaxRangeBytes (a
    // single larger slice is a range of its own). rangeOf[s] is slice s's range, -1 for an empty slice.
    private static (ByteRange[] Ranges, int[] RangeOf) Coalesce(ColumnSlice[] slices, RangeReadPlan plan)
    {
        var order = new int[slices.Length];
        var offsets = new long[slices.Length];
        for (int s = 0; s < slices.Length; s++)
        {
            order[s] = s;
            offsets[s] = slices[s].Offset;
        }

        Array.Sort(offsets, order);
        var rangeOf = new int[slices.Length];
        var ranges = new List<ByteRange>();
        long start = 0;
        long end = 0;
        foreach (int s in order)
        {
            ColumnSlice slice = slices[s];
            if (slice.Length == 0)
            {
                rangeOf[s] = -1;
                continue;
            }

            long sliceEnd = slice.Offset + slice.Length;
            if (ranges.Count > 0 && slice.Offset - end <= plan.GapBytes && Math.Max(end, sliceEnd) - start <= plan.MaxRangeBytes)
            {
                end = Math.Max(end, sliceEnd);
                ranges[^1] = new ByteRange(start, checked((int)(end - start)));
            }
            else
            {
                start = slice.Offset;
                end = sliceEnd;
                ranges.Add(new ByteRange(start, slice.Length));
            }

            rangeOf[s] = ranges.Count - 1;
        }

        return (ranges.ToArray(), rangeOf);
    }

    private async Task FetchAsync(ByteRange range, byte[][] buffers, int index, SemaphoreSlim reads, CancellationToken cancellationToken)
    {
        await reads.WaitAsync(cancellationToken).ConfigureAwait(false);
        Stream? stream = null;
        try
        {
            byte[] buffer = ArrayPool<byte>.Shared.Rent(range.Length);
            buffers[index] = buffer;
            stream = await RentAsync(cancellationToken).ConfigureAwait(false);
            stream.Position = range.Offset;
            await stream.ReadExactlyAsync(buffer.AsMemory(0, range.Length), cancellationToken).ConfigureAwait(false);
            Return(stream);
            stream = null;
        }
        finally
        {
            reads.Release();
            if (stream is not null)
            {
                // A stream that failed mid-read may be at any position or broken: never pool it.
                await stream.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    private static int[] Int32s(ColumnSlice slice, ByteRange[] ranges, int range, byte[][] buffers)
    {
        var values = new int[slice.Length / sizeof(int)];
        if (range >= 0)
        {
            ReadOnlySpan<byte> bytes = buffers[range].AsSpan(checked((int)(slice.Offset - ranges[range].Offset)), slice.Length);
            MemoryMarshal.Cast<byte, int>(bytes).CopyTo(values);
        }

        return values;
    }

    private static byte[] Bytes(ColumnSlice slice, ByteRange[] ranges, int range, byte[][] buffers) =>
        range < 0 ? [] : buffers[range].AsSpan(checked((int)(slice.Offset - ranges[range].Offset)), slice.Length).ToArray();

    // The bytes of one column of one window: where they are in the file and how many.
    private readonly record struct ColumnSlice(long Offset, int Length);

    // One range read: a run of the file holding one or more slices (and the holes between them).
    private readonly record struct ByteRange(long Offset, int Length);

    /// <summary>Where the rows of a shard are: its record batches and their column offsets.</summary>
    private sealed class ShardLayout
    {
        private ShardLayout(BatchLayout[] batches, long[] batchStarts)
        {
            Batches = batches;
            BatchStarts = batchStarts;
        }

        public BatchLayout[] Batches { get; }

        // BatchStarts[i] is the first row of batch i; the last entry is the row count.
        public long[] BatchStarts { get; }

        public long Rows => BatchStarts[^1];

        public int FindBatch(long row)
        {
            int found = Array.BinarySearch(BatchStarts, row);

            // Empty batches share a start with the next one: take the last batch starting at or before the row.
            int index = found >= 0 ? found : ~found - 1;
            while (index + 1 < Batches.Length && BatchStarts[index + 1] <= row)
            {
                index++;
            }

            return index;
        }

        public static async Task<ShardLayout> ReadAsync(Stream stream, CancellationToken cancellationToken)
        {
            long length = stream.Length;
            const int Magic = 6;
            if (length < Magic + 2 + 4 + Magic)
            {
                throw new InvalidDataException($"it is {length} bytes long, too short to be an Arrow IPC file.");
            }

            // Schema through Apache.Arrow (it validates it); the footer's blocks and the batch
            // metadata through our own reader, since Apache.Arrow exposes no row-level access.
            Apache.Arrow.Schema schema;
            using (var reader = new ArrowFileReader(stream, leaveOpen: true))
            {
                // Reads the footer (and with it the schema) asynchronously.
                _ = await reader.RecordBatchCountAsync().ConfigureAwait(false);
                schema = reader.Schema;
            }

            if (schema.Metadata is null || !schema.Metadata.TryGetValue("format", out string? format) || format != FormatTag)
            {
                throw new InvalidDataException($"it is not an Atelier token shard (schema metadata 'format' is not {FormatTag}).");
            }

            ColumnPlan[] plan = ColumnPlan.For(schema, ["input_ids", "labels", "loss_mask", "sizes"]);
            byte[] tail = await ReadAtAsync(stream, length - 10, 10, cancellationToken).ConfigureAwait(false);
            int footerLength = BinaryPrimitives.ReadInt32LittleEndian(tail);
            if (footerLength <= 0 || footerLength > length - 10 - Magic)
            {
                throw new InvalidDataException($"its footer length {footerLength} is out of range.");
            }

            byte[] footer = await ReadAtAsync(stream, length - 10 - footerLength, footerLength, cancellationToken).ConfigureAwait(false);

            // Footer { version: short, schema: Schema, dictionaries: [Block], recordBatches: [Block] }
            // Block { offset: long, metaDataLength: int, (pad), bodyLength: long } is 24 bytes.
            const int BlockSize = 24;
            byte[] blocks = FlatBufferTable.Root(footer).GetStructVector(3, BlockSize, out int count).ToArray();
            var batches = new BatchLayout[count];
            var starts = new long[count + 1];
            for (int i = 0; i < count; i++)
            {
                ReadOnlySpan<byte> block = blocks.AsSpan(i * BlockSize, BlockSize);
                long offset = BinaryPrimitives.ReadInt64LittleEndian(block);
                int metadataLength = BinaryPrimitives.ReadInt32LittleEndian(block[8..]);
                long bodyLength = BinaryPrimitives.ReadInt64LittleEndian(block[16..]);
                if (offset < Magic || metadataLength < 8 || bodyLength < 0 || offset + metadataLength + bodyLength > length)
                {
                    throw new InvalidDataException($"record batch {i} lies outside the file.");
                }

                byte[] metadata = await ReadAtAsync(stream, offset, metadataLength, cancellationToken).ConfigureAwait(false);
                (long rows, BatchLayout layout) = await ReadBatchAsync(stream, metadata, offset + metadataLength, bodyLength, plan, i, cancellationToken).ConfigureAwait(false);
                batches[i] = layout;
                starts[i + 1] = starts[i] + rows;
            }

            return new ShardLayout(batches, starts);
        }

        private static async Task<(long Rows, BatchLayout Layout)> ReadBatchAsync(Stream stream, byte[] metadata, long body, long bodyLength, ColumnPlan[] plan, int index, CancellationToken cancellationToken)
        {
            // An encapsulated message: 0xFFFFFFFF, int32 length, then the Message flatbuffer (or, in
            // the pre-1.0 format, the length directly).
            int start = BinaryPrimitives.ReadInt32LittleEndian(metadata) == -1 ? 8 : 4;

            // Message { version: short, header_type: ubyte, header: union, bodyLength: long }
            var message = FlatBufferTable.Root(metadata.AsMemory(start));
            if (message.GetByte(1) != MessageHeaderRecordBatch || message.GetTable(2) is not { } recordBatch)
            {
                throw new InvalidDataException($"block {index} of the footer is not a record batch.");
            }

            // RecordBatch { length: long, nodes: [FieldNode], buffers: [Buffer], compression: BodyCompression }
            if (recordBatch.Has(3))
            {
                throw new InvalidDataException("it is compressed; the loader reads uncompressed shards (as Atelier writes them) by row.");
            }

            long rows = recordBatch.GetInt64(0);
            if (rows < 0 || rows > int.MaxValue - 1)
            {
                throw new InvalidDataException($"record batch {index} declares {rows} rows.");
            }

            byte[] nodes = recordBatch.GetStructVector(1, 16, out int nodeCount).ToArray();
            byte[] buffers = recordBatch.GetStructVector(2, 16, out int bufferCount).ToArray();
            var columns = new ColumnLayout[plan.Length];
            for (int c = 0; c < plan.Length; c++)
            {
                ColumnPlan column = plan[c];
                if (column.Node + 1 >= nodeCount || column.Buffer + 3 >= bufferCount)
                {
                    throw new InvalidDataException($"record batch {index} has fewer field nodes or buffers than its schema needs.");
                }

                long listLength = BinaryPrimitives.ReadInt64LittleEndian(nodes.AsSpan(column.Node * 16));
                long nullCount = BinaryPrimitives.ReadInt64LittleEndian(nodes.AsSpan((column.Node * 16) + 8));
                if (listLength != rows || nullCount != 0)
                {
                    throw new InvalidDataException($"record batch {index}, column '{column.Name}': {listLength} rows ({nullCount} null) where {rows} non-null rows were expected.");
                }

                if (rows == 0)
                {
                    // An empty batch may carry an empty offsets buffer; it has nothing to read.
                    columns[c] = new ColumnLayout(body, [0]);
                    continue;
                }

                (long offsetsAt, long offsetsLength) = Buffer(buffers, column.Buffer + 1, bodyLength, index, column.Name);
                (long valuesAt, long valuesLength) = Buffer(buffers, column.Buffer + 3, bodyLength, index, column.Name);
                if (offsetsLength < (rows + 1) * sizeof(int))
                {
                    throw new InvalidDataException($"record batch {index}, column '{column.Name}': the offsets buffer is too short.");
                }

                byte[] raw = await ReadAtAsync(stream, body + offsetsAt, (int)((rows + 1) * sizeof(int)), cancellationToken).ConfigureAwait(false);
                int[] offsets = MemoryMarshal.Cast<byte, int>(raw).ToArray();
                for (int r = 0; r < rows; r++)
                {
                    if (offsets[r] < 0 || offsets[r + 1] < offsets[r])
                    {
                        throw new InvalidDataException($"record batch {index}, column '{column.Name}', row {r}: offsets out of order.");
                    }
                }

                if ((long)offsets[^1] * column.ElementSize > valuesLength)
                {
                    throw new InvalidDataException($"record batch {index}, column '{column.Name}': the offsets point past the values buffer.");
                }

                columns[c] = new ColumnLayout(body + valuesAt, offsets);
            }

            // The trainer needs x, y and the mask aligned: check every row once here rather than per read.
            for (int r = 0; r < rows; r++)
            {
                int tokens = columns[0].Length(r);
                if (columns[1].Length(r) != tokens || columns[2].Length(r) != tokens)
                {
                    throw new InvalidDataException($"record batch {index}, row {r}: the columns disagree on the window length.");
                }
            }

            return (rows, new BatchLayout(columns[0], columns[1], columns[2], columns[3]));
        }

        private static (long At, long Length) Buffer(byte[] buffers, int index, long bodyLength, int batch, string column)
        {
            long at = BinaryPrimitives.ReadInt64LittleEndian(buffers.AsSpan(index * 16));
            long length = BinaryPrimitives.ReadInt64LittleEndian(buffers.AsSpan((index * 16) + 8));
            if (at < 0 || length < 0 || at + length > bodyLength)
            {
                throw new InvalidDataException($"record batch {batch}, column '{column}': a buffer lies outside the batch body.");
            }

            return (at, length);
        }

        private static async Task<byte[]> ReadAtAsync(Stream stream, long position, int count, CancellationToken cancellationToken)
        {
            var bytes = new byte[count];
            stream.Position = position;
            await stream.ReadExactlyAsync(bytes, cancellationToken).ConfigureAwait(false);
            return bytes;
        }
    }

    /// <summary>Where a needed column's field nodes and buffers are in a record batch's flattened lists.</summary>
    private sealed record ColumnPlan(string Name, int Node, int Buffer, int ElementSize)
    {
        public static ColumnPlan[] For(Apache.Arrow.Schema schema, string[] names)
        {
            // Field nodes and buffers are laid out depth-first over the schema's fields.
            var nodeStarts = new int[schema.FieldsList.Count];
            var bufferStarts = new int[schema.FieldsList.Count];
            int nodes = 0;
            int buffers = 0;
            for (int i = 0; i < schema.FieldsList.Count; i++)
            {
                nodeStarts[i] = nodes;
                bufferStarts[i] = buffers;
                Count(schema.FieldsList[i].DataType, ref nodes, ref buffers);
            }

            var plan = new ColumnPlan[names.Length];
            for (int c = 0; c < names.Length; c++)
            {
                int field = schema.GetFieldIndex(names[c]);
                if (field < 0)
                {
                    throw new InvalidDataException($"it has no column '{names[c]}'.");
                }

                if (schema.FieldsList[field].DataType is not ListType { ValueDataType: Int32Type or UInt8Type } list)
                {
                    throw new InvalidDataException($"column '{names[c]}' is {schema.FieldsList[field].DataType.Name}, not a list of int32 or uint8.");
                }

                bool bytes = names[c] == "loss_mask";
                if (bytes != list.ValueDataType is UInt8Type)
                {
                    throw new InvalidDataException($"column '{names[c]}' has values of type {list.ValueDataType.Name}.");
                }

                plan[c] = new ColumnPlan(names[c], nodeStarts[field], bufferStarts[field], bytes ? 1 : sizeof(int));
            }

            return plan;
        }

        private static void Count(IArrowType type, ref int nodes, ref int buffers)
        {
            nodes++;
            switch (type)
            {
                case ListType list:
                    buffers += 2;
                    Count(list.ValueDataType, ref nodes, ref buffers);
                    break;
                case StructType structType:
                    buffers += 1;
                    foreach (var child in structType.Fields)
                    {
                        Count(child.DataType, ref nodes, ref buffers);
                    }

                    break;
                case BinaryType or StringType:
                    buffers += 3;
                    break;
                case FixedWidthType:
                    buffers += 2;
                    break;
                default:
                    throw new InvalidDataException($"it has a column of type {type.Name}, which the loader cannot skip over.");
            }
        }
    }

    private sealed record BatchLayout(ColumnLayout InputIds, ColumnLayout Labels, ColumnLayout LossMask, ColumnLayout Sizes);

    // The absolute file position of a column's values and its list offsets (in elements).
    private sealed record ColumnLayout(long ValuesOffset, int[] Offsets)
    {
        public int Length(int row) => Offsets[row + 1] - Offsets[row];

        public ColumnSlice Slice(int row, int elementSize) =>
            new(ValuesOffset + ((long)Offsets[row] * elementSize), checked(Length(row) * elementSize));
    }
}

/// <summary>Caps the streams the pools of all shards keep open while idle.</summary>
internal sealed class StreamBudget(int maxIdle)
{
    private int _idle;

    public bool TryReserve()
    {
        if (Interlocked.Increment(ref _idle) <= maxIdle)
        {
            return true;
        }

        Interlocked.Decrement(ref _idle);
        return false;
    }

    public void Release() => Interlocked.Decrement(ref _idle);
}

/// <summary>How the column slices of the windows read together become range reads.</summary>
/// <param name="GapBytes">The largest hole between two slices that one range read spans rather than paying another round trip.</param>
/// <param name="MaxRangeBytes">The largest range read that merging builds (one slice larger than this is still read whole).</param>
internal readonly record struct RangeReadPlan(long GapBytes, long MaxRangeBytes);
