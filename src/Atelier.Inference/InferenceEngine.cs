using System.Collections.Concurrent;
using Atelier.Inference.Adapters;
using Atelier.Inference.Execution;
using Atelier.Inference.KvCache;
using Atelier.Modeling.Mistral;

namespace Atelier.Inference;

/// <summary>
/// Serves many generations at once on one base model: continuous batching over a paged KV cache,
/// chunked prefill, prefix caching keyed by tokens, adapter and salt, and LoRA adapters mixed in one
/// batch. Requests join and leave the running batch between steps; one engine thread runs the steps.
/// </summary>
/// <remarks>
/// <para>Each step, the scheduler gives the token budget (<see cref="InferenceEngineOptions.MaxBatchTokens"/>)
/// first to the running decodes, then to the running prompts' next prefill chunks, then admits waiting
/// requests in arrival order. When the pool has no block left for a running sequence, the most recently
/// arrived running sequence is preempted: its blocks are freed and it goes back to the queue with every
/// token it has so far, to be recomputed (often mostly from the prefix cache) when there is room. So the
/// pool never overflows and the oldest request always progresses.</para>
/// <para>Determinism: a sequence's logits depend only on its own tokens and adapter (see
/// <see cref="PagedBatchRunner"/>), and its sampler is seeded by its request, so a seeded request gives
/// the same tokens whatever else runs, however often it is preempted.</para>
/// <para><see cref="Submit"/> never blocks: it queues the request and returns its stream.</para>
/// </remarks>
public sealed class InferenceEngine : IDisposable, IAsyncDisposable
{
    private readonly PackedModelWeights _weights;
    private readonly bool _ownsWeights;
    private readonly InferenceEngineOptions _options;
    private readonly KvBlockPool _pool;
    private readonly PagedBatchRunner _runner;
    private readonly AdapterPool _adapters;
    private readonly ConcurrentQueue<Sequence> _incoming = new();
    private readonly ManualResetEventSlim _wake = new(false);
    private readonly CancellationTokenSource _shutdown = new();
    private readonly Lock _gate = new();
    private readonly Thread _loop;
    private readonly TaskCompletionSource _loopExited = new(TaskCreationOptions.RunContinuationsAsynchronously);

    // Both sorted by arrival (Sequence.Id); only the engine thread touches them.
    private readonly List<Sequence> _running = [];
    private readonly List<Sequence> _waiting = [];
    private long _nextId;
    private bool _disposed;

    /// <summary>Starts an engine over base weights, allocating its KV pool.</summary>
    /// <param name="weights">The base model's serving weights (shared, read only; the caller keeps ownership).</param>
    /// <param name="options">Memory and scheduling options; the defaults when null.</param>
    /// <param name="adapterLoader">
    /// Loads a LoRA adapter by id when a request names one that is not resident; it must return a new
    /// instance, which the engine owns from then on (and disposes when it evicts it).
    /// </param>
    public InferenceEngine(PackedModelWeights weights, InferenceEngineOptions? options = null,
        Func<string, CancellationToken, ValueTask<LoraAdapter>>? adapterLoader = null)
        : this(weights, ownsWeights: false, options, adapterLoader)
    {
    }

    /// <summary>
    /// Starts an engine over in-memory float32 weights (random weights, tests), packed here as float32 and
    /// owned by the engine; <paramref name="weights"/> stays the caller's.
    /// </summary>
    public InferenceEngine(MistralWeights weights, InferenceEngineOptions? options = null,
        Func<string, CancellationToken, ValueTask<LoraAdapter>>? adapterLoader = null)
        : this(PackedModelWeights.Pack(weights ?? throw new ArgumentNullException(nameof(weights))), ownsWeights: true, options, adapterLoader)
    {
    }

