using System.Text.Json;
using System.Text.Json.Serialization;
using Atelier.Core.IO;
using Atelier.Core.Residency;
using Atelier.Core.Topology;

namespace Atelier.Core;

/// <summary>
/// The configuration of one Atelier installation, kept as <c>atelier.json</c> in the data
/// directory. The first start writes a default one: a single EU on-prem site with one local
/// location, and the default residency policies.
/// </summary>
public sealed record AtelierConfig
{
    /// <summary>The name of the file inside the data directory.</summary>
    public const string FileName = "atelier.json";

    /// <summary>The schema version of this file, for upgrades.</summary>
    public int Version { get; init; } = 1;

    /// <summary>Server settings.</summary>
    public ServerConfig Server { get; init; } = new();

    /// <summary>Limits on uploads.</summary>
    public FilesConfig Files { get; init; } = new();

    /// <summary>Limits on JSON request bodies.</summary>
    public LimitsConfig Limits { get; init; } = new();

    /// <summary>Sites, racks and nodes.</summary>
    public IReadOnlyList<Site> Sites { get; init; } = [];

    /// <summary>
    /// The latency between racks and sites (<c>topology</c>). Absent, as in the file the first start
    /// writes: the defaults of <see cref="LatencyTiers"/>.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public TopologyConfig? Topology { get; init; }

    /// <summary>Places bytes can live. Relative local paths are under the data directory.</summary>
    public IReadOnlyList<LocationDescriptor> Locations { get; init; } = [];

    /// <summary>Named residency policies.</summary>
    public IReadOnlyList<ResidencyPolicy> Policies { get; init; } = [];

    /// <summary>Which policy applies to what, and where new artifacts go first.</summary>
    public DefaultsConfig Defaults { get; init; } = new();

    /// <summary>Model settings: where base models may be imported from.</summary>
    public ModelsConfig Models { get; init; } = new();

    /// <summary>Serving: the engine's memory and batch, and the replicas requests are routed to.</summary>
    public ServingConfig Serving { get; init; } = new();

    /// <summary>
    /// Where cluster node <paramref name="node"/> serves, as residency judges it: its own drive (the
    /// first location whose <c>node</c> is it, which carries its country, blocs, operator and on-prem
    /// flag), else the default file location, as an embedded server's replica is described. Every node
    /// reads the same file, so each knows where every other node serves without asking it.
    /// </summary>
    /// <param name="node">The node's name.</param>
    /// <returns>The location, or null when neither is configured.</returns>
    public LocationDescriptor? ServingLocationOf(string node) =>
        Locations.FirstOrDefault(l => string.Equals(l.Node, node, StringComparison.Ordinal))
        ?? Locations.FirstOrDefault(l => string.Equals(l.Id, Defaults.FileLocation, StringComparison.Ordinal));

    /// <summary>
    /// The vector collection store (<c>collections</c>): its memory budget and the directories int8
    /// collections keep their full vectors in. Absent, as in the file the first start writes: every
    /// collection keeps its vectors in memory.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public CollectionsConfig? Collections { get; init; }

    /// <summary>How the server logs (<c>logging</c>).</summary>
    public LoggingConfig Logging { get; init; } = new();

    /// <summary>Where traces go (<c>telemetry</c>).</summary>
    public TelemetryConfig Telemetry { get; init; } = new();

    /// <summary>
    /// Which database holds the catalog (<c>catalog</c>). Absent, as in the file the first start
    /// writes (which therefore stays as it was): the embedded SQLite catalog in the data directory.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public CatalogConfig? Catalog { get; init; }

    /// <summary>
    /// This node's name and its cluster's id (<c>cluster</c>). Absent in the embedded default: the
    /// node is the machine, alone. Nodes whose catalog is PostgreSQL join one Orleans cluster through it.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public ClusterConfig? Cluster { get; init; }

