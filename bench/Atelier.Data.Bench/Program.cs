using System.Diagnostics;
using Atelier.Data.Bench;
using Atelier.Data.Building;
using Atelier.Data.Readers;
using Atelier.Data.Tokenization;

// Macro benchmark of the data pipeline. Commands:
//   gen PATH MB            write the multi-language corpus
//   tokenize PATH          tokenise every document on one thread (o200k_base), MB/s per core
//   pipeline PATH OUT [THREADS]  full dataset build (o200k_base), MB/s, CPU use, peak memory
//   stages PATH            each per-example stage alone on one thread
string command = args.Length > 0 ? args[0] : "help";
switch (command)
{
    case "gen":
        {
            var watch = Stopwatch.StartNew();
            long documents = CorpusGenerator.Generate(args[1], long.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) << 20, seed: 2026);
            Console.WriteLine($"generated {documents} documents, {new FileInfo(args[1]).Length / 1048576.0:F1} MB in {watch.Elapsed.TotalSeconds:F1} s");
            break;
        }

    case "tokenize":
        {
            // Documents are read in chunks of about 64 MB (memory stays bounded); only encoding is timed.
            TiktokenTextTokenizer tokenizer = TiktokenTextTokenizer.CreateO200kBase();
            var ids = new List<int>(1 << 16);
            long bytes = 0, tokens = 0, documentCount = 0;
            bool warm = false;
            TimeSpan cpu = TimeSpan.Zero;
            var watch = new Stopwatch();
            foreach (string[] documents in CorpusChunks.Read(args[1]))
            {
                if (!warm)
                {
                    // Warm up the JIT and the BPE cache on the first 2% of the first chunk, as tiktoken's run does.
                    for (int i = 0; i < documents.Length / 50; i++)
                    {
                        ids.Clear();
                        tokenizer.Encode(documents[i], ids);
                    }

                    warm = true;
                }

                TimeSpan cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
                watch.Start();
                foreach (string document in documents)
                {
                    ids.Clear();
                    tokenizer.Encode(document, ids);
                    tokens += ids.Count;
                }

                watch.Stop();
                cpu += Process.GetCurrentProcess().TotalProcessorTime - cpuBefore;
                foreach (string document in documents)
                {
                    bytes += System.Text.Encoding.UTF8.GetByteCount(document);
                }

                documentCount += documents.Length;
            }

            double seconds = watch.Elapsed.TotalSeconds;
            Console.WriteLine($"atelier o200k_base (code-point pre-tokeniser, Microsoft.ML.Tokenizers BPE): {bytes / 1048576.0:F1} MB, {documentCount} docs, {tokens} tokens, {seconds:F2} s wall, {cpu.TotalSeconds:F2} s cpu: {bytes / 1048576.0 / seconds:F2} MB/s wall, {bytes / 1048576.0 / cpu.TotalSeconds:F2} MB/s per cpu-second");
            break;
        }

    case "pipeline":
        {
            long bytes = new FileInfo(args[1]).Length;
            TiktokenTextTokenizer tokenizer = TiktokenTextTokenizer.CreateO200kBase();
            var request = new DatasetBuildRequest
            {
                Training = [DatasetInput.FromFile(args[1], DataFormat.Text)],
                Tokenizer = tokenizer,
                Options = new DatasetBuildOptions
                {
                    SequenceLength = 4096,
                    WindowsPerShard = 256,
                    KeepDropped = true,
                    MaxDegreeOfParallelism = args.Length > 3 ? int.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture) : Environment.ProcessorCount,
                },
            };
            if (Directory.Exists(args[2]))
            {
                Directory.Delete(args[2], true);
            }

            TimeSpan cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
            var watch = Stopwatch.StartNew();
            DatasetBuildResult result = await DatasetBuilder.BuildAsync(request, args[2]);
            double seconds = watch.Elapsed.TotalSeconds;
            double cpu = (Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalSeconds;
            DatasetCounters c = result.Manifest.Counters;
            Console.WriteLine($"atelier pipeline: {bytes / 1048576.0:F1} MB in {seconds:F2} s = {bytes / 1048576.0 / seconds:F2} MB/s wall, {bytes / 1048576.0 / cpu:F2} MB/s per core-second, cores busy {cpu / seconds:F2} of {Environment.ProcessorCount}");
            Console.WriteLine($"  examples {c.ExamplesRead}, kept {c.ExamplesKept}, exact dups {c.ExactDuplicates}, near dups {c.NearDuplicates}, tokens {c.Tokens}, windows {c.Windows}, shards {result.Manifest.Shards.Count}");
            Console.WriteLine($"  phases (wall): {result.Timings}");
            Console.WriteLine($"  peak working set {Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0:F0} MB");
            break;
        }

    case "stages":
        StageProfile.Run(args[1]);
        break;

    default:
        Console.WriteLine("usage: gen PATH MB | tokenize PATH | pipeline PATH OUT");
        break;
}
