using Apache.Arrow;
using Apache.Arrow.Ipc;

namespace Atelier.Data.Shards;

/// <summary>One packed window read back from a token shard.</summary>
/// <param name="InputIds">Input token ids.</param>
/// <param name="Labels">The next token of each input.</param>
/// <param name="LossMask">1 where the label is trained.</param>
/// <param name="Sizes">Lengths of the packed sample pieces, summing to the window length.</param>
public sealed record ShardWindow(int[] InputIds, int[] Labels, byte[] LossMask, int[] Sizes);

/// <summary>Reads the Arrow IPC token shards that <see cref="ArrowShardWriter"/> writes.</summary>
public static class ArrowShardReader
{
    /// <summary>The windows of one shard, in order. Checks the schema and that every row is consistent.</summary>
    public static async IAsyncEnumerable<ShardWindow> ReadAsync(Stream stream, string name, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        using var reader = new ArrowFileReader(stream, leaveOpen: true);
        var schema = reader.Schema;
        if (schema.Metadata is null || !schema.Metadata.TryGetValue("format", out var format) || format != "atelier-token-shard/1")
        {
            throw new InvalidDataException($"{name} is not an Atelier token shard (schema metadata 'format' is not atelier-token-shard/1).");
        }

        RecordBatch? batch;
        while ((batch = await reader.ReadNextRecordBatchAsync(cancellationToken).ConfigureAwait(false)) is not null)
        {
            using (batch)
            {
                var inputs = Column(batch, "input_ids", name);
                var labels = Column(batch, "labels", name);
                var masks = Column(batch, "loss_mask", name);
                var sizes = Column(batch, "sizes", name);
                for (var row = 0; row < batch.Length; row++)
                {
                    var window = new ShardWindow(
                        ((Int32Array)inputs.GetSlicedValues(row)).Values.ToArray(),
                        ((Int32Array)labels.GetSlicedValues(row)).Values.ToArray(),
                        ((UInt8Array)masks.GetSlicedValues(row)).Values.ToArray(),
                        ((Int32Array)sizes.GetSlicedValues(row)).Values.ToArray());
                    if (window.Labels.Length != window.InputIds.Length || window.LossMask.Length != window.InputIds.Length || window.Sizes.Sum() != window.InputIds.Length)
                    {
                        throw new InvalidDataException($"{name}, row {row}: the columns disagree on the window length.");
                    }

                    yield return window;
                }
            }
        }
    }

    private static ListArray Column(RecordBatch batch, string column, string name) =>
        batch.Column(column) as ListArray ?? throw new InvalidDataException($"{name} has no list column '{column}'.");
}