    /// <summary>
    /// The catalog this node opens, its connection string resolved, first found first: the
    /// <c>--cluster</c> connection string (<paramref name="clusterConnectionString"/>, which means
    /// PostgreSQL); <c>catalog.connection_string</c>; the file <c>catalog.connection_string_file</c>
    /// names (refused unless its owner alone can read it); the environment variable
    /// <see cref="CatalogConfig.ConnectionStringVariable"/>, which, like <c>--cluster</c>, means PostgreSQL
    /// unless <c>catalog.provider</c> says <c>sqlite</c>. Null: the embedded SQLite catalog.
    /// </summary>
    /// <param name="dataDirectory">The data directory: a relative <c>connection_string_file</c> is inside it.</param>
    /// <param name="clusterConnectionString">The connection string given on the command line, if any.</param>
    /// <param name="environment">Reads an environment variable (the process's when null; tests pass their own).</param>
    /// <exception cref="InvalidOperationException">Both <c>connection_string</c> and <c>connection_string_file</c> are set, or the file is empty.</exception>
    /// <exception cref="UnauthorizedAccessException">The connection string file is readable by its group or others.</exception>
    public CatalogConfig? ResolveCatalog(string dataDirectory, string? clusterConnectionString, Func<string, string?>? environment = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(dataDirectory);
        if (clusterConnectionString is not null)
        {
            return new CatalogConfig { Provider = CatalogConfig.PostgreSql, ConnectionString = clusterConnectionString };
        }

        var configured = Catalog;
        if (configured?.ConnectionStringFile is { Length: > 0 } file)
        {
            if (!string.IsNullOrEmpty(configured.ConnectionString))
            {
                throw new InvalidOperationException($"{FileName}: catalog.connection_string and catalog.connection_string_file are both set; keep one (the file, so that the password is not in {FileName}).");
            }

            var path = Path.IsPathFullyQualified(file) ? file : Path.Combine(dataDirectory, file);
            var text = SecretFile.ReadOwnerOnly(path, "catalog connection string file (catalog.connection_string_file)").Trim();
            return text.Length > 0
                ? configured with { ConnectionString = text }
                : throw new InvalidOperationException($"{FileName}: the catalog connection string file {path} is empty.");
        }

        if (!string.IsNullOrEmpty(configured?.ConnectionString) || configured?.Provider == CatalogConfig.Sqlite)
        {
            return configured;
        }

        var fromEnvironment = (environment ?? Environment.GetEnvironmentVariable)(CatalogConfig.ConnectionStringVariable);
        return string.IsNullOrEmpty(fromEnvironment)
            ? configured
            : (configured ?? new CatalogConfig { Provider = CatalogConfig.PostgreSql }) with { ConnectionString = fromEnvironment };
    }

    /// <summary>The policy with <paramref name="name"/>, or an error naming the known ones.</summary>
    public ResidencyPolicy Policy(string name) =>
        Policies.FirstOrDefault(p => p.Name == name)
        ?? throw new InvalidOperationException($"Residency policy '{name}' is not defined in {FileName}; defined: {string.Join(", ", Policies.Select(p => p.Name))}.");

    /// <summary>The configuration written on first start.</summary>
    /// <param name="country">Jurisdiction of the default on-prem location (EU's France unless told otherwise).</param>
    public static AtelierConfig CreateDefault(string country = "FR")
    {
        if (country is not { Length: 2 } || !char.IsAsciiLetterUpper(country[0]) || !char.IsAsciiLetterUpper(country[1]))
        {
            throw new ArgumentException($"'{country}' is not an ISO 3166-1 alpha-2 country code such as FR or DE.", nameof(country));
        }

        var eu = Jurisdictions.IsWithin(country, "EU") ? (string[])["EU", "EEA"] : [];
        return new AtelierConfig
        {
            Sites = [new Site("local-site", country, [new Rack("rack-0", [Environment.MachineName])])],
            Locations =
            [
                new LocationDescriptor
                {
                    Id = "local",
                    Kind = LocationKind.LocalDirectory,
                    Uri = "blobs/local",
                    Country = country,
                    Blocs = eu,
                    Site = "local-site",
                    Rack = "rack-0",
                    OnPrem = true,
                    Operator = "self",
                },
            ],
            Policies =
            [
                new ResidencyPolicy { Name = "default", AllowedJurisdictions = eu.Length > 0 ? ["EU"] : [country], MinReplicas = 1, RequireOnPrem = false },
                new ResidencyPolicy { Name = "checkpoints", AllowedJurisdictions = eu.Length > 0 ? ["EU"] : [country], MinReplicas = 1, RequireOnPrem = true },
            ],
        };
    }

