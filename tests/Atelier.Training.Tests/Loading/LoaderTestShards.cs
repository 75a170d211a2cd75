using Apache.Arrow;
using Apache.Arrow.Ipc;
using Atelier.Data.Packing;
using Atelier.Data.Shards;
using Atelier.Training.Loading;

namespace Atelier.Training.Tests.Loading;

/// <summary>Small real token shards whose windows carry their global index as their first token.</summary>
internal sealed class LoaderTestShards : IDisposable
{
    public const int SequenceLength = 8;

    public LoaderTestShards()
    {
        Directory = global::Atelier.Testing.TestCleanup.CreateDirectory("atelier-loader-tests");
    }

    public string Directory { get; }

    /// <summary>Writes one shard per entry of <paramref name="rows"/>, windows numbered globally in order.</summary>
    public async Task<IReadOnlyList<ShardSource>> WriteAsync(params int[] rows)
    {
        var sources = new List<ShardSource>();
        int next = 0;
        for (int s = 0; s < rows.Length; s++)
        {
            string name = $"shards/shard-{s:D5}.arrow";
            string path = Path.Combine(Directory, name);
            System.IO.Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            List<PackedWindow> windows = Windows(next, rows[s]);
            await using (var stream = File.Create(path))
            {
                await ArrowShardWriter.WriteAsync(stream, windows, CancellationToken.None);
            }

            next += rows[s];
            sources.Add(Source(name, rows[s]));
        }

        return sources;
    }

    /// <summary>A source reading <paramref name="name"/> under the directory.</summary>
    public ShardSource Source(string name, long rows) =>
        new(name, rows, _ => ValueTask.FromResult<Stream>(File.OpenRead(Path.Combine(Directory, name))));

    /// <summary>Writes one shard holding several record batches (an empty one among them).</summary>
    public async Task<ShardSource> WriteMultiBatchAsync(string name, int first, params int[] batchRows)
    {
        var readers = new List<ArrowFileReader>();
        var batches = new List<RecordBatch>();
        int next = first;
        foreach (int rows in batchRows)
        {
            var memory = new MemoryStream();
            await ArrowShardWriter.WriteAsync(memory, Windows(next, rows), CancellationToken.None);
            memory.Position = 0;
            var reader = new ArrowFileReader(memory);
            readers.Add(reader);
            batches.Add((await reader.ReadNextRecordBatchAsync())!);
            next += rows;
        }

        string path = Path.Combine(Directory, name);
        await using (var stream = File.Create(path))
        {
            using var writer = new ArrowFileWriter(stream, ArrowShardWriter.Schema, leaveOpen: true);
            await writer.WriteStartAsync();
            foreach (RecordBatch batch in batches)
            {
                await writer.WriteRecordBatchAsync(batch);
            }

            await writer.WriteEndAsync();
        }

        foreach (RecordBatch batch in batches)
        {
            batch.Dispose();
        }

        foreach (ArrowFileReader reader in readers)
        {
            reader.Dispose();
        }

        return Source(name, batchRows.Sum());
    }

    /// <summary>The global index a window carries.</summary>
    public static int IdOf(ShardWindow window) => window.InputIds[0];

    /// <summary>The windows handed out by the next <paramref name="batches"/> batches, as global indices.</summary>
    public static async Task<List<int>> TakeAsync(ShardedSequenceLoader loader, int batches)
    {
        var ids = new List<int>();
        for (int b = 0; b < batches; b++)
        {
            LoaderBatch batch = await loader.NextAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30));
            ids.AddRange(batch.Windows.Select(IdOf));
        }

        return ids;
    }

    public void Dispose()
    {
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    // Window g: tokens g, g+1, ..., two pieces (sizes 3 and 5) so that `sizes` is not trivial.
    private static List<PackedWindow> Windows(int first, int count)
    {
        var packer = new SequencePacker(SequenceLength);
        var windows = new List<PackedWindow>();
        for (int g = first; g < first + count; g++)
        {
            int[] a = [g, g + 1, g + 2, g + 3];
            int[] b = [g + 3, g + 4, g + 5, g + 6, g + 7, g + 8];
            bool[] mask = [true, true, true, true, true, true];
            packer.Add(g, a, mask.AsSpan(0, a.Length), windows);
            packer.Add(g, b, mask, windows);
        }

        return windows;
    }
}
