using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Atelier.Cli;
using Atelier.Core;
using Atelier.Testing;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Atelier.Architecture.Tests;

/// <summary>
/// The deployment files under <c>deploy/</c>: Debian's <c>yamllint</c> over every YAML file, then
/// what a linter cannot see, read from the parsed manifests: each reference between them resolves
/// (ConfigMaps, Secrets and their keys, headless Services, ports, volumes), every flag passed to
/// <c>atelier serve</c> is one the CLI accepts, and the ConfigMap's <c>atelier.json</c> loads with
/// Atelier's own loader and agrees with the manifests (ports, node names, location ids).
/// </summary>
public sealed partial class DeploymentManifestTests
{
    private static readonly string Deploy = Path.Combine(Repo.Root, "deploy");
    private static readonly string Kubernetes = Path.Combine(Deploy, "kubernetes");
    private static readonly Lazy<IReadOnlyList<Manifest>> Manifests = new(LoadManifests);

    [Fact]
    public async Task Yamllint_FindsNothingToReport_InAnyFileUnderDeploy()
    {
        // Not a skip: a machine without the linter must not pass this test (eng/test.sh installs it).
        var yamllint = FindOnPath("yamllint")
            ?? throw new Xunit.Sdk.XunitException("yamllint is not installed, so deploy/ cannot be linted: install Debian's yamllint (apt-get install yamllint; eng/test.sh installs it).");

        // The files it lints: all of deploy/'s YAML, none ignored by the configuration.
        var (listed, files) = await Repo.RunAsync(yamllint, ["--list-files", "-c", Path.Combine(Deploy, ".yamllint"), Deploy], Repo.Root);
        Assert.True(listed == 0, files);
        var linted = files.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Path.GetFullPath).Order(StringComparer.Ordinal);
        var yaml = Directory.EnumerateFiles(Deploy, "*.yaml", SearchOption.AllDirectories).Append(Path.Combine(Deploy, ".yamllint")).Select(Path.GetFullPath).Order(StringComparer.Ordinal);
        Assert.Equal(yaml, linted);