    /// <summary>Reads the configuration, or writes and returns the default when there is none.</summary>
    /// <param name="dataDirectory">The data directory.</param>
    /// <param name="country">For a new configuration: the country of the default on-prem location.</param>
    public static AtelierConfig LoadOrCreate(string dataDirectory, string country = "FR")
    {
        var path = Path.Combine(dataDirectory, FileName);
        if (File.Exists(path))
        {
            try
            {
                return JsonSerializer.Deserialize<AtelierConfig>(File.ReadAllText(path), SerializerOptions)
                    ?? throw new InvalidOperationException($"{path} is empty.");
            }
            catch (JsonException e)
            {
                throw new InvalidOperationException($"{path} is not valid configuration: {e.Message}", e);
            }
        }

        var config = CreateDefault(country);
        Atelier.Core.IO.AtomicFile.WriteAllBytes(path, System.Text.Encoding.UTF8.GetBytes(JsonSerializer.Serialize(config, SerializerOptions)), overwrite: false);
        return config;
    }

    /// <summary>The JSON options of the configuration file (snake_case, enums as strings, indented).</summary>
    public static JsonSerializerOptions SerializerOptions { get; } = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
        ReadCommentHandling = JsonCommentHandling.Skip,
        AllowTrailingCommas = true,
    };
}

/// <summary>Server settings.</summary>
public sealed record ServerConfig
{
    /// <summary>The address to bind; loopback unless told otherwise.</summary>
    public string Bind { get; init; } = "127.0.0.1";

    /// <summary>The TCP port.</summary>
    public int Port { get; init; } = 8080;

    /// <summary>The Orleans silo's port; 0 picks a free one at start (the embedded default).</summary>
    public int SiloPort { get; init; }

    /// <summary>The Orleans gateway's port; 0 picks a free one at start.</summary>
    public int GatewayPort { get; init; }

    /// <summary>
    /// The URL clients reach the server at (e.g. <c>https://atelier.example.org</c>), used in the
    /// download URLs the server signs. Unset, it is <c>http://&lt;bind&gt;:&lt;port&gt;</c> (loopback when
    /// bound to every address); the request's <c>Host</c> header is never used, since a client chooses it.
    /// </summary>
    public string? PublicUrl { get; init; }

    /// <summary>
    /// A file holding the key that signs download URLs, the same on every node of a cluster (relative
    /// paths are in the data directory; owner-only); null keeps each node's own key in its data directory.
    /// </summary>
    public string? UrlSigningKeyFile { get; init; }
}

/// <summary>Model settings.</summary>
public sealed record ModelsConfig
{
    /// <summary>The default import root: <c>import</c> inside the data directory.</summary>
    public const string DefaultImportRoot = "import";

    /// <summary>
    /// The directories base models may be imported from (<c>models.import_roots</c>): an import names
    /// a directory on the server's machine, and anything that does not resolve (symbolic links
    /// followed) to a path under one of these is refused. Absolute paths; a relative one is inside
    /// the data directory, as the default <c>import</c> is (created 0700 at start).
    /// </summary>
    public IReadOnlyList<string> ImportRoots { get; init; } = [DefaultImportRoot];

    /// <summary>The import roots as absolute paths: relative ones are inside <paramref name="dataDirectory"/>.</summary>
    public IReadOnlyList<string> ImportRootPaths(string dataDirectory) =>
        [.. ImportRoots.Select(root => Path.GetFullPath(Path.IsPathFullyQualified(root) ? root : Path.Combine(dataDirectory, root)))];
}

