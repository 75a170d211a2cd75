namespace Atelier.Vectors.Bench;

internal static class TableBench
{
    public static int Run(string dataPath, double budgetFraction, int[] efs, string output, string[] directories)
    {
        Console.Error.WriteLine("table bench: not built yet");
        return 1;
    }
}
