namespace Atelier.Vectors.Tests;

/// <summary>Seeded clustered vectors: gaussian blobs around random centres, like real embeddings.</summary>
internal static class ClusteredData
{
    public static float[] Generate(int count, int dimension, int clusters, int seed, float spread = 0.35f, bool normalize = false)
    {
        var random = new Random(seed);
        var centres = new float[clusters * dimension];
        for (int i = 0; i < centres.Length; i++)
        {
            centres[i] = (float)Gaussian(random);
        }

        var data = new float[count * dimension];
        for (int v = 0; v < count; v++)
        {
            int c = random.Next(clusters);
            for (int i = 0; i < dimension; i++)
            {
                data[(v * dimension) + i] = centres[(c * dimension) + i] + (spread * (float)Gaussian(random));
            }
        }

        if (normalize)
        {
            for (int v = 0; v < count; v++)
            {
                Kernels.VectorDistance.Normalize(data.AsSpan(v * dimension, dimension));
            }
        }

        return data;
    }

    public static long[] Ids(int count, long start = 0)
    {
        var ids = new long[count];
        for (int i = 0; i < count; i++)
        {
            ids[i] = start + i;
        }

        return ids;
    }

    private static double Gaussian(Random random)
    {
        double u1 = 1.0 - random.NextDouble();
        double u2 = random.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2 * Math.PI * u2);
    }
}
