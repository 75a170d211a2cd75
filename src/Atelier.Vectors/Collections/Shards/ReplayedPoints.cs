using System.Runtime.InteropServices;
using Atelier.Vectors.Collections.Wal;
using Microsoft.Win32.SafeHandles;

namespace Atelier.Vectors.Collections.Shards;

/// <summary>
/// The points a shard's replay leaves live (the snapshot, then each log blob in order: the last write of an
/// id wins, a delete removes it), before they go into the graph. For a shard that keeps its vectors in a
/// segment file, the vectors are staged in a scratch file beside it and only ids and payloads stay in
/// memory, so opening a collection larger than memory does not need its vectors in memory at once.
/// </summary>
internal sealed class ReplayedPoints : IDisposable
{
    /// <summary>Points per batch handed to the graph when vectors are staged (each batch is read back into memory).</summary>
    private const int StagedBatch = 16_384;

    private readonly Dictionary<long, (long Slot, float[]? Vector, Payload Payload)> _live = [];
    private readonly int _dimension;
    private readonly string? _stagingPath;
    private readonly SafeFileHandle? _staging;
    private long _slots;

    /// <param name="dimension">Components per vector.</param>
    /// <param name="stagingPath">The scratch file for vectors; null keeps them in memory.</param>
    public ReplayedPoints(int dimension, string? stagingPath)
    {
        _dimension = dimension;
        if (stagingPath is not null)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(stagingPath)!);
            _stagingPath = stagingPath;
            _staging = File.OpenHandle(stagingPath, FileMode.Create, FileAccess.ReadWrite, FileShare.None);
        }
    }

    /// <summary>Live points.</summary>
    public int Count => _live.Count;

    private int RecordBytes => _dimension * sizeof(float);

    /// <summary>Applies one point of a replayed blob.</summary>
    public void Apply(LogBlobKind kind, long id, float[]? vector, Payload? payload)
    {
        if (kind == LogBlobKind.Delete)
        {
            _live.Remove(id);
            return;
        }

        if (_staging is null)
        {
            _live[id] = (-1, vector!, payload!);
            return;
        }

        // A replaced id leaves its old record unused in the scratch file: it is dropped with the file.
        RandomAccess.Write(_staging, MemoryMarshal.AsBytes(vector.AsSpan(0, _dimension)), _slots * RecordBytes);
        _live[id] = (_slots++, null, payload!);
    }

    /// <summary>
    /// The live points in id order (so a rebuild inserts them in the same order whatever the replay's
    /// dictionary order was): one batch when the vectors are in memory, batches read back from the scratch
    /// file when they are staged.
    /// </summary>
    public IEnumerable<List<LogPoint>> Batches()
    {
        var ids = _live.Keys.ToArray();
        Array.Sort(ids);
        int size = _staging is null ? Math.Max(ids.Length, 1) : StagedBatch;
        for (int start = 0; start < ids.Length; start += size)
        {
            var batch = new List<LogPoint>(Math.Min(size, ids.Length - start));
            foreach (var id in ids.AsSpan(start, Math.Min(size, ids.Length - start)))
            {
                var (slot, vector, payload) = _live[id];
                if (vector is null)
                {
                    vector = new float[_dimension];
                    RandomAccess.Read(_staging!, MemoryMarshal.AsBytes(vector.AsSpan()), slot * RecordBytes);
                }

                batch.Add(new LogPoint(id, vector, payload));
            }

            yield return batch;
        }
    }

    public void Dispose()
    {
        if (_staging is not null)
        {
            _staging.Dispose();
            File.Delete(_stagingPath!);
        }
    }
}