    private InferenceEngine(PackedModelWeights weights, bool ownsWeights, InferenceEngineOptions? options,
        Func<string, CancellationToken, ValueTask<LoraAdapter>>? adapterLoader)
    {
        ArgumentNullException.ThrowIfNull(weights);
        _options = options ?? new InferenceEngineOptions();
        _options.Validate();
        _weights = weights;
        _ownsWeights = ownsWeights;
        _pool = new KvBlockPool(weights.Args, _options.BlockSize, _options.KvCacheBytes);
        _runner = new PagedBatchRunner(weights, _pool);
        _adapters = new AdapterPool(_options.AdapterPoolCapacity, adapterLoader, weights.Args, Wake, _shutdown.Token);
        Metrics = new InferenceEngineMetrics(_pool.BlockCount, _pool.BlockCount * _pool.BytesPerBlock);
        _loop = new Thread(Loop) { IsBackground = true, Name = "Atelier inference engine" };
        _loop.Start();
    }

    /// <summary>The base weights the engine runs.</summary>
    public PackedModelWeights Weights => _weights;

    /// <summary>Counters for the host to export.</summary>
    public InferenceEngineMetrics Metrics { get; }

    /// <summary>
    /// Test seam: called on the engine thread after each generated token with the request's arrival
    /// number (0 for the engine's first request), its tokens so far and its cancellation token, before
    /// the step ends, so a test can cancel a request after exactly k tokens, or hold the engine at a
    /// token until something outside (a client going away) cancels the request.
    /// </summary>
    internal Action<long, int, CancellationToken>? TokenGenerated { get; set; }

    /// <summary>The most positions one sequence may reach (prompt plus generated tokens): the whole pool.</summary>
    public int MaxSequenceLength => _pool.BlockCount * _pool.BlockSize;

    /// <summary>
    /// Queues a generation and returns its stream at once. Cancelling <paramref name="cancellationToken"/>
    /// ends it before the next step and frees its KV blocks.
    /// </summary>
    /// <exception cref="ArgumentException">The prompt is empty, holds an id outside the vocabulary, or cannot fit the pool with its tokens to generate.</exception>
    public GenerationStream Submit(GenerationRequest request, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        Validate(request);
        Sequence seq;
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            seq = new Sequence(_nextId++, request, cancellationToken);
            _incoming.Enqueue(seq);
        }

        if (cancellationToken.CanBeCanceled)
        {
            seq.Registration = cancellationToken.UnsafeRegister(static state =>
            {
                var (s, engine) = ((Sequence, InferenceEngine))state!;
                s.RequestCancel();
                engine.Wake();
            }, (seq, this));
        }

