using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Atelier.Data.Decontamination;
using Atelier.Data.Dedup;
using Atelier.Data.Formatting;
using Atelier.Data.Model;
using Atelier.Data.Packing;
using Atelier.Data.Quality;
using Atelier.Data.Readers;
using Atelier.Data.Shards;

namespace Atelier.Data.Building;

public sealed partial class DatasetBuilder
{
    [ThreadStatic]
    private static List<ulong>? _threadWords;

    [ThreadStatic]
    private static List<ulong>? _threadGrams;

    /// <summary>
    /// Runs the build as an ordered pipeline of four stages: read (one task) → analyse (parallel,
    /// a batch per worker) → decide (one task, input order) → tokenise (parallel) → pack and write
    /// (this task, input order). Channels of started tasks keep the order without barriers, so a
    /// slow batch never idles the other workers.
    /// </summary>
    private async Task ProcessAsync(RunState run, IProgress<DatasetBuildProgress>? progress, CancellationToken cancellationToken)
    {
        if (run.RestoredTokens is { } restored)
        {
            _counters.Tokens = restored.Tokens;
            _counters.TrainedTokens = restored.Trained;
            _counters.Windows = restored.Windows;
        }

        int workers = Math.Max(1, _options.MaxDegreeOfParallelism);
        TaskScheduler scheduler = new ConcurrentExclusiveSchedulerPair(TaskScheduler.Default, workers).ConcurrentScheduler;
        var channelOptions = new BoundedChannelOptions(workers + 1) { SingleReader = true, SingleWriter = true };
        var analysed = Channel.CreateBounded<Task<Candidate[]>>(channelOptions);
        var tokenised = Channel.CreateBounded<Task<Candidate[]>>(channelOptions);
        using var stages = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Task producer = Task.Run(() => ProduceAsync(analysed.Writer, scheduler, stages.Token), CancellationToken.None);
        Task decider = Task.Run(() => DecideAsync(analysed.Reader, tokenised.Writer, run, scheduler, stages.Token), CancellationToken.None);
        try
        {
            long waitStart = Stopwatch.GetTimestamp();
            await foreach (Task<Candidate[]> next in tokenised.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                Candidate[] batch = await next.ConfigureAwait(false);
                _timings.AddWaitingForUpstream(Stopwatch.GetElapsedTime(waitStart));
                await EmitAsync(run, batch, cancellationToken).ConfigureAwait(false);
                string stage = batch.Length > 0 && batch[^1].Example is { } last && last.Ordinal < run.ResumeOrdinal ? "replaying" : "building";
                progress?.Report(run.Progress(stage, _counters));
                waitStart = Stopwatch.GetTimestamp();
            }
        }
        finally
        {
            await stages.CancelAsync().ConfigureAwait(false);

            // Both stages catch their own failures and complete their channel with them, so awaiting
            // them only waits for them to stop; a failure reached this method through the channel.
            await producer.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            await decider.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    private Task<Candidate[]> StartAnalysis(List<ReadResult> batch, TaskScheduler workers, CancellationToken cancellationToken) =>
        Task.Factory.StartNew(
            () =>
            {
                long start = Stopwatch.GetTimestamp();
                var candidates = new Candidate[batch.Count];
                for (int i = 0; i < batch.Count; i++)
                {
                    // Per example as well as per batch: one example can be a whole book to
                    // normalise and hash, and a batch holds hundreds.
                    cancellationToken.ThrowIfCancellationRequested();
                    candidates[i] = Analyze(batch[i]);
                }

                _timings.AddAnalysis(Stopwatch.GetElapsedTime(start));
                return candidates;
            },
            cancellationToken,
            TaskCreationOptions.None,
            workers);

    private async Task DecideAsync(ChannelReader<Task<Candidate[]>> reader, ChannelWriter<Task<Candidate[]>> writer, RunState run, TaskScheduler workers, CancellationToken cancellationToken)
    {
        Exception? failure = null;
        try
        {
            await foreach (Task<Candidate[]> next in reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                Candidate[] candidates = await next.ConfigureAwait(false);

                // Decisions that depend on earlier examples are taken in input order, on this task.
                long start = Stopwatch.GetTimestamp();
                foreach (Candidate candidate in candidates)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    Decide(candidate, run);
                }

                _timings.AddDecisions(Stopwatch.GetElapsedTime(start));
                Task<Candidate[]> tokenise = Task.Factory.StartNew(
                    () =>
                    {
                        long tokeniseStart = Stopwatch.GetTimestamp();
                        foreach (Candidate c in candidates)
                        {
                            cancellationToken.ThrowIfCancellationRequested();
                            if (c.Example is not null && c.DropReason is null && c.Example.Ordinal >= run.ResumeOrdinal)
                            {
                                c.Tokens = _formatter.Format(c.Example);
                            }
                        }

                        _timings.AddTokenization(Stopwatch.GetElapsedTime(tokeniseStart));
                        return candidates;
                    },
                    cancellationToken,
                    TaskCreationOptions.None,
                    workers);
                await writer.WriteAsync(tokenise, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception e)
        {
            failure = e;
        }

        writer.TryComplete(failure);
    }

    private async Task EmitAsync(RunState run, Candidate[] candidates, CancellationToken cancellationToken)
    {
        long start = Stopwatch.GetTimestamp();
        TimeSpan writing = TimeSpan.Zero;
        var windows = new List<PackedWindow>();
        foreach (Candidate c in candidates)
        {
            // Before an example is packed, never between its windows and the shard that holds
            // them: what a cancel interrupts here is redone from the last committed shard.
            cancellationToken.ThrowIfCancellationRequested();
            if (c.Example is null || c.Example.Ordinal < run.ResumeOrdinal)
            {
                continue;
            }

            run.PendingFeatures.Add(Features(c));
            if (c.Tokens is { } tokens)
            {
                _counters.Tokens += tokens.Tokens.Length;
                _counters.TrainedTokens += tokens.TrainedCount;
                windows.Clear();
                run.Packer.Add(c.Example.Ordinal, tokens.Tokens, tokens.LossMask, windows);
                _counters.Windows += windows.Count;
                run.PendingWindows.AddRange(windows);
                c.Tokens = null;
            }

            run.NextOrdinalToEmit = c.Example.Ordinal + 1;
            if (run.PendingWindows.Count >= _options.WindowsPerShard)
            {
                long commitStart = Stopwatch.GetTimestamp();
                await CommitShardAsync(run, run.NextOrdinalToEmit, final: false, cancellationToken).ConfigureAwait(false);
                writing += Stopwatch.GetElapsedTime(commitStart);
            }
        }

        _timings.AddWriting(writing);
        _timings.AddPacking(Stopwatch.GetElapsedTime(start) - writing);
    }

    private Candidate Analyze(ReadResult read)
    {
        var candidate = new Candidate { Issue = read.Issue };
        if (read.Example is null)
        {
            return candidate;
        }

        TrainingExample example = _normalizer.Normalize(read.Example);
        candidate.Example = example;
        candidate.Changed = !ReferenceEquals(example, read.Example);
        if (IsEmpty(example))
        {
            candidate.Empty = true;
            return candidate;
        }

        candidate.Hash = ExactDeduplicator.ContentHash(example);
        List<ulong> words = _threadWords ??= new List<ulong>(1024);
        List<ulong> grams = _threadGrams ??= new List<ulong>(1024);
        if (_minHasher is not null)
        {
            words.Clear();
            WordHasher.HashWords(example, words, _nearDedupRoles);
            grams.Clear();
            WordHasher.HashNGrams(CollectionsMarshal.AsSpan(words), _minHasher.Options.ShingleSize, grams);
            Span<uint> signature = stackalloc uint[_minHasher.SignatureLength];
            if (_minHasher.TryCompute(CollectionsMarshal.AsSpan(grams), signature))
            {
                candidate.BandKeys = new ulong[_minHasher.Options.Bands];
                _minHasher.BandKeys(signature, candidate.BandKeys);
            }
        }

        if (_decontaminator.ItemCount > 0)
        {
            // Compared over other roles than the shingles (what can leak an answer), so hashed again.
            words.Clear();
            _decontaminator.HashWords(example, words);
            candidate.Contamination = _decontaminator.FindOverlap(CollectionsMarshal.AsSpan(words), grams);
        }

        candidate.Scores = GopherQualityFilter.Score(PlainText(example));
        if (_options.Quality.Enabled)
        {
            candidate.QualityFailure = _quality.FirstFailedRule(candidate.Scores);
        }

        if (words.Capacity > 1 << 16)
        {
            // Do not keep one huge document's buffers alive per thread.
            _threadWords = null;
            _threadGrams = null;
        }

        return candidate;
    }

    private void Decide(Candidate c, RunState run)
    {
        if (c.Issue is not null)
        {
            AddIssue(c.Issue, run);
            return;
        }

        TrainingExample example = c.Example!;
        _counters.ExamplesRead++;
        _counters.BytesRead += example.SourceBytes;
        _counters.NormalizationChanged += c.Changed ? 1 : 0;
        if (c.Empty)
        {
            _counters.NormalizationEmpty++;
            Drop(c, run, "empty", "nothing left after normalisation");
            return;
        }

        if (_options.ExactDedup && !_exact.TryAdd(c.Hash, example.Ordinal, out long first))
        {
            _counters.ExactDuplicates++;
            c.DuplicateOf = first;
            Drop(c, run, "exact_duplicate", "duplicate of ordinal " + first.ToString(CultureInfo.InvariantCulture));
            return;
        }

        if (c.BandKeys is not null)
        {
            if (_lsh.TryFindCluster(c.BandKeys, example.Ordinal, out long cluster))
            {
                c.Cluster = cluster;
                _counters.NearDuplicates++;
                if (_clustersWithDuplicates.Add(cluster))
                {
                    _counters.NearDuplicateClusters++;
                }

                Drop(c, run, "near_duplicate", "cluster " + cluster.ToString(CultureInfo.InvariantCulture));
                return;
            }

            c.Cluster = cluster;
        }

        if (c.Contamination is { } match)
        {
            _counters.Contaminated++;
            Drop(c, run, "contaminated", $"overlaps eval item {match.File}:{match.Line}");
            return;
        }

        if (c.QualityFailure is { } rule)
        {
            _counters.QualityDropped[rule] = _counters.QualityDropped.GetValueOrDefault(rule) + 1;
            Drop(c, run, "quality:" + rule, rule);
            return;
        }

        _counters.ExamplesKept++;
    }

    private static void Drop(Candidate c, RunState run, string reason, string detail)
    {
        c.DropReason = reason;
        if (run.Dropped is null)
        {
            return;
        }

        TrainingExample example = c.Example!;
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteNumber("ordinal", example.Ordinal);
            json.WriteString("source_file", example.SourceFile);
            json.WriteNumber("source_line", example.Line);
            json.WriteString("reason", reason);
            json.WriteString("detail", detail);
            json.WritePropertyName("example");
            WriteExample(json, example);
            json.WriteEndObject();
        }

        run.Dropped.WriteLine(Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length));
    }

    private static void WriteExample(Utf8JsonWriter json, TrainingExample example)
    {
        json.WriteStartObject();
        if (example.Kind == ExampleKind.Text)
        {
            json.WriteString("text", example.Text);
        }
        else
        {
            json.WriteStartArray("messages");
            foreach (ChatMessage message in example.Messages!)
            {
                json.WriteStartObject();
                json.WriteString("role", message.Role.ToString().ToLowerInvariant());
                if (message.Content is not null)
                {
                    json.WriteString("content", message.Content);
                }

                if (message.ToolCalls is not null)
                {
                    json.WriteString("tool_calls", MistralInstructFormatter.ToolCallsJson(message.ToolCalls));
                }

                json.WriteEndObject();
            }

            json.WriteEndArray();
        }

        json.WriteEndObject();
    }

    private static ExampleFeatures Features(Candidate c)
    {
        TrainingExample example = c.Example!;
        return new ExampleFeatures
        {
            Ordinal = example.Ordinal,
            SourceFile = example.SourceFile,
            SourceLine = example.Line,
            Kind = example.Kind == ExampleKind.Chat ? "chat" : "text",
            DropReason = c.DropReason,
            ContentHash = c.Hash.ToString("x32", CultureInfo.InvariantCulture),
            TokenCount = c.Tokens?.Tokens.Length ?? 0,
            TrainedTokenCount = c.Tokens?.TrainedCount ?? 0,
            DedupCluster = c.Cluster,
            DuplicateOf = c.DuplicateOf,
            Contaminated = c.Contamination is not null,
            ContaminationMatch = c.Contamination is { } m ? $"{m.File}:{m.Line}" : null,
            QualityWordCount = c.Scores.WordCount,
            QualityMeanWordLength = c.Scores.MeanWordLength,
            QualitySymbolRatio = c.Scores.SymbolToWordRatio,
            QualityAlphabeticFraction = c.Scores.AlphabeticWordFraction,
            QualityStopWords = c.Scores.StopWordCount,
            QualityDuplicateLineFraction = c.Scores.DuplicateLineFraction,
        };
    }

    private static bool IsEmpty(TrainingExample example)
    {
        if (example.Kind == ExampleKind.Text)
        {
            return string.IsNullOrEmpty(example.Text);
        }

        foreach (ChatMessage message in example.Messages!)
        {
            if (message.Role == ChatRole.Assistant && (!string.IsNullOrEmpty(message.Content) || message.ToolCalls is { Count: > 0 }))
            {
                return false;
            }
        }

        return true;
    }

    private static string PlainText(TrainingExample example)
    {
        if (example.Kind == ExampleKind.Text)
        {
            return example.Text!;
        }

        var builder = new StringBuilder();
        foreach (ChatMessage message in example.Messages!)
        {
            if (message.Content is not null)
            {
                builder.Append(message.Content).Append('\n');
            }
        }

        return builder.ToString();
    }

    /// <summary>What the parallel analysis of one example found, and what was decided.</summary>
    private sealed class Candidate
    {
        public DataIssue? Issue { get; init; }

        public TrainingExample? Example { get; set; }

        public bool Changed { get; set; }

        public bool Empty { get; set; }

        public UInt128 Hash { get; set; }

        public ulong[]? BandKeys { get; set; }

        public EvalItemReference? Contamination { get; set; }

        public QualityScores Scores { get; set; }

        public string? QualityFailure { get; set; }

        public string? DropReason { get; set; }

        public long Cluster { get; set; } = -1;

        public long DuplicateOf { get; set; } = -1;

        public TokenizedExample? Tokens { get; set; }
    }
}
