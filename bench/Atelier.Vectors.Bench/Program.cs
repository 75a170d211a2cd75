using System.Diagnostics;
using System.Text.Json;
using Atelier.Vectors.Bench;

// Macro benchmark for Atelier.Vectors; bench/vectors.sh drives it next to hnswlib on the same data file.
//   ann   <data.bin> <M> <efConstruction> <ef,ef,...> <out.json> [l2|ip]
//   table <data.bin> <budgetFraction> <ef,ef,...> <out.json> <dir> [<dir>...]
//   cache <out.json>
//   cachetrace <data.bin> <trace-queries.bin> <ef> <out.json> <dir>
//   scale-build  <data dir> <store dir> <pq subspaces> <M> <efConstruction> <shards> <drop base 0|1> <dir> [<dir>...]
//   scale-search <data dir> <store dir> <budget bytes> <ef,ef,...> <rerank multiplier> <out.json> <dir> [<dir>...]
//   scale-probe  <data dir> <n> <pq subspaces> <efConstruction>     one in-memory graph walked on PQ codes and on fp32
//   scale-shard  <data dir> <shard dir> <queries>                   one saved shard walked on PQ codes and on int8 codes
//   reopen-insert <n> <dimension> <dir>                             memory of the first insert after a reopen: move against copy
return args.Length == 0 ? Usage() : args[0] switch
{
    "ann" => AnnBench.Run(args[1], int.Parse(args[2]), int.Parse(args[3]), ParseList(args[4]), args[5], args.Length > 6 && args[6] == "ip" ? Atelier.Vectors.DistanceMetric.Dot : Atelier.Vectors.DistanceMetric.L2),
    "table" => TableBench.Run(args[1], double.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture), ParseList(args[3]), args[4], args[5..]),
    "cache" => CacheBench.Run(args[1]),
    "cachetrace" => CacheTraceBench.Run(args[1], args[2], int.Parse(args[3]), args[4], args[5]),
    "probe" => Probe.Run(args[1]),
    "scale-probe" => ScaleProbe.Run(args[1], int.Parse(args[2]), int.Parse(args[3]), int.Parse(args[4])),
    "scale-shard" => ScaleShardProbe.Run(args[1], args[2], int.Parse(args[3])),
    "scale-build" => ScaleBench.Build(args[1], args[2], int.Parse(args[3]), int.Parse(args[4]), int.Parse(args[5]), int.Parse(args[6]), args[7] == "1", args[8..]),
    "reopen-insert" => ReopenInsertBench.Run(int.Parse(args[1]), int.Parse(args[2]), args[3]),
    "scale-search" => ScaleBench.Search(args[1], args[2], long.Parse(args[3]), ParseList(args[4]), int.Parse(args[5]), args[6], args[7..]),
    _ => Usage(),
};

static int[] ParseList(string s) => [.. s.Split(',').Select(int.Parse)];

static int Usage()
{
    Console.Error.WriteLine("usage: ann <data> <M> <efC> <efs> <out> [l2|ip] | table <data> <budget> <efs> <out> <dirs...> | cache <out> | cachetrace <data> <queries> <ef> <out> <dir>");
    return 2;
}

internal static class Json
{
    public static void Write(string path, object value) =>
        File.WriteAllText(path, JsonSerializer.Serialize(value, new JsonSerializerOptions { WriteIndented = true }));
}

internal static class AnnBench
{
    public static int Run(string dataPath, int m, int efConstruction, int[] efs, string output, Atelier.Vectors.DistanceMetric metric)
    {
        var data = BenchData.Load(dataPath);
        Console.Error.WriteLine($"atelier: {data.Count} x {data.Dimension}, {data.QueryCount} queries, M={m} efC={efConstruction} {metric}");
        using var index = new Atelier.Vectors.Hnsw.HnswIndex(new Atelier.Vectors.Hnsw.HnswOptions
        {
            Dimension = data.Dimension,
            Metric = metric,
            M = m,
            EfConstruction = efConstruction,
            QuantizeInt8 = true,
            InitialCapacity = data.Count,
        });
        var ids = new long[data.Count];
        for (int i = 0; i < ids.Length; i++)
        {
            ids[i] = i;
        }

        long start = Stopwatch.GetTimestamp();
        index.AddRange(ids, data.Base, degreeOfParallelism: 2);
        double build = Stopwatch.GetElapsedTime(start).TotalSeconds;
        Console.Error.WriteLine($"atelier: built in {build:F1} s");

        string saveDir = Path.Combine(Path.GetTempPath(), "atelier-bench-index");
        start = Stopwatch.GetTimestamp();
        index.Save(saveDir);
        double save = Stopwatch.GetElapsedTime(start).TotalSeconds;
        start = Stopwatch.GetTimestamp();
        double open;
        using (var reopened = Atelier.Vectors.Hnsw.HnswIndex.Open(saveDir))
        {
            open = Stopwatch.GetElapsedTime(start).TotalSeconds;
        }

        Directory.Delete(saveDir, recursive: true);

        var variants = new Dictionary<string, List<SearchRun.Row>>();
        foreach (bool codes in new[] { true, false })
        {
            index.WalkOnCodes = codes;
            string name = codes ? "atelier int8 walk + fp32 rerank" : "atelier fp32";
            var rows = new List<SearchRun.Row>();
            foreach (int ef in efs)
            {
                int efLocal = ef;
                var row = SearchRun.Measure(data, ef, 10, (q, hits) => index.Search(q, hits, efLocal));
                rows.Add(row);
                Console.Error.WriteLine($"{name} ef={ef} recall={row.Recall:F4} qps1={row.Qps1:F0} qps2={row.Qps2:F0} p50={row.P50Us:F0}us p99={row.P99Us:F0}us");
            }

            variants[name] = rows;
        }

        double bytesFp32Only = index.BytesPerVector - data.Dimension;
        Json.Write(output, new
        {
            n = data.Count,
            dim = data.Dimension,
            metric = metric == Atelier.Vectors.DistanceMetric.Dot ? "ip" : "l2",
            M = m,
            efConstruction = efConstruction,
            build_s = build,
            save_s = save,
            open_s = open,
            bytes_per_vector_int8_and_fp32 = index.BytesPerVector,
            bytes_per_vector_fp32_only = bytesFp32Only,
            variants,
        });
        return 0;
    }
}
