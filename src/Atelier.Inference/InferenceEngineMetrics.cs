using System.Diagnostics.Metrics;

namespace Atelier.Inference;

/// <summary>
/// What an engine is doing, as plain properties and as instruments on the meter <c>Atelier</c>
/// (<c>atelier.inference.*</c>), for the host to export.
/// </summary>
/// <remarks>
/// Only the engine loop writes the values; readers on other threads see each one whole (ints and
/// longs written with <see cref="Volatile"/>), though not necessarily all from the same step.
/// </remarks>
public sealed class InferenceEngineMetrics : IDisposable
{
    private readonly Meter _meter;
    private int _running;
    private int _waiting;
    private int _blocksUsed;
    private int _blocksCached;
    private int _peakBlocksUsed;
    private int _adaptersResident;
    private long _prefixLookups;
    private long _prefixHits;
    private long _preemptions;
    private long _cancellations;
    private long _steps;
    private long _generatedTokens;

    internal InferenceEngineMetrics(int blocksTotal, long kvCacheBytes)
    {
        KvBlocksTotal = blocksTotal;
        KvCacheBytes = kvCacheBytes;
        _meter = new Meter("Atelier");
        _meter.CreateObservableGauge("atelier.inference.sequences.running", () => RunningSequences, description: "Sequences in the running batch.");
        _meter.CreateObservableGauge("atelier.inference.sequences.waiting", () => WaitingSequences, description: "Sequences waiting to be admitted (new or preempted).");
        _meter.CreateObservableGauge("atelier.inference.kv.blocks.used", () => KvBlocksUsed, description: "KV blocks referenced by sequences.");
        _meter.CreateObservableGauge("atelier.inference.kv.blocks.free", () => KvBlocksFree, description: "KV blocks free or held only by the prefix cache.");
        _meter.CreateObservableCounter("atelier.inference.prefix.lookups", () => PrefixLookups, description: "Full prompt blocks looked up in the prefix cache.");
        _meter.CreateObservableCounter("atelier.inference.prefix.hits", () => PrefixHits, description: "Full prompt blocks found in the prefix cache.");
        _meter.CreateObservableGauge("atelier.inference.adapters.resident", () => AdaptersResident, description: "LoRA adapters held in memory.");
        _meter.CreateObservableCounter("atelier.inference.preemptions", () => Preemptions, description: "Sequences preempted for lack of KV blocks.");
        _meter.CreateObservableCounter("atelier.inference.cancellations", () => Cancellations, description: "Sequences ended because their request was cancelled (a client that went away), their KV blocks freed.");
        _meter.CreateObservableCounter("atelier.inference.tokens.generated", () => GeneratedTokens, unit: "{token}", description: "Tokens generated.");
    }

    /// <summary>Sequences in the running batch.</summary>
    public int RunningSequences => Volatile.Read(ref _running);

    /// <summary>Sequences waiting to be admitted (new, waiting for their adapter, or preempted).</summary>
    public int WaitingSequences => Volatile.Read(ref _waiting);

    /// <summary>Blocks in the KV pool.</summary>
    public int KvBlocksTotal { get; }

    /// <summary>Bytes the KV pool holds (at most the configured budget).</summary>
    public long KvCacheBytes { get; }

    /// <summary>KV blocks referenced by at least one sequence.</summary>
    public int KvBlocksUsed => Volatile.Read(ref _blocksUsed);

    /// <summary>KV blocks an allocation can take (free, or cached and unreferenced).</summary>
    public int KvBlocksFree => KvBlocksTotal - KvBlocksUsed;

    /// <summary>KV blocks registered in the prefix cache.</summary>
    public int KvBlocksCached => Volatile.Read(ref _blocksCached);

    /// <summary>The most KV blocks referenced at once since the engine started.</summary>
    public int PeakKvBlocksUsed => Volatile.Read(ref _peakBlocksUsed);

    /// <summary>Full prompt blocks looked up in the prefix cache.</summary>
    public long PrefixLookups => Volatile.Read(ref _prefixLookups);

    /// <summary>Full prompt blocks found in the prefix cache.</summary>
    public long PrefixHits => Volatile.Read(ref _prefixHits);

    /// <summary>LoRA adapters held in memory.</summary>
    public int AdaptersResident => Volatile.Read(ref _adaptersResident);

    /// <summary>Sequences preempted for lack of KV blocks.</summary>
    public long Preemptions => Volatile.Read(ref _preemptions);

    /// <summary>Sequences ended by their request's cancellation.</summary>
    public long Cancellations => Volatile.Read(ref _cancellations);

    /// <summary>Forward steps run.</summary>
    public long Steps => Volatile.Read(ref _steps);

    /// <summary>Tokens generated.</summary>
    public long GeneratedTokens => Volatile.Read(ref _generatedTokens);

    internal void SetQueues(int running, int waiting)
    {
        Volatile.Write(ref _running, running);
        Volatile.Write(ref _waiting, waiting);
    }

    internal void SetBlocks(int used, int cached)
    {
        Volatile.Write(ref _blocksUsed, used);
        Volatile.Write(ref _blocksCached, cached);
        if (used > _peakBlocksUsed)
        {
            Volatile.Write(ref _peakBlocksUsed, used);
        }
    }

    internal void SetAdapters(int resident) => Volatile.Write(ref _adaptersResident, resident);

    internal void AddPrefix(int lookups, int hits)
    {
        Volatile.Write(ref _prefixLookups, _prefixLookups + lookups);
        Volatile.Write(ref _prefixHits, _prefixHits + hits);
    }

    internal void AddPreemption() => Volatile.Write(ref _preemptions, _preemptions + 1);

    internal void AddCancellation() => Volatile.Write(ref _cancellations, _cancellations + 1);

    internal void AddStep(int generated)
    {
        Volatile.Write(ref _steps, _steps + 1);
        Volatile.Write(ref _generatedTokens, _generatedTokens + generated);
    }

    /// <inheritdoc />
    public void Dispose() => _meter.Dispose();
}