        _wake.Set();
        return new GenerationStream(seq);
    }

    private void Validate(GenerationRequest request)
    {
        if (request.Prompt is null || request.Prompt.Count == 0)
        {
            throw new ArgumentException("The prompt needs at least one token.", nameof(request));
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(request.MaxTokens, 1, nameof(request));
        foreach (var t in request.Prompt)
        {
            if ((uint)t >= (uint)_weights.Args.VocabSize)
            {
                throw new ArgumentException($"Token {t} is outside the vocabulary of {_weights.Args.VocabSize}.", nameof(request));
            }
        }

        // The last generated token is never fed back, so it needs no position.
        var positions = (long)request.Prompt.Count + request.MaxTokens - 1;
        if (positions > MaxSequenceLength)
        {
            throw new ArgumentException(
                $"The prompt of {request.Prompt.Count} tokens and up to {request.MaxTokens} new ones need {positions} cache positions; the KV pool holds {MaxSequenceLength}.",
                nameof(request));
        }

        ArgumentNullException.ThrowIfNull(request.Sampling, nameof(request));
    }

    private void Wake()
    {
        try
        {
            _wake.Set();
        }
        catch (ObjectDisposedException)
        {
            // A cancellation that races the engine's disposal: nothing is left to wake.
        }
    }

    private void Loop()
    {
        while (true)
        {
            // Reset before looking at the queues: a request or cancel that arrives during the step sets it again.
            _wake.Reset();
            if (_shutdown.IsCancellationRequested)
            {
                break;
            }

            bool worked;
            try
            {
                worked = Step();
            }
            catch (Exception e)
            {
                // A defect in a step must not leave callers waiting forever: fail what is in flight, keep serving.
                FailAll(e);
                worked = true;
            }

            PublishMetrics();
            if (!worked)
            {
                _wake.Wait();
            }
        }

        FailAll(new ObjectDisposedException(nameof(InferenceEngine), "The inference engine was disposed."));
        PublishMetrics();
        _loopExited.TrySetResult();
    }

    private void PublishMetrics()
    {
        Metrics.SetQueues(_running.Count, _waiting.Count + _incoming.Count);
        Metrics.SetBlocks(_pool.UsedBlocks, _pool.CachedBlocks);
        Metrics.SetAdapters(_adapters.Resident);
    }

    /// <summary>One engine step; false when there was nothing to run.</summary>
    private bool Step()
    {
        while (_incoming.TryDequeue(out var arrived))
        {
            InsertByArrival(_waiting, arrived);
        }

        for (var i = _running.Count - 1; i >= 0; i--)
        {
            if (_running[i].CancelRequested)
            {
                Cancel(_running[i]);
            }
        }

        for (var i = _waiting.Count - 1; i >= 0; i--)
        {
            if (_waiting[i].CancelRequested)
            {
                Cancel(_waiting[i]);
            }
        }

        var work = Schedule();
        if (work.Count == 0)
        {
            return false;
        }

        var items = new BatchItem[work.Count];
        for (var i = 0; i < work.Count; i++)
        {
            var (seq, start, count) = work[i];
            items[i] = new BatchItem(seq.TokenRun(start, count), start, seq.Blocks, seq.Adapter, start + count == seq.TokenCount);
        }

        var logits = _runner.RunIntoSharedBuffer(items);
        var vocab = _weights.Args.VocabSize;
        var logitRow = 0;
        var generated = 0;
        for (var i = 0; i < work.Count; i++)
        {
            var (seq, start, count) = work[i];
            seq.Computed = start + count;
            RegisterFullBlocks(seq);
            if (!items[i].WantLogits)
            {
                continue;
            }

            var row = logits.Span.Slice(logitRow++ * vocab, vocab);
            if (seq.Request.LogitsProcessor is { } processor)
            {
                try
                {
                    processor.Process(seq.Tokens[seq.PromptLength..], row);
                }
                catch (Exception e)
                {
                    Fail(seq, e);
                    continue;
                }
            }

            var token = seq.Sampler.Sample(row);
            seq.Append(token);
            seq.Output.Writer.TryWrite(token);
            generated++;
            TokenGenerated?.Invoke(seq.Id, seq.Generated, seq.CancellationToken);
            if (seq.Request.StopTokenIds is { } stop && stop.Contains(token))
            {
                Complete(seq, FinishReason.Stop);
            }
            else if (seq.Generated >= seq.Request.MaxTokens)
            {
                Complete(seq, FinishReason.Length);
            }
        }

        Metrics.AddStep(generated);
        return true;
    }

    private List<(Sequence Seq, int Start, int Count)> Schedule()
    {
        var work = new List<(Sequence Seq, int Start, int Count)>();
        var scheduled = new HashSet<Sequence>();
        var budget = _options.MaxBatchTokens;

        // Decodes first (one token each), then prefill chunks, both oldest first: a long prompt takes
        // only what the decodes leave, so it never stalls them.
        for (var pass = 0; pass < 2; pass++)
        {
            for (var i = 0; i < _running.Count && budget > 0; i++)
            {
                var seq = _running[i];
                var remaining = seq.TokenCount - seq.Computed;
                if (scheduled.Contains(seq) || (remaining == 1) != (pass == 0))
                {
                    continue;
                }

                var count = Math.Min(remaining, budget);
                if (!Reserve(seq, count, scheduled))
                {
                    // It preempted itself (it was the newest unscheduled one); the list shifted onto index i.
                    i--;
                    continue;
                }

                work.Add((seq, seq.Computed, count));
                scheduled.Add(seq);
                budget -= count;
            }
        }

        // Admit waiting requests oldest first. One waiting for its adapter is passed over; one that
        // does not fit stops admission, so that younger requests cannot starve it.
        for (var i = 0; i < _waiting.Count && budget > 0 && _running.Count < _options.MaxRunningSequences;)
        {
            var seq = _waiting[i];
            if (seq.Request.AdapterId is { } id && seq.Adapter is null)
            {
                var status = _adapters.TryAcquire(id, out var adapter, out var error);
                if (status == AdapterStatus.Failed)
                {
                    Fail(seq, error!);
                    continue;
                }

                if (status != AdapterStatus.Ready)
                {
                    i++;
                    continue;
                }

                seq.Adapter = adapter;
            }

            var count = Admit(seq, budget);
            if (count == 0)
            {
                break;
            }

            _waiting.RemoveAt(i);
            InsertByArrival(_running, seq);
            seq.Running = true;
            work.Add((seq, seq.Computed, count));
            scheduled.Add(seq);
            budget -= count;
        }

        return work;
    }

    /// <summary>
    /// Gives <paramref name="seq"/> the blocks for <paramref name="count"/> more positions, preempting the
    /// newest unscheduled running sequences while the pool is out; false when <paramref name="seq"/> itself was preempted.
    /// </summary>
    private bool Reserve(Sequence seq, int count, HashSet<Sequence> scheduled)
    {
        var needed = BlocksFor(seq.Computed + count) - seq.Blocks.Count;
        while (needed > 0)
        {
            if (_pool.TryAllocate(out var block))
            {
                seq.Blocks.Add(block);
                needed--;
                continue;
            }

            // seq is unscheduled, so there is always a victim.
            Sequence? victim = null;
            for (var j = _running.Count - 1; j >= 0; j--)
            {
                if (!scheduled.Contains(_running[j]))
                {
                    victim = _running[j];
                    break;
                }
            }

            Preempt(victim!);
            if (ReferenceEquals(victim, seq))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// Takes a waiting sequence's cached prefix blocks and the blocks of its first chunk; returns the
    /// chunk's token count, or 0 (holding nothing) when the pool cannot take it now.
    /// </summary>
    private int Admit(Sequence seq, int budget)
    {
        var bs = _pool.BlockSize;
        var hits = 0;
        if (_options.PrefixCaching)
        {
            // At least one token is always computed: the step needs its logits.
            var eligible = (seq.TokenCount - 1) / bs;
            for (var b = 0; b < eligible; b++)
            {
                if (!_pool.TryLookup(seq.KeyOfBlock(b, bs), out var block))
                {
                    break;
                }

                seq.Blocks.Add(block);
                hits++;
            }
        }

        seq.Computed = hits * bs;
        seq.RegisteredBlocks = hits;

        // Keep one block of headroom per running sequence, so that admitting a prompt does not force a
        // preemption at the next decode step.
        var spare = _pool.AvailableBlocks - _running.Count;
        var fits = ((seq.Blocks.Count + Math.Max(0, spare)) * bs) - seq.Computed;
        var count = Math.Min(Math.Min(seq.TokenCount - seq.Computed, budget), fits);
        if (count <= 0)
        {
            ReleaseBlocks(seq);
            ReleaseAdapter(seq);
            return 0;
        }

        var needed = BlocksFor(seq.Computed + count) - seq.Blocks.Count;
        for (var i = 0; i < needed; i++)
        {
            var ok = _pool.TryAllocate(out var block);
            System.Diagnostics.Debug.Assert(ok, "admission counted blocks that are not there");
            seq.Blocks.Add(block);
        }

        seq.CachedPromptTokens ??= hits * bs;
        if (_options.PrefixCaching)
        {
            // Counted once per admission, not per attempt: a request waiting for room looks up every step.
            Metrics.AddPrefix((seq.TokenCount - 1) / bs, hits);
        }

        return count;
    }

    private int BlocksFor(int positions) => (positions + _pool.BlockSize - 1) / _pool.BlockSize;

    private void RegisterFullBlocks(Sequence seq)
    {
        if (!_options.PrefixCaching)
        {
            return;
        }

        var full = seq.Computed / _pool.BlockSize;
        for (var b = seq.RegisteredBlocks; b < full; b++)
        {
            _pool.Register(seq.Blocks[b], seq.KeyOfBlock(b, _pool.BlockSize));
        }

        seq.RegisteredBlocks = Math.Max(seq.RegisteredBlocks, full);
    }

    private void Preempt(Sequence seq)
    {
        _running.Remove(seq);
        seq.Running = false;
        ReleaseBlocks(seq);
        ReleaseAdapter(seq);
        seq.Preemptions++;
        InsertByArrival(_waiting, seq);
        Metrics.AddPreemption();
    }

    private void ReleaseBlocks(Sequence seq)
    {
        foreach (var block in seq.Blocks)
        {
            _pool.Release(block);
        }

        seq.Blocks.Clear();
        seq.Computed = 0;
        seq.RegisteredBlocks = 0;
    }

    private void ReleaseAdapter(Sequence seq)
    {
        if (seq.Adapter is not null)
        {
            _adapters.Release(seq.Request.AdapterId!);
            seq.Adapter = null;
        }
    }

    /// <summary>Takes a sequence out of the engine, giving back its blocks and adapter pin.</summary>
    private void Retire(Sequence seq)
    {
        if (seq.Running)
        {
            _running.Remove(seq);
            seq.Running = false;
        }
        else
        {
            _waiting.Remove(seq);
        }

        ReleaseBlocks(seq);
        ReleaseAdapter(seq);
        seq.Finished = true;
        seq.Registration.Dispose();
    }

    private void Complete(Sequence seq, FinishReason reason)
    {
        Retire(seq);
        seq.Output.Writer.TryComplete();
        seq.Completion.TrySetResult(new GenerationResult(reason, seq.PromptLength, seq.CachedPromptTokens ?? 0, seq.Generated, seq.Preemptions));
    }

    private void Cancel(Sequence seq)
    {
        Retire(seq);
        Metrics.AddCancellation();
        seq.Output.Writer.TryComplete(new OperationCanceledException(seq.CancellationToken));
        seq.Completion.TrySetCanceled(seq.CancellationToken);
    }

    private void Fail(Sequence seq, Exception error)
    {
        Retire(seq);
        seq.Output.Writer.TryComplete(error);
        seq.Completion.TrySetException(error);
    }

    private void FailAll(Exception error)
    {
        while (_incoming.TryDequeue(out var arrived))
        {
            InsertByArrival(_waiting, arrived);
        }

        for (var i = _running.Count - 1; i >= 0; i--)
        {
            Fail(_running[i], error);
        }

        for (var i = _waiting.Count - 1; i >= 0; i--)
        {
            Fail(_waiting[i], error);
        }
    }

    private static void InsertByArrival(List<Sequence> list, Sequence seq)
    {
        var at = list.Count;
        while (at > 0 && list[at - 1].Id > seq.Id)
        {
            at--;
        }

        list.Insert(at, seq);
    }

    /// <summary>Stops the engine: requests still in flight fail with <see cref="ObjectDisposedException"/>; waits for the current step to end.</summary>
    public void Dispose()
    {
        if (BeginDispose())
        {
            _loop.Join();
            EndDispose();
        }
    }

    /// <summary>As <see cref="Dispose"/>, without blocking the caller's thread while the current step ends.</summary>
    public async ValueTask DisposeAsync()
    {
        if (BeginDispose())
        {
            await _loopExited.Task.ConfigureAwait(false);
            EndDispose();
        }
    }

    private bool BeginDispose()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return false;
            }

            _disposed = true;
        }

        _shutdown.Cancel();
        _wake.Set();
        return true;
    }

    private void EndDispose()
    {
        _runner.Dispose();
        if (_ownsWeights)
        {
            _weights.Dispose();
        }

        _adapters.Dispose();
        Metrics.Dispose();
        _shutdown.Dispose();
        _wake.Dispose();
    }
}
