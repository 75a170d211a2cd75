using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Spectre.Console;

namespace Atelier.Cli;

/// <summary><c>atelier collections create|list|get|delete|upsert|search</c>: vector collections over HTTP.</summary>
internal static partial class CollectionsCommands
{
    public static Command Build(ClientOptions client)
    {
        var command = new Command("collections", "Vector collections: create, upsert embeddings with payloads, search with filters.");
        var name = new Argument<string>("name") { Description = "The collection name." };

        var dimension = new Option<int>("--dimension", "-d") { Description = "Components per vector; every point and query must have exactly this many.", Required = true };
        var metric = new Option<string>("--metric") { Description = "The distance that ranks neighbours (default cosine).", DefaultValueFactory = _ => "cosine" }.OneOf("cosine", "dot", "l2");
        var storage = new Option<string>("--storage") { Description = "How vectors are stored (default float32; int8 walks the graph on int8 codes and re-ranks on float32).", DefaultValueFactory = _ => "float32" }.OneOf("float32", "float16", "int8");
        var shards = new Option<int>("--shards") { Description = "Shards the points are hashed onto by id (default 1); a search queries every shard.", DefaultValueFactory = _ => 1 };
        var locations = new Option<string[]>("--location") { Description = "A location for the shards (repeat for several; shard i goes to location i mod n).", AllowMultipleArgumentsPerToken = true };
        var policy = new Option<string?>("--policy") { Description = "The residency policy of the collection's bytes." };
        var pq = new Option<int?>("--pq") { Description = "Product quantisation for an int8 collection larger than memory: bytes of code per vector (must divide the dimension). The graph is walked on these codes in memory and re-ranked on full vectors read from the segments." };
        var hnswM = new Option<int?>("--m") { Description = "Graph links per point (HNSW's M; default 16)." };
        var efConstruction = new Option<int?>("--ef-construction") { Description = "Candidate list size while inserting (default 128)." };
        var efSearch = new Option<int?>("--ef-search") { Description = "Default candidate list size of a search (default 64)." };
        var create = new Command("create", "Create a collection.");
        create.Arguments.Add(name);
        create.Options.Add(dimension);
        create.Options.Add(metric);
        create.Options.Add(storage);
        create.Options.Add(shards);
        create.Options.Add(locations);
        create.Options.Add(policy);
        create.Options.Add(pq);
        create.Options.Add(hnswM);
        create.Options.Add(efConstruction);
        create.Options.Add(efSearch);
        create.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = new JsonObject
            {
                ["name"] = parse.GetValue(name),
                ["dimension"] = parse.GetValue(dimension),
                ["metric"] = parse.GetValue(metric),
                ["storage"] = parse.GetValue(storage),
                ["shards"] = parse.GetValue(shards),
            };
            if (parse.GetValue(locations) is { Length: > 0 } l)
            {
                body["locations"] = new JsonArray([.. l.Select(x => (JsonNode)x)]);
            }

            if (parse.GetValue(policy) is { } p)
            {
                body["policy"] = p;
            }

            if (parse.GetValue(pq) is { } codeBytes)
            {
                body["product_quantization"] = codeBytes;
            }

            var hnsw = new JsonObject();
            if (parse.GetValue(hnswM) is { } m)
            {
                hnsw["m"] = m;
            }

            if (parse.GetValue(efConstruction) is { } efc)
            {
                hnsw["ef_construction"] = efc;
            }

            if (parse.GetValue(efSearch) is { } efs)
            {
                hnsw["ef_search"] = efs;
            }

            if (hnsw.Count > 0)
            {
                body["hnsw"] = hnsw;
            }

            var created = await api.SendAsync(Json(HttpMethod.Post, "/api/v1/collections", body), cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(created);
            }

            Console.WriteLine($"Created collection {created["name"]} ({created["id"]}): {created["config"]!["dimension"]} dimensions, {created["config"]!["metric"]}, {Storage(created["config"]!)}, {created["config"]!["shards"]} shard(s), policy {created["policy"]}.");
            return 0;
        });
        command.Subcommands.Add(create);

        var list = new Command("list", "List the workspace's collections.");
        list.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = await api.GetJsonAsync("/api/v1/collections", cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(body);
            }

            var table = new Table().AddColumns("name", "id", "dimension", "metric", "storage", "shards", "policy", "created");
            foreach (var c in body["data"]!.AsArray())
            {
                var config = c!["config"]!;
                table.AddRow(
                    Markup.Escape(AtelierCommands.Str(c["name"])),
                    AtelierCommands.Str(c["id"]),
                    AtelierCommands.Str(config["dimension"]),
                    AtelierCommands.Str(config["metric"]),
                    Storage(config),
                    AtelierCommands.Str(config["shards"]),
                    Markup.Escape(AtelierCommands.Str(c["policy"])),
                    KeysCommands.Time(c["created_at"]!.GetValue<long>()));
            }

            AnsiConsole.Write(table);
            return 0;
        });
        command.Subcommands.Add(list);

        var get = new Command("get", "Show a collection: point count, configuration, shards.");
        get.Arguments.Add(name);
        get.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = await api.GetJsonAsync(Path(parse.GetValue(name)!), cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(body);
            }

            Console.WriteLine($"{body["name"]} ({body["id"]}): {body["status"]}, {body["points_count"]} points, {body["config"]!["dimension"]} dimensions, {body["config"]!["metric"]}, {Storage(body["config"]!)}, policy {body["policy"]}.");
            if (body["memory"] is { } memory)
            {
                var budget = memory["budget_bytes"]!.GetValue<long>();
                Console.WriteLine($"In memory: {AtelierCommands.Bytes(memory["resident_bytes"]!.GetValue<long>())} of graphs and codes; budget {(budget == 0 ? "none" : AtelierCommands.Bytes(budget))}{(memory["over_memory_budget"]!.GetValue<bool>() ? " (OVER the budget: the cache of full vectors is cut to its minimum)" : string.Empty)}.");
            }

            var table = new Table().AddColumns("shard", "location", "points", "log blobs", "log bytes", "snapshot bytes");
            foreach (var s in body["shards"]!.AsArray())
            {
                table.AddRow(
                    AtelierCommands.Str(s!["shard"]),
                    AtelierCommands.Str(s["location"]),
                    AtelierCommands.Str(s["points"]),
                    AtelierCommands.Str(s["log_blobs"]),
                    AtelierCommands.Bytes(s["log_bytes"]!.GetValue<long>()),
                    AtelierCommands.Bytes(s["snapshot_bytes"]!.GetValue<long>()));
            }

            AnsiConsole.Write(table);
            return 0;
        });
        command.Subcommands.Add(get);

        var delete = new Command("delete", "Delete a collection and all its bytes.");
        delete.Arguments.Add(name);
        delete.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            await api.SendAsync(new HttpRequestMessage(HttpMethod.Delete, Path(parse.GetValue(name)!)), cancel).ConfigureAwait(false);
            Console.WriteLine($"Deleted collection {parse.GetValue(name)}.");
            return 0;
        });
        command.Subcommands.Add(delete);
        command.Subcommands.Add(Upsert(client, name));
        command.Subcommands.Add(Search(client, name));
        return command;
    }

    private static Command Upsert(ClientOptions client, Argument<string> name)
    {
        var file = new Argument<FileInfo>("file") { Description = "A JSONL file: one {\"id\", \"vector\", \"payload\"} object per line." };
        var batchSize = new Option<int>("--batch-size") { Description = "Points per request; each acknowledged batch is durable.", DefaultValueFactory = _ => 512 };
        var command = new Command("upsert", "Upsert points from a JSONL file, in batches.");
        command.Arguments.Add(name);
        command.Arguments.Add(file);
        command.Options.Add(batchSize);
        command.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var source = parse.GetValue(file)!;
            if (!source.Exists)
            {
                throw new CliException($"{source.FullName} does not exist.");
            }

            int size = Math.Max(1, parse.GetValue(batchSize));
            var url = Path(parse.GetValue(name)!) + "/points";
            var batch = new JsonArray();
            var lines = new List<long>();
            long lineNumber = 0, upserted = 0, batches = 0;
            JsonNode? last = null;
            using var reader = new StreamReader(source.FullName, Encoding.UTF8);
            while (await reader.ReadLineAsync(cancel).ConfigureAwait(false) is { } line)
            {
                lineNumber++;
                if (string.IsNullOrWhiteSpace(line))
                {
                    continue;
                }

                JsonNode? point;
                try
                {
                    point = JsonNode.Parse(line);
                }
                catch (JsonException e)
                {
                    throw new CliException($"{source.Name} line {lineNumber}: not valid JSON ({e.Message.Split('.')[0]}). {upserted} points were upserted before it.");
                }

                if (point is not JsonObject)
                {
                    throw new CliException($"{source.Name} line {lineNumber}: must be a JSON object with id, vector and payload. {upserted} points were upserted before it.");
                }

                batch.Add(point);
                lines.Add(lineNumber);
                if (batch.Count == size)
                {
                    (last, upserted) = await SendBatchAsync(api, url, batch, lines, source.Name, upserted, cancel).ConfigureAwait(false);
                    batches++;
                    batch = [];
                    lines.Clear();
                }
            }

            if (batch.Count > 0)
            {
                (last, upserted) = await SendBatchAsync(api, url, batch, lines, source.Name, upserted, cancel).ConfigureAwait(false);
                batches++;
            }

            Console.WriteLine($"Upserted {upserted} points into {parse.GetValue(name)} in {batches} batch(es); the collection holds {AtelierCommands.Str(last?["points_count"])} points.");
            return 0;
        });
        return command;
    }

    private static async Task<(JsonNode Response, long Upserted)> SendBatchAsync(ApiClient api, string url, JsonArray batch, List<long> lines, string fileName, long upserted, CancellationToken cancel)
    {
        using var request = Json(HttpMethod.Put, url, new JsonObject { ["points"] = batch });
        using var response = await api.Http.SendAsync(request, cancel).ConfigureAwait(false);
        var text = await response.Content.ReadAsStringAsync(cancel).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            // The server names points by their index in the batch; the user knows them by line.
            var message = PointIndex().Replace(ApiClient.Describe(response, text), m =>
            {
                int i = int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
                var rest = m.Groups[2].Value.TrimStart('.');
                return i < lines.Count ? $"{fileName} line {lines[i]}{(rest.Length > 0 ? " " + rest : "")}" : m.Value;
            });
            throw new CliException($"{message}\n{upserted} points were upserted before this batch; the batch itself wrote nothing.");
        }

        var body = JsonNode.Parse(text)!;
        batch.Clear();
        return (body, upserted + body["upserted"]!.GetValue<long>());
    }

    private static Command Search(ClientOptions client, Argument<string> name)
    {
        var vector = new Option<string>("--vector") { Description = "The query: comma-separated numbers, or @file holding a JSON array.", Required = true };
        var limit = new Option<int>("--limit", "-k") { Description = "How many results.", DefaultValueFactory = _ => 10 };
        var filter = new Option<string?>("--filter") { Description = "A payload filter as JSON: {\"must\": [{\"key\": ..., \"match\": {\"value\": ...}}], \"must_not\": [...]}." };
        var ef = new Option<int?>("--ef") { Description = "Candidate list size (higher: better recall, slower)." };
        var command = new Command("search", "The nearest points to a vector, with an optional payload filter.");
        command.Arguments.Add(name);
        command.Options.Add(vector);
        command.Options.Add(limit);
        command.Options.Add(filter);
        command.Options.Add(ef);
        command.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var body = new JsonObject
            {
                ["vector"] = ParseVector(parse.GetValue(vector)!),
                ["limit"] = parse.GetValue(limit),
            };
            if (parse.GetValue(filter) is { } f)
            {
                try
                {
                    body["filter"] = JsonNode.Parse(f);
                }
                catch (JsonException e)
                {
                    throw new CliException($"--filter is not valid JSON: {e.Message}");
                }
            }

            if (parse.GetValue(ef) is { } candidates)
            {
                body["ef"] = candidates;
            }

            var result = await api.SendAsync(Json(HttpMethod.Post, Path(parse.GetValue(name)!) + "/points/search", body), cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(result);
            }

            var table = new Table().AddColumns("id", "score", "payload");
            foreach (var hit in result["data"]!.AsArray())
            {
                table.AddRow(
                    AtelierCommands.Str(hit!["id"]),
                    hit["score"]!.GetValue<double>().ToString("0.0000", CultureInfo.InvariantCulture),
                    Markup.Escape(AtelierCommands.Str(hit["payload"])));
            }

            AnsiConsole.Write(table);
            return 0;
        });
        return command;
    }

    private static JsonNode ParseVector(string text)
    {
        if (text.StartsWith('@'))
        {
            var path = text[1..];
            try
            {
                return JsonNode.Parse(File.ReadAllText(path)) as JsonArray ?? throw new CliException($"{path} must hold a JSON array of numbers.");
            }
            catch (Exception e) when (e is JsonException or IOException)
            {
                throw new CliException($"Cannot read the query vector from {path}: {e.Message}");
            }
        }

        var values = new JsonArray();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (!double.TryParse(part, NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
            {
                throw new CliException($"--vector: '{part}' is not a number.");
            }

            values.Add(value);
        }

        return values;
    }

    /// <summary>The storage column: <c>int8</c>, or <c>int8 + PQ96</c> when the graph is walked on product-quantisation codes.</summary>
    private static string Storage(JsonNode config) =>
        config["product_quantization"] is { } pq && pq.GetValue<int>() > 0 ? $"{config["storage"]} + PQ{pq.GetValue<int>()}" : AtelierCommands.Str(config["storage"]);

    private static string Path(string name) => "/api/v1/collections/" + Uri.EscapeDataString(name);

    private static HttpRequestMessage Json(HttpMethod method, string url, JsonNode body) =>
        new(method, url) { Content = new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json") };

    [GeneratedRegex(@"points\[(\d+)\]((?:\.[A-Za-z0-9_]+|\[\d+\])*)")]
    private static partial Regex PointIndex();
}