/// <summary>Serving settings (<c>serving</c>).</summary>
public sealed record ServingConfig
{
    /// <summary>The KV cache of each loaded base model, in bytes: the budget of its block pool.</summary>
    public long KvCacheBytes { get; init; } = 256L << 20;

    /// <summary>Tokens one engine step computes at most (decodes and prefill chunks together).</summary>
    public int MaxBatchTokens { get; init; } = 512;

    /// <summary>Sequences an engine runs at once at most; more wait.</summary>
    public int MaxRunningSequences { get; init; } = 64;

    /// <summary>LoRA adapters each engine keeps loaded at most (least recently used evicted).</summary>
    public int AdapterPoolCapacity { get; init; } = 8;

    /// <summary><see cref="Weights"/>: each projection in the element type the checkpoint stores it in (bf16 stays bf16).</summary>
    public const string WeightsAsLoaded = "as_loaded";

    /// <summary><see cref="Weights"/>: bf16 whatever the checkpoint stores (a float32 checkpoint rounded: half the memory).</summary>
    public const string WeightsBFloat16 = "bf16";

    /// <summary>How a served base model's weights are held in memory: <c>as_loaded</c> (the default) or <c>bf16</c>.</summary>
    public string Weights { get; init; } = WeightsAsLoaded;

    /// <summary>
    /// The replicas (in-process engines) requests are routed to, each described by where it runs; empty
    /// means one replica where the default file location is (<c>defaults.file_location</c>): the embedded
    /// machine itself.
    /// </summary>
    public IReadOnlyList<ReplicaConfig> Replicas { get; init; } = [];
}

/// <summary>The vector collection store (<c>collections</c>).</summary>
public sealed record CollectionsConfig
{
    /// <summary>
    /// Bytes each open int8 collection with segment directories may keep in memory in all (graphs first,
    /// the cache of full vectors gets the rest); 0 (the default): no overall budget, the cache gets
    /// <see cref="VectorCacheBytes"/>.
    /// </summary>
    public long MemoryBudgetBytes { get; init; }

    /// <summary>
    /// Node-local directories (one per drive) where int8 collections keep the full vectors they re-rank on
    /// and their saved graphs, shard <c>i</c> in directory <c>i % count</c>. Each must be an absolute path to
    /// an existing directory private to the server's user (mode 0700): the operator names them, the API
    /// never does. Empty (the default): every collection keeps its vectors in memory.
    /// </summary>
    public IReadOnlyList<string> SegmentDirectories { get; init; } = [];

    /// <summary>Bytes of full vectors each such collection caches when no <see cref="MemoryBudgetBytes"/> is set.</summary>
    public long VectorCacheBytes { get; init; } = 256L << 20;

    /// <summary>Candidates re-ranked on full vectors, as a multiple of k.</summary>
    public int RerankMultiplier { get; init; } = 4;

    /// <summary>Log bytes a shard holds at least before they are folded into a new snapshot (and its graph saved).</summary>
    public long MinSnapshotLogBytes { get; init; } = 8L << 20;

