using System.Collections.Concurrent;
using Atelier.Core.Errors;
using Atelier.Data.Formatting;
using Atelier.Data.Tokenization;
using Atelier.Inference.Constraints;
using Atelier.Modeling.Kernels;
using Atelier.Modeling.Mistral;
using Atelier.Registry;
using Microsoft.Extensions.Logging;

namespace Atelier.Inference.Serving;

/// <summary>How the embedded replica serves models.</summary>
public sealed record ServingOptions
{
    /// <summary>The engine options of each loaded base model (its KV budget, batch, adapter pool).</summary>
    public InferenceEngineOptions Engine { get; init; } = new();

    /// <summary>The element type base weights are held in (<c>serving.weights</c>).</summary>
    public ServingWeights Weights { get; init; } = ServingWeights.AsLoaded;
}

/// <summary>The element type a served model's weights are held in.</summary>
public enum ServingWeights
{
    /// <summary>As the checkpoint stores them: a bf16 checkpoint stays bf16, anything else is float32.</summary>
    AsLoaded,

    /// <summary>bf16 whatever the checkpoint stores (a float32 checkpoint rounded to nearest even: half the memory).</summary>
    BFloat16,
}

/// <summary>
/// A loaded base model: its weights, one <see cref="InferenceEngine"/> that every request on it (and
/// on each of its fine-tuned models, as an adapter) shares, and its tokeniser and chat renderer.
/// </summary>
public sealed class LoadedBase : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, string> _adapterFiles = new(StringComparer.Ordinal);

    internal LoadedBase(string version, PackedModelWeights weights, MistralModelTokenizer tokenizer, InferenceEngineOptions options)
    {
        Version = version;
        Weights = weights;
        Tokenizer = tokenizer;
        Formatter = new MistralInstructFormatter(tokenizer);
        Engine = new InferenceEngine(weights, options, LoadAdapterAsync);
        _vocabulary = new Lazy<TokenVocabulary>(() => new TokenVocabulary(tokenizer.TokenBytes(), [tokenizer.Control.Eos]));
    }

    private readonly Lazy<TokenVocabulary> _vocabulary;

    /// <summary>
    /// The vocabulary as constrained decoding matches it (built on first use: about 2 s for a 131k
    /// vocabulary, then shared by every constrained request on this model).
    /// </summary>
    public TokenVocabulary Vocabulary => _vocabulary.Value;

    /// <summary>The base weights' version (their SHA-256).</summary>
    public string Version { get; }

    /// <summary>The weights, as the engine runs them (and embeddings too): the only copy serving holds.</summary>
    public PackedModelWeights Weights { get; }

    /// <summary>The model's own tokeniser.</summary>
    public MistralModelTokenizer Tokenizer { get; }

    /// <summary>The chat and FIM renderer of the tokeniser's version: the one training uses.</summary>
    public MistralInstructFormatter Formatter { get; }

    /// <summary>The engine.</summary>
    public InferenceEngine Engine { get; }

    /// <summary>Makes an adapter file known to the engine's loader under <paramref name="adapterId"/>.</summary>
    internal void RegisterAdapter(string adapterId, string path) => _adapterFiles[adapterId] = path;

    /// <summary>Whether an adapter file is known under <paramref name="adapterId"/>.</summary>
    internal bool HasAdapter(string adapterId) => _adapterFiles.ContainsKey(adapterId);

    /// <summary>Whether a fine-tuned model of this base was served here (its adapter is, or was recently, in the engine's pool).</summary>
    public bool HasServed(string modelId) => _adapterFiles.Keys.Any(k => k.StartsWith(modelId + "@", StringComparison.Ordinal));

    /// <summary>The fine-tuned models of this base served here (their adapters are, or were recently, in the engine's pool).</summary>
    public IReadOnlyList<string> ServedModels() =>
        [.. _adapterFiles.Keys.Select(k => k[..k.LastIndexOf('@')]).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)];

    /// <summary>Loads a registered adapter file (used by the engine when the adapter is not resident, and by embeddings).</summary>
    internal LoraAdapter LoadAdapter(string adapterId)
    {
        if (!_adapterFiles.TryGetValue(adapterId, out var path))
        {
            throw new InvalidOperationException($"Adapter '{adapterId}' was not registered with its base model.");
        }

        return LoraAdapter.LoadFile(Weights.Args, path);
    }

    private ValueTask<LoraAdapter> LoadAdapterAsync(string adapterId, CancellationToken ct) => ValueTask.FromResult(LoadAdapter(adapterId));

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await Engine.DisposeAsync().ConfigureAwait(false);
        Weights.Dispose();
    }
}

/// <summary>What a request is served with: the model as the caller named it, its loaded base and, for a fine-tuned model, its adapter.</summary>
/// <param name="Model">The registered model.</param>
/// <param name="Base">The loaded base model.</param>
/// <param name="AdapterId">The engine's id of the adapter (the model id and its content hash), or null for a base model.</param>
public sealed record ServedModel(RegisteredModel Model, LoadedBase Base, string? AdapterId)
{
    /// <summary>The longest prompt plus answer: the model's context, or the KV pool if it is smaller.</summary>
    public int ContextLength => Math.Min(Model.MaxContextLength, Base.Engine.MaxSequenceLength);
}