        var (exit, output) = await Repo.RunAsync(yamllint, ["--strict", "-f", "parsable", "-c", Path.Combine(Deploy, ".yamllint"), Deploy], Repo.Root);
        Assert.True(exit == 0, $"yamllint --strict deploy/ exited {exit}:\n{output}");
    }

    [Fact]
    public void TheKustomization_ListsEveryManifest_AndEachExists()
    {
        var kustomization = Manifests.Value.Single(m => m.Kind == "Kustomization");
        var resources = kustomization.Body["resources"]!.AsArray().Select(r => r!.GetValue<string>()).Order(StringComparer.Ordinal).ToArray();
        var files = Directory.EnumerateFiles(Kubernetes, "*.yaml").Select(Path.GetFileName).Where(f => f != "kustomization.yaml").Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(files, resources);
    }

    [Fact]
    public void EveryConfigMapSecretAndKey_AStatefulSetNames_Exists()
    {
        var configMaps = Objects("ConfigMap").ToDictionary(m => m.Name, m => Keys(m.Body["data"]));
        var secrets = Objects("Secret").ToDictionary(m => m.Name, m => Keys(m.Body["stringData"]).Concat(Keys(m.Body["data"])).ToHashSet(StringComparer.Ordinal));
        Assert.NotEmpty(StatefulSets());
        foreach (var set in StatefulSets())
        {
            var pod = PodSpec(set);
            foreach (var volume in Array(pod["volumes"]))
            {
                if (volume["configMap"]?["name"]?.GetValue<string>() is { } configMap)
                {
                    Assert.True(configMaps.ContainsKey(configMap), $"{set.Name} mounts ConfigMap {configMap}, which no manifest defines");
                }

                if (volume["secret"]?["secretName"]?.GetValue<string>() is { } secret)
                {
                    Assert.True(secrets.ContainsKey(secret), $"{set.Name} mounts Secret {secret}, which no manifest defines");
                }
            }

            foreach (var container in Containers(pod))
            {
                foreach (var env in Array(container["env"]))
                {
                    if (env["valueFrom"]?["secretKeyRef"] is { } secretRef)
                    {
                        var (name, key) = (Text(secretRef["name"]), Text(secretRef["key"]));
                        Assert.True(secrets.TryGetValue(name, out var keys) && keys.Contains(key), $"{set.Name}: env {Text(env["name"])} names key {key} of Secret {name}, which does not exist");
                    }

                    if (env["valueFrom"]?["configMapKeyRef"] is { } mapRef)
                    {
                        var (name, key) = (Text(mapRef["name"]), Text(mapRef["key"]));
                        Assert.True(configMaps.TryGetValue(name, out var keys) && keys.Contains(key), $"{set.Name}: env {Text(env["name"])} names key {key} of ConfigMap {name}, which does not exist");
                    }
                }

                foreach (var from in Array(container["envFrom"]))
                {
                    if (from["secretRef"]?["name"]?.GetValue<string>() is { } secret)
                    {
                        Assert.True(secrets.ContainsKey(secret), $"{set.Name}: envFrom names Secret {secret}, which no manifest defines");
                    }

                    if (from["configMapRef"]?["name"]?.GetValue<string>() is { } configMap)
                    {
                        Assert.True(configMaps.ContainsKey(configMap), $"{set.Name}: envFrom names ConfigMap {configMap}, which no manifest defines");
                    }
                }
            }
        }
    }

    [Fact]
    public void TheSecretManifest_HoldsPlaceholdersOnly()
    {
        foreach (var secret in Objects("Secret"))
        {
            Assert.Null(secret.Body["data"]);
            foreach (var (_, value) in secret.Body["stringData"]!.AsObject())
            {
                Assert.Contains("REPLACE_ME", value!.GetValue<string>(), StringComparison.Ordinal);
            }
        }
    }

    [Fact]
    public void EachStatefulSetsServiceName_IsAHeadlessServiceSelectingItsPods()
    {
        var services = Objects("Service").ToDictionary(s => s.Name);
        foreach (var set in StatefulSets())
        {
            var serviceName = Text(set.Body["spec"]!["serviceName"]);
            Assert.True(services.TryGetValue(serviceName, out var service), $"{set.Name}: serviceName {serviceName} is not a Service of the manifests");
            Assert.True(service.Body["spec"]!["clusterIP"]?.GetValue<string>() == "None", $"{set.Name}: serviceName {serviceName} is not headless (clusterIP: None)");
            Assert.True(Selects(service, set), $"{set.Name}: its headless Service {serviceName} does not select its pods");
        }
    }

    [Fact]
    public void EveryService_SelectsSomePods_AndEachTargetPortIsAContainerPortOfEveryPodItSelects()
    {
        var api = Objects("Service").Single(s => s.Name == "atelier-api");
        Assert.Equal(("ClusterIP", 8080), (Text(api.Body["spec"]!["type"]), api.Body["spec"]!["ports"]![0]!["port"]!.GetValue<int>()));
        foreach (var service in Objects("Service"))
        {
            var selected = StatefulSets().Where(s => Selects(service, s)).ToArray();
            Assert.True(selected.Length > 0, $"Service {service.Name} selects no pod of the manifests");
            foreach (var port in Array(service.Body["spec"]!["ports"]))
            {
                var target = port["targetPort"] ?? port["port"]!;
                foreach (var set in selected)
                {
                    var ports = ContainerPorts(set);
                    Assert.True(
                        target.GetValueKind() == JsonValueKind.Number ? ports.ContainsValue(target.GetValue<int>()) : ports.ContainsKey(target.GetValue<string>()),
                        $"Service {service.Name}: targetPort {target} is not a container port of {set.Name} ({string.Join(", ", ports.Select(p => $"{p.Key}={p.Value}"))})");
                }
            }
        }
    }

    [Fact]
    public void ProbesCheckHealthOnANamedPort_AndEveryMountIsAVolume()
    {
        foreach (var set in StatefulSets())
        {
            var pod = PodSpec(set);
            var volumes = Array(pod["volumes"]).Select(v => Text(v["name"]))
                .Concat(Array(set.Body["spec"]!["volumeClaimTemplates"]).Select(c => Text(c["metadata"]!["name"]))).ToHashSet(StringComparer.Ordinal);
            foreach (var container in Containers(pod).Concat(Array(pod["initContainers"])))
            {
                foreach (var mount in Array(container["volumeMounts"]))
                {
                    Assert.True(volumes.Contains(Text(mount["name"])), $"{set.Name}/{Text(container["name"])} mounts {Text(mount["name"])}, which is neither a volume nor a claim template");
                }
            }

            var ports = ContainerPorts(set);
            var atelier = Containers(pod).Single(c => Text(c["name"]) == "atelier");
            foreach (var probe in new[] { "startupProbe", "livenessProbe", "readinessProbe" })
            {
                var get = atelier[probe]?["httpGet"] ?? throw new Xunit.Sdk.XunitException($"{set.Name} has no {probe} over HTTP");
                Assert.Equal("/health", Text(get["path"]));
                Assert.True(ports.ContainsKey(Text(get["port"])), $"{set.Name}: {probe} port {get["port"]} is not a named container port");
            }

            Assert.True(pod["securityContext"]!["runAsNonRoot"]!.GetValue<bool>(), $"{set.Name} may run as root");
            Assert.True(atelier["securityContext"]!["readOnlyRootFilesystem"]!.GetValue<bool>(), $"{set.Name}: the root filesystem is writable");
            Assert.NotNull(atelier["resources"]?["requests"]);
            Assert.NotNull(atelier["resources"]?["limits"]);
        }
    }

    [Fact]
    public void TheArgumentsOfAtelierServe_AreOnesTheCliAccepts_AndItRunsTheCliAssembly()
    {
        // The image runs the published CLI (deploy/Dockerfile publishes it to /app).
        Assert.Equal("atelier", typeof(AtelierCommands).Assembly.GetName().Name);
        var dockerfile = File.ReadAllText(Path.Combine(Deploy, "Dockerfile"));
        Assert.Contains("src/Atelier.Cli/Atelier.Cli.csproj", dockerfile, StringComparison.Ordinal);
        Assert.Contains("-o /app", dockerfile, StringComparison.Ordinal);

        foreach (var set in StatefulSets())
        {
            var atelier = Containers(PodSpec(set)).Single(c => Text(c["name"]) == "atelier");
            Assert.Equal(new[] { "dotnet", "/app/atelier.dll" }, Array(atelier["command"]).Select(Text));
            var args = Array(atelier["args"]).Select(Text).ToArray();
            Assert.Equal("serve", args.FirstOrDefault());

            // The CLI's own parser: an unknown flag, a missing value or a bad one is an error there.
            var parse = AtelierCommands.Build().Parse(args);
            Assert.True(parse.Errors.Count == 0, $"{set.Name}: atelier {string.Join(' ', args)}: {string.Join("; ", parse.Errors.Select(e => e.Message))}");
            Assert.Equal("serve", parse.CommandResult.Command.Name);

            // Each $(VAR) the arguments use is an environment variable of the container.
            var env = Array(atelier["env"]).Select(e => Text(e["name"])).ToHashSet(StringComparer.Ordinal);
            foreach (Match variable in EnvReference().Matches(string.Join(' ', args)))
            {
                Assert.True(env.Contains(variable.Groups[1].Value), $"{set.Name}: the arguments use $({variable.Groups[1].Value}), which is not in the container's env");
            }

            Assert.Equal("metadata.name", Text(Array(atelier["env"]).Single(e => Text(e["name"]) == "POD_NAME")["valueFrom"]!["fieldRef"]!["fieldPath"]));
            Assert.Equal("status.podIP", Text(Array(atelier["env"]).Single(e => Text(e["name"]) == "POD_IP")["valueFrom"]!["fieldRef"]!["fieldPath"]));
            Assert.Equal("$(POD_NAME)", ArgumentOf(args, "--node"));
            Assert.Equal("$(POD_IP)", ArgumentOf(args, "--advertised-address"));
            Assert.Contains(CatalogConfig.ConnectionStringVariable, env);
        }
    }

    [Fact]
    public void TheConfigMapsAtelierJson_LoadsWithAtelierConfig_AndAgreesWithTheManifests()
    {
        var configMap = Objects("ConfigMap").Single(m => m.Name == "atelier-config");
        var data = configMap.Body["data"]!.AsObject();
        var pods = StatefulSets().SelectMany(s => Enumerable.Range(0, s.Body["spec"]!["replicas"]!.GetValue<int>()).Select(i => $"{s.Name}-{i}")).ToHashSet(StringComparer.Ordinal);
        foreach (var set in StatefulSets())
        {
            // The init container copies one key of the mounted ConfigMap to <--data>/atelier.json.
            var pod = PodSpec(set);
            var init = Array(pod["initContainers"]).Single(c => Text(c["name"]) == "config");
            var copy = CopyCommand().Match(string.Join(' ', Array(init["command"]).Select(Text)));
            Assert.True(copy.Success, $"{set.Name}: the init container copies no configuration");
            var atelier = Containers(pod).Single(c => Text(c["name"]) == "atelier");
            Assert.Equal(ArgumentOf(Array(atelier["args"]).Select(Text).ToArray(), "--data") + "/" + AtelierConfig.FileName, copy.Groups[2].Value);
            var mount = Array(init["volumeMounts"]).Single(m => copy.Groups[1].Value.StartsWith(Text(m["mountPath"]) + "/", StringComparison.Ordinal));
            var volume = Array(pod["volumes"]).Single(v => Text(v["name"]) == Text(mount["name"]));
            Assert.Equal(configMap.Name, Text(volume["configMap"]!["name"]));
            var key = copy.Groups[1].Value[(Text(mount["mountPath"]).Length + 1)..];
            Assert.True(data.ContainsKey(key), $"{set.Name} copies {key}, which ConfigMap {configMap.Name} does not hold");

            var config = Load(data[key]!.GetValue<string>());
            var json = JsonNode.Parse(data[key]!.GetValue<string>(), documentOptions: new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip })!;

            // Ports the server listens on are the container's ports, on every address of the pod.
            var ports = ContainerPorts(set);
            Assert.Equal((ports["http"], ports["silo"], ports["gateway"]), (config.Server.Port, config.Server.SiloPort, config.Server.GatewayPort));
            Assert.Equal("0.0.0.0", config.Server.Bind);

            // No secret in the ConfigMap: the catalog is PostgreSQL, its connection string from the Secret.
            Assert.Equal(CatalogConfig.PostgreSql, config.Catalog?.Provider);
            Assert.Null(config.Catalog?.ConnectionString);
            Assert.All(config.Locations, l => Assert.Null(l.S3?.CredentialsFile));
            using var directory = new ConfigDirectory(data[key]!.GetValue<string>());
            var resolved = config.ResolveCatalog(directory.Path, null, name => name == CatalogConfig.ConnectionStringVariable ? "Host=db;Database=atelier" : null);
            Assert.Equal((CatalogConfig.PostgreSql, "Host=db;Database=atelier"), (resolved?.Provider, resolved?.ConnectionString));

            // The topology's nodes are exactly the pods (node name = pod name), and its references hold.
            AssertConsistent(config, json, key, pods);

            // Training nodes train; serving nodes have no slot, so the scheduler places nothing there.
            Assert.True(set.Name == "atelier-serve" ? config.Defaults.TrainingSlots == 0 : config.Defaults.TrainingSlots > 0, $"{set.Name}: defaults.training_slots {config.Defaults.TrainingSlots}");
        }

        // The keys differ in the training slots alone: one configuration, two roles.
        var files = data.Select(d => JsonNode.Parse(d.Value!.GetValue<string>())!).ToArray();
        Assert.True(files.Length >= 2);
        foreach (var file in files)
        {
            file["defaults"]!.AsObject().Remove("training_slots");
        }

        Assert.All(files, f => Assert.True(JsonNode.DeepEquals(files[0], f), "the ConfigMap's atelier.json files differ in more than defaults.training_slots"));
    }

    [Fact]
    public void TheAtelierJsonOfDocsCluster_LoadsWithAtelierConfig_AndItsReferencesHold()
    {
        // The first JSON block of "The shared atelier.json" in docs/cluster.md is the one operators copy.
        var markdown = File.ReadAllText(Path.Combine(Repo.Root, "docs", "cluster.md"));
        var section = markdown.IndexOf("## The shared atelier.json", StringComparison.Ordinal);
        Assert.True(section >= 0, "docs/cluster.md has no section \"The shared atelier.json\"");
        var block = JsonBlock().Match(markdown, section);
        Assert.True(block.Success, "docs/cluster.md: no ```json block in \"The shared atelier.json\"");
        var text = block.Groups[1].Value;

        var config = Load(text);
        AssertConsistent(config, JsonNode.Parse(text)!, "docs/cluster.md", ["a", "b", "c"]);
        Assert.Equal((CatalogConfig.PostgreSql, (string?)null), (config.Catalog?.Provider, config.Catalog?.ConnectionString));
        Assert.NotNull(config.Catalog?.ConnectionStringFile);
        Assert.Equal(2, config.Sites.Single().Racks.Count);
    }

    /// <summary>Node names are <paramref name="nodes"/>; every location, policy and node the configuration names exists.</summary>
    private static void AssertConsistent(AtelierConfig config, JsonNode json, string what, IEnumerable<string> nodes)
    {
        var topology = config.Sites.SelectMany(s => s.Racks).SelectMany(r => r.Nodes).ToArray();
        Assert.Equal(topology.Length, topology.Distinct(StringComparer.Ordinal).Count());
        Assert.Equal(nodes.Order(StringComparer.Ordinal), topology.Order(StringComparer.Ordinal));

        // Every location id a setting names exists, and every location sits in the topology.
        var locations = config.Locations.Select(l => l.Id).ToHashSet(StringComparer.Ordinal);
        Assert.Equal(config.Locations.Count, locations.Count);
        var named = config.Defaults.CheckpointLocations.Append(config.Defaults.FileLocation).Concat(config.Serving.Replicas.Select(r => r.Location));
        if (json["cluster"]?["shared_location"]?.GetValue<string>() is { } shared)
        {
            named = named.Append(shared);
        }

        Assert.All(named, id => Assert.True(locations.Contains(id), $"{what} names location {id}, which locations[] does not define"));
        Assert.All(new[] { config.Defaults.FilePolicy, config.Defaults.CheckpointPolicy }, p => config.Policy(p));
        foreach (var location in config.Locations)
        {
            Assert.Contains(location.Site, config.Sites.Select(s => s.Id));
            Assert.True(location.Rack is null || config.Sites.Single(s => s.Id == location.Site).Racks.Any(r => r.Id == location.Rack), $"{what}: location {location.Id}: rack {location.Rack} is not in site {location.Site}");
            Assert.True(location.Node is null || config.Sites.SelectMany(s => s.Racks).Single(r => r.Nodes.Contains(location.Node)).Id == location.Rack, $"{what}: location {location.Id}: node {location.Node} is not in rack {location.Rack}");
        }
    }

    private static AtelierConfig Load(string json)
    {
        // Through the loader the server uses: the file as <data>/atelier.json.
        using var directory = new ConfigDirectory(json);
        return AtelierConfig.LoadOrCreate(directory.Path);
    }

    private static string ArgumentOf(string[] args, string flag)
    {
        var at = System.Array.IndexOf(args, flag);
        Assert.True(at >= 0 && at + 1 < args.Length, $"no {flag} VALUE in {string.Join(' ', args)}");
        return args[at + 1];
    }

    private static string? FindOnPath(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(d => Path.Combine(d, program)).FirstOrDefault(File.Exists);

    private static IEnumerable<Manifest> Objects(string kind) => Manifests.Value.Where(m => m.Kind == kind);

    private static IEnumerable<Manifest> StatefulSets() => Objects("StatefulSet");

    private static JsonNode PodSpec(Manifest set) => set.Body["spec"]!["template"]!["spec"]!;

    private static IEnumerable<JsonNode> Containers(JsonNode pod) => Array(pod["containers"]);

    private static IEnumerable<JsonNode> Array(JsonNode? node) => node?.AsArray().Select(n => n!) ?? [];

    private static IEnumerable<string> Keys(JsonNode? node) => node?.AsObject().Select(p => p.Key) ?? [];

    private static string Text(JsonNode? node) => node?.GetValue<string>() ?? throw new Xunit.Sdk.XunitException("a required field is missing");

    private static Dictionary<string, int> ContainerPorts(Manifest set) =>
        Containers(PodSpec(set)).SelectMany(c => Array(c["ports"])).ToDictionary(p => Text(p["name"]), p => p["containerPort"]!.GetValue<int>());

    private static bool Selects(Manifest service, Manifest set)
    {
        var labels = set.Body["spec"]!["template"]!["metadata"]!["labels"]!.AsObject();
        var selector = service.Body["spec"]!["selector"]!.AsObject();
        return selector.All(s => labels[s.Key]?.GetValue<string>() == s.Value!.GetValue<string>());
    }

    private static List<Manifest> LoadManifests()
    {
        var manifests = new List<Manifest>();
        foreach (var file in Directory.EnumerateFiles(Kubernetes, "*.yaml").Order(StringComparer.Ordinal))
        {
            var stream = new YamlStream();
            using (var reader = new StreamReader(file))
            {
                stream.Load(reader);
            }

            foreach (var document in stream.Documents)
            {
                var body = ToJson(document.RootNode)!;
                manifests.Add(new Manifest(Path.GetFileName(file), Text(body["kind"]), body["metadata"]?["name"]?.GetValue<string>() ?? "", body));
            }
        }

        return manifests;
    }

    /// <summary>YAML to JSON, typing plain scalars as Kubernetes reads them (numbers and booleans), quoted ones as strings.</summary>
    private static JsonNode? ToJson(YamlNode node) => node switch
    {
        YamlMappingNode map => new JsonObject(map.Children.Select(c => KeyValuePair.Create(((YamlScalarNode)c.Key).Value!, ToJson(c.Value)))),
        YamlSequenceNode sequence => new JsonArray([.. sequence.Children.Select(ToJson)]),
        YamlScalarNode { Style: ScalarStyle.Plain } scalar when int.TryParse(scalar.Value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var number) => JsonValue.Create(number),
        YamlScalarNode { Style: ScalarStyle.Plain, Value: "true" or "false" } scalar => JsonValue.Create(scalar.Value == "true"),
        YamlScalarNode { Style: ScalarStyle.Plain, Value: "null" or "~" or "" } => null,
        YamlScalarNode scalar => JsonValue.Create(scalar.Value),
        _ => throw new InvalidDataException($"unexpected YAML node {node.NodeType} at {node.Start}"),
    };

    [GeneratedRegex(@"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")]
    private static partial Regex EnvReference();

    [GeneratedRegex(@"```json\n(.*?)\n```", RegexOptions.Singleline)]
    private static partial Regex JsonBlock();

    [GeneratedRegex(@"\bcp (\S+) (\S+)")]
    private static partial Regex CopyCommand();

    private sealed record Manifest(string File, string Kind, string Name, JsonNode Body);

    /// <summary>A temporary data directory holding one <c>atelier.json</c>, removed on dispose.</summary>
    private sealed class ConfigDirectory : IDisposable
    {
        public ConfigDirectory(string json)
        {
            Path = TestCleanup.CreateDirectory("atelier-deploy-config");
            File.WriteAllText(System.IO.Path.Combine(Path, AtelierConfig.FileName), json);
        }

        public string Path { get; }

        public void Dispose() => TestCleanup.Delete(Path);
    }
}
