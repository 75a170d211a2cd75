using System.Diagnostics;
using Atelier.Modeling.Kernels;

foreach (var n in new[] { 512, 1024, 2048 })
{
    var a = new float[n * n]; var b = new float[n * n]; var c = new float[n * n];
    var r = new Random(1);
    for (var i = 0; i < a.Length; i++) { a[i] = (float)r.NextDouble(); b[i] = (float)r.NextDouble(); }
    Sgemm.MatMul(a, b, c, n, n, n);
    var reps = n <= 512 ? 20 : n <= 1024 ? 5 : 2;
    var sw = Stopwatch.StartNew();
    for (var i = 0; i < reps; i++) Sgemm.MatMul(a, b, c, n, n, n);
    var s = sw.Elapsed.TotalSeconds / reps;
    Console.WriteLine($"{n}: {2.0 * n * n * n / s / 1e9:F1} GFLOP/s");
}