    /// <summary>
    /// Checks the section and returns the segment directories as given, each checked to exist and to be
    /// private to the server's user.
    /// </summary>
    /// <exception cref="InvalidOperationException">A value is out of range, or a directory is missing, relative or open to others; the message names the field.</exception>
    public IReadOnlyList<string> Validate()
    {
        if (MemoryBudgetBytes < 0)
        {
            throw Invalid($"collections.memory_budget_bytes is {MemoryBudgetBytes}; it must be 0 (no budget) or a positive number of bytes.");
        }

        if (VectorCacheBytes < 0)
        {
            throw Invalid($"collections.vector_cache_bytes is {VectorCacheBytes}; it must be 0 or a positive number of bytes.");
        }

        if (RerankMultiplier is < 1 or > 64)
        {
            throw Invalid($"collections.rerank_multiplier is {RerankMultiplier}; it must be 1 to 64.");
        }

        if (MinSnapshotLogBytes < 1)
        {
            throw Invalid($"collections.min_snapshot_log_bytes is {MinSnapshotLogBytes}; it must be a positive number of bytes.");
        }

        const UnixFileMode GroupOrOthers = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
            | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < SegmentDirectories.Count; i++)
        {
            var field = $"collections.segment_directories[{i}]";
            var directory = SegmentDirectories[i];
            if (string.IsNullOrEmpty(directory) || !Path.IsPathFullyQualified(directory))
            {
                throw Invalid($"{field} '{directory}' is not an absolute path; name a directory on the drive that should hold the segments.");
            }

            var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory));
            if (!seen.Add(full))
            {
                throw Invalid($"{field} '{directory}' is named twice; each drive's directory once.");
            }

            if (!Directory.Exists(full))
            {
                throw Invalid($"{field} '{directory}' does not exist; create it (mode 0700, owned by the server's user) or remove it from the list.");
            }

            // The segments hold every point's full vector: a directory others can read or write would leak
            // them or let another user swap the files a search trusts.
            if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(full) & GroupOrOthers) != 0)
            {
                throw Invalid($"{field} '{directory}' is open to its group or others (mode {Convert.ToString((int)File.GetUnixFileMode(full), 8)}); make it 0700.");
            }
        }

        return SegmentDirectories;

        static InvalidOperationException Invalid(string message) => new($"{AtelierConfig.FileName}: {message}");
    }
}

/// <summary>Logging settings (<c>logging</c>).</summary>
public sealed record LoggingConfig
{
    /// <summary>The text format: one line per event.</summary>
    public const string Text = "text";

    /// <summary>The JSON format: one JSON object per line, with its scopes (trace and span ids).</summary>
    public const string Json = "json";

    /// <summary><c>text</c> (the default) or <c>json</c>; <c>atelier serve --log-format</c> overrides it.</summary>
    public string Format { get; init; } = Text;
}

/// <summary>Telemetry settings (<c>telemetry</c>).</summary>
public sealed record TelemetryConfig
{
    /// <summary>
    /// An OpenTelemetry collector's OTLP endpoint (e.g. <c>http://127.0.0.1:4317</c>) that traces are
    /// exported to; unset (the default), traces are made for the logs' trace ids but sent nowhere.
    /// </summary>
    public string? OtlpEndpoint { get; init; }
}

/// <summary>One serving replica.</summary>
/// <param name="Id">Its name, as responses and metrics report it.</param>
/// <param name="Location">
/// The configured location whose facts (jurisdiction, operator, on-prem) describe where the replica
/// runs: a model is only ever loaded on a replica its residency policy allows there.
/// </param>
public sealed record ReplicaConfig(string Id, string Location);

/// <summary>Limits on request bodies that are not file uploads.</summary>
public sealed record LimitsConfig
{
    /// <summary>The largest JSON body of an ordinary request (create, update, search), in bytes.</summary>
    public long MaxJsonBodyBytes { get; init; } = 1024 * 1024;

    /// <summary>The largest JSON body of a bulk write (vector upserts, feature rows), in bytes.</summary>
    public long MaxBulkJsonBodyBytes { get; init; } = 64L * 1024 * 1024;
}

/// <summary>Limits on uploaded files.</summary>
public sealed record FilesConfig
{
    /// <summary>The largest upload accepted, in bytes (Mistral's limit is 512 MB).</summary>
    public long MaxUploadBytes { get; init; } = 512L * 1024 * 1024;

    /// <summary>The longest line accepted in a JSONL file, in bytes.</summary>
    public int MaxLineBytes { get; init; } = 16 * 1024 * 1024;
}

/// <summary>Defaults for new artifacts.</summary>
public sealed record DefaultsConfig
{
    /// <summary>The location new uploads go to first.</summary>
    public string FileLocation { get; init; } = "local";