/// <summary>
/// The embedded replica's models: loads a base model from the registry on first use (once, however
/// many requests arrive together) and keeps it with its engine; a fine-tuned model is its base plus
/// its adapter, which the engine loads on demand into its bounded pool. Models are looked up as the
/// caller's workspace sees them, so another workspace's fine-tuned model is not found.
/// </summary>
public sealed partial class ModelServer(ModelRegistry registry, ServingOptions options, ILogger<ModelServer> logger) : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, Lazy<Task<LoadedBase>>> _bases = new(StringComparer.Ordinal);
    private bool _disposed;

    /// <summary>How its engines are set up.</summary>
    public ServingOptions Options => options;

    /// <summary>Whether base model <paramref name="baseId"/> is loaded here (any version), and which.</summary>
    public bool Holds(string baseId, out LoadedBase loaded)
    {
        foreach (var (key, lazy) in _bases)
        {
            if (key.StartsWith(baseId + "@", StringComparison.Ordinal) && lazy.IsValueCreated && lazy.Value.IsCompletedSuccessfully)
            {
                loaded = lazy.Value.Result;
                return true;
            }
        }

        loaded = null!;
        return false;
    }

    /// <summary>
    /// The base models loaded now, each with the fine-tuned models it served and its engine's queue:
    /// what this replica publishes to the other nodes' routers (decision 0025).
    /// </summary>
    public IReadOnlyList<HeldModel> Describe()
    {
        var held = new List<HeldModel>();
        foreach (var (key, lazy) in _bases)
        {
            if (lazy.IsValueCreated && lazy.Value.IsCompletedSuccessfully)
            {
                var loaded = lazy.Value.Result;
                var metrics = loaded.Engine.Metrics;
                held.Add(new HeldModel(key[..key.LastIndexOf('@')], loaded.ServedModels(), metrics.RunningSequences, metrics.WaitingSequences, options.Engine.MaxRunningSequences));
            }
        }

        return held;
    }

    /// <summary>The base models loaded now.</summary>
    public IReadOnlyCollection<LoadedBase> Loaded => [.. _bases.Values.Where(l => l.Value.IsCompletedSuccessfully).Select(l => l.Value.Result)];

    /// <summary>Loads what serving <paramref name="model"/> (as the caller's workspace resolved it) needs on this replica.</summary>
    public async Task<ServedModel> AcquireAsync(RegisteredModel model, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(model);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (model.Kind == ModelKind.Base)
        {
            return new ServedModel(model, await LoadBaseAsync(model, ct).ConfigureAwait(false), null);
        }

        var root = await registry.FindBaseAsync(model.Root!, ct).ConfigureAwait(false)
            ?? throw new StorageUnavailableException($"The base model '{model.Root}' of '{model.Id}' is no longer registered.");
        var loaded = await LoadBaseAsync(root, ct).ConfigureAwait(false);
        var artifact = model.Artifacts.FirstOrDefault(a => a.Name == ModelRegistry.AdapterArtifact)
            ?? throw new StorageUnavailableException($"Model '{model.Id}' has no adapter artifact.");
        var adapterId = model.Id + "@" + artifact.Sha256[..16];
        if (!loaded.HasAdapter(adapterId))
        {
            // Once per adapter version: later requests find the file already known to the engine's loader.
            loaded.RegisterAdapter(adapterId, await registry.LocalArtifactAsync(model, ModelRegistry.AdapterArtifact, ct).ConfigureAwait(false));
        }

        return new ServedModel(model, loaded, adapterId);
    }

    private async Task<LoadedBase> LoadBaseAsync(RegisteredModel model, CancellationToken ct)
    {
        var version = model.Artifacts.First(a => a.Name == ModelDirectoryValidator.Weights).Sha256;
        var key = model.Id + "@" + version;
        var lazy = _bases.GetOrAdd(key, _ => new Lazy<Task<LoadedBase>>(() => Task.Run(async () =>
        {
            // Not cancelled by the first caller's token: others may be waiting on the same load.
            var directory = await registry.ModelDirectoryAsync(model, CancellationToken.None).ConfigureAwait(false);
            var started = System.Diagnostics.Stopwatch.StartNew();
            var tokenizer = MistralModelTokenizer.Load(directory);
            var weights = PackedModelWeights.LoadDirectory(directory, options.Weights == ServingWeights.BFloat16 ? PackedElementType.BFloat16 : null);
            try
            {
                LogLoaded(logger, model.Id, weights.Args.NLayers, weights.Args.Dim, weights.ElementType, weights.ResidentBytes >> 20, started.ElapsedMilliseconds);
                return new LoadedBase(version, weights, tokenizer, options.Engine);
            }
            catch
            {
                weights.Dispose();
                throw;
            }
        })));
        try
        {
            return await lazy.Value.WaitAsync(ct).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // A failed load is not kept: the next request tries again.
            _bases.TryRemove(new KeyValuePair<string, Lazy<Task<LoadedBase>>>(key, lazy));
            throw;
        }
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        _disposed = true;
        foreach (var lazy in _bases.Values.Where(l => l.IsValueCreated))
        {
            await ((Task)lazy.Value).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            if (lazy.Value.IsCompletedSuccessfully)
            {
                await lazy.Value.Result.DisposeAsync().ConfigureAwait(false);
            }
        }

        _bases.Clear();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Loaded model {Model} for serving: {Layers} layers of width {Dim}, weights in {ElementType} ({ResidentMiB} MiB resident) in {Milliseconds} ms")]
    private static partial void LogLoaded(ILogger logger, string model, int layers, int dim, PackedElementType elementType, long residentMiB, long milliseconds);
}
