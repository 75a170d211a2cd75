namespace Atelier.Vectors.Bench;

internal static class CacheBench
{
    public static int Run(string output)
    {
        return 1;
    }
}
