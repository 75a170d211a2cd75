namespace Atelier.Vectors.Bench;

/// <summary>The data file written by gen_data.py: base vectors, queries and exact ground truth.</summary>
internal sealed class BenchData
{
    public required int Count { get; init; }

    public required int Dimension { get; init; }

    public required float[] Base { get; init; }

    public required float[] Queries { get; init; }

    public required int[] Truth { get; init; }

    public required int TruthWidth { get; init; }

    public int QueryCount => Queries.Length / Dimension;

    public static BenchData Load(string path)
    {
        using var stream = File.OpenRead(path);
        using var reader = new BinaryReader(stream);
        int n = reader.ReadInt32();
        int nq = reader.ReadInt32();
        int dim = reader.ReadInt32();
        int kgt = reader.ReadInt32();
        var data = new BenchData
        {
            Count = n,
            Dimension = dim,
            Base = new float[(long)n * dim],
            Queries = new float[nq * dim],
            Truth = new int[nq * kgt],
            TruthWidth = kgt,
        };
        stream.ReadExactly(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.Base.AsSpan()));
        stream.ReadExactly(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.Queries.AsSpan()));
        stream.ReadExactly(System.Runtime.InteropServices.MemoryMarshal.AsBytes(data.Truth.AsSpan()));
        return data;
    }

    public double Recall(long[][] found, int k)
    {
        int hits = 0;
        for (int q = 0; q < found.Length; q++)
        {
            var truth = Truth.AsSpan(q * TruthWidth, k);
            foreach (long id in found[q])
            {
                if (truth.Contains((int)id))
                {
                    hits++;
                }
            }
        }

        return (double)hits / (found.Length * k);
    }
}