    /// <summary>The policy of uploaded files.</summary>
    public string FilePolicy { get; init; } = "default";

    /// <summary>The policy of checkpoints.</summary>
    public string CheckpointPolicy { get; init; } = "checkpoints";

    /// <summary>
    /// Where checkpoints go, in order: the first is the fast local copy, the rest are replicas.
    /// Each job's policy decides which of them may hold its checkpoints; the guard refuses and
    /// audits the others.
    /// </summary>
    public IReadOnlyList<string> CheckpointLocations { get; init; } = ["local"];

    /// <summary>Training slots of this node (jobs that train at once here).</summary>
    public int TrainingSlots { get; init; } = 1;

    /// <summary>
    /// The share (0 to 1) of a job's valid training examples that curation (dedup,
    /// decontamination, quality) may drop before the job fails validation instead of training on
    /// the rest; a job's <c>max_curation_drop_fraction</c> overrides it.
    /// </summary>
    public double MaxCurationDropFraction { get; init; } = 0.5;
}

/// <summary>Which database holds the catalog (<c>catalog</c>).</summary>
public sealed record CatalogConfig
{
    /// <summary>The embedded catalog: one SQLite file in the data directory (the default).</summary>
    public const string Sqlite = "sqlite";

    /// <summary>A PostgreSQL database that every node of a cluster shares.</summary>
    public const string PostgreSql = "postgresql";

    /// <summary><c>sqlite</c> (the default) or <c>postgresql</c>.</summary>
    public string Provider { get; init; } = Sqlite;

    /// <summary>
    /// For <c>postgresql</c>: an Npgsql connection string, e.g.
    /// <c>Host=db;Database=atelier;Username=atelier;Password=...</c>. The database must exist; the
    /// catalog creates and migrates its tables. Its password is then in <c>atelier.json</c>: prefer
    /// <see cref="ConnectionStringFile"/> or the environment variable <see cref="ConnectionStringVariable"/>.
    /// </summary>
    public string? ConnectionString { get; init; }

    /// <summary>
    /// For <c>postgresql</c>: a file holding the connection string (mode 0600 or stricter; a file its
    /// group or others can read is refused at start; a relative path is inside the data directory),
    /// so that the password is not in <c>atelier.json</c>. Exclusive with <see cref="ConnectionString"/>.
    /// </summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? ConnectionStringFile { get; init; }

    /// <summary>
    /// The environment variable that gives the connection string when neither <c>--cluster</c> nor
    /// <c>atelier.json</c> does (see <see cref="AtelierConfig.ResolveCatalog"/>).
    /// </summary>
    public const string ConnectionStringVariable = "ATELIER_CATALOG_CONNECTION_STRING";
}

/// <summary>This node in a cluster (<c>cluster</c>).</summary>
public sealed record ClusterConfig
{
    /// <summary>The node's name, as the topology's racks list it (default: the machine's name).</summary>
    public string? Node { get; init; }

    /// <summary>The cluster's id: nodes join only a cluster of the same id (default <c>atelier</c>).</summary>
    public string Id { get; init; } = "atelier";

    /// <summary>
    /// The IP address other nodes reach this node's silo at (default loopback, which serves only nodes
    /// on one machine, as the tests run them).
    /// </summary>
    public string? AdvertisedAddress { get; init; }

    /// <summary>
    /// The id of a location every node reads and writes (e.g. a Ceph RGW bucket): a job's data placed on
    /// one node's drive gets a second copy there, and a node writes there a job's bytes whose location
    /// is another node's drive; without it a job resumes only on its own node.
    /// </summary>
    public string? SharedLocation { get; init; }

    /// <summary>
    /// How long a node may miss its membership probes before the others declare it dead and move its
    /// jobs (Orleans' default, about 10 s per probe and several missed probes, when absent).
    /// </summary>
    public double? ProbeTimeoutSeconds { get; init; }
}
