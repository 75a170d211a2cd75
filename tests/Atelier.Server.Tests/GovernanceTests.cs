using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Xunit.Abstractions;

namespace Atelier.Server.Tests;

/// <summary>
/// Issue 11's governance probes against a real server: roles that never act outside their
/// workspace, policies a member cannot loosen, one workspace id in the audit trail, and every
/// refusal audited.
/// </summary>
public sealed class GovernanceTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Admins_ManageOnlyTheirOwnWorkspace_AndEveryRefusalIsAudited()
    {
        await using var server = await TestServer.StartAsync();
        var adminA = await server.CreateKeyAsync("team-a", "admin");
        var memberA = await server.CreateKeyAsync("team-a");
        var adminB = await server.CreateKeyAsync("team-b", "admin");
        using var a = server.Client(adminA);
        using var b = server.Client(adminB);
        using var member = server.Client(memberA);
        using var op = server.Client();

        // An admin creates keys in its own workspace only, and never an operator key.
        await ExpectAsync(a, "POST", "/api/v1/keys", new { name = "x", workspace = "team-b", role = "admin" }, HttpStatusCode.Forbidden, "own workspace");
        await ExpectAsync(a, "POST", "/api/v1/keys", new { name = "x", role = "operator" }, HttpStatusCode.Forbidden, "operator");
        var own = await ExpectAsync(a, "POST", "/api/v1/keys", new { name = "x", role = "member" }, HttpStatusCode.Created, "team-a");
        Assert.Equal("team-a", own["workspace"]!.GetValue<string>());

        // It lists its own workspace's keys only; the operator lists all.
        var listedByA = await ExpectAsync(a, "GET", "/api/v1/keys", null, HttpStatusCode.OK, "team-a");
        Assert.All(listedByA["data"]!.AsArray(), k => Assert.Equal("team-a", k!["workspace"]!.GetValue<string>()));
        var listedByOperator = await ExpectAsync(op, "GET", "/api/v1/keys", null, HttpStatusCode.OK, "team-b");
        var bKeyId = listedByOperator["data"]!.AsArray().First(k => k!["workspace"]!.GetValue<string>() == "team-b")!["id"]!.GetValue<string>();
        var operatorKeyId = listedByOperator["data"]!.AsArray().Single(k => k!["role"]!.GetValue<string>() == "operator")!["id"]!.GetValue<string>();

        // Another workspace's key is as absent as one that never existed; B's key still works.
        await ExpectAsync(a, "DELETE", $"/api/v1/keys/{bKeyId}", null, HttpStatusCode.NotFound, "api key");
        await ExpectAsync(a, "DELETE", $"/api/v1/keys/{operatorKeyId}", null, HttpStatusCode.NotFound, "api key");
        await ExpectAsync(b, "GET", "/v1/files", null, HttpStatusCode.OK, "list");

        // Members manage no keys; admins manage no platform resources.
        await ExpectAsync(member, "POST", "/api/v1/keys", new { name = "x" }, HttpStatusCode.Forbidden, "admin key");
        await ExpectAsync(member, "GET", "/api/v1/keys", null, HttpStatusCode.Forbidden, "admin key");
        foreach (var caller in new[] { a, member })
        {
            await ExpectAsync(caller, "POST", "/api/v1/models/import", new { path = "/tmp" }, HttpStatusCode.Forbidden, "operator");
            await ExpectAsync(caller, "DELETE", "/api/v1/models/some-base-model", null, HttpStatusCode.Forbidden, "operator");
            await ExpectAsync(caller, "POST", "/api/v1/workspaces", new { name = "team-c" }, HttpStatusCode.Forbidden, "operator");
            await ExpectAsync(caller, "PUT", "/api/v1/workspaces/team-a/policies", new { default_policy = "default" }, HttpStatusCode.Forbidden, "operator");
            await ExpectAsync(caller, "POST", "/api/v1/policies", new { name = "loose", allowed_jurisdictions = new[] { "*" } }, HttpStatusCode.Forbidden, "operator");
            await ExpectAsync(caller, "GET", "/api/v1/audit/export", null, HttpStatusCode.Forbidden, "operator");
            await ExpectAsync(caller, "GET", "/api/v1/audit/verify", null, HttpStatusCode.Forbidden, "operator");
        }

        // Workspaces: each sees its own; the operator every one.
        var seenByA = await ExpectAsync(a, "GET", "/api/v1/workspaces", null, HttpStatusCode.OK, "team-a");
        Assert.Equal(["team-a"], seenByA["data"]!.AsArray().Select(w => w!["name"]!.GetValue<string>()));
        await ExpectAsync(a, "GET", "/api/v1/workspaces/team-b", null, HttpStatusCode.NotFound, "workspace");
        var seenByOperator = await ExpectAsync(op, "GET", "/api/v1/workspaces", null, HttpStatusCode.OK, "team-b");
        Assert.Equal(["default", "team-a", "team-b"], seenByOperator["data"]!.AsArray().Select(w => w!["name"]!.GetValue<string>()));

        // The last operator key cannot be revoked: nobody could govern the installation.
        await ExpectAsync(op, "DELETE", $"/api/v1/keys/{operatorKeyId}", null, HttpStatusCode.Conflict, "last live operator key");

        // Every refusal of a workspace's caller is in that workspace's audit view, under its id;
        // none of B's events are.
        var workspaceA = seenByA["data"]![0]!["id"]!.GetValue<string>();
        var auditA = (await ExpectAsync(a, "GET", "/api/v1/audit?limit=1000", null, HttpStatusCode.OK, "data"))["data"]!.AsArray();
        Assert.All(auditA, e => Assert.Equal(workspaceA, e!["workspace"]!.GetValue<string>()));
        var refusals = auditA.Where(e => e!["type"]!.GetValue<string>() == "access_refused").ToList();
        output.WriteLine($"{refusals.Count} refusals audited in team-a");
        Assert.Equal(2 + 2 + (2 * 7), refusals.Count);
        Assert.Contains(refusals, e => e!["detail"]!.GetValue<string>().StartsWith("POST /api/v1/keys", StringComparison.Ordinal));
        Assert.Contains(auditA, e => e!["type"]!.GetValue<string>() == "key_created");
    }

    [Fact]
    public async Task NoRole_ReadsOrDeletesAnotherWorkspacesData_NotEvenTheOperator()
    {
        await using var server = await TestServer.StartAsync();
        using var owner = server.Client(await server.CreateKeyAsync("owner"));
        var fileId = await ApiRequests.UploadAsync(owner, "train.jsonl", [ApiRequests.Chat("What is two plus two, please?", "Two plus two is four."), ApiRequests.Chat("What is three plus three?", "Three plus three is six.")]);
        await ExpectAsync(owner, "POST", "/api/v1/collections", new { name = "docs", dimension = 4, metric = "cosine" }, HttpStatusCode.Created, "docs");
        await ExpectAsync(owner, "POST", "/api/v1/features/views", new { name = "quality", entity_key = "example_id", timestamp_field = "event_time", fields = new[] { new { name = "score", type = "float64" } } }, HttpStatusCode.Created, "quality");
        var dataset = await ExpectAsync(owner, "POST", "/api/v1/datasets", new { training_files = new[] { fileId }, seq_len = 64 }, HttpStatusCode.Accepted, "id");
        var datasetId = dataset["id"]!.GetValue<string>();
        await ApiRequests.WaitForDatasetAsync(owner, datasetId);

        var strangers = new Dictionary<string, HttpClient>
        {
            ["operator"] = server.Client(),
            ["admin of another workspace"] = server.Client(await server.CreateKeyAsync("other", "admin")),
            ["member of another workspace"] = server.Client(await server.CreateKeyAsync("other")),
        };
        var probes = new (string Method, string Path, object? Body)[]
        {
            ("GET", $"/v1/files/{fileId}", null),
            ("GET", $"/v1/files/{fileId}/content", null),
            ("GET", $"/v1/files/{fileId}/url", null),
            ("DELETE", $"/v1/files/{fileId}", null),
            ("GET", $"/api/v1/datasets/{datasetId}", null),
            ("DELETE", $"/api/v1/datasets/{datasetId}", null),
            ("GET", "/api/v1/collections/docs", null),
            ("PUT", "/api/v1/collections/docs/points", new { points = new[] { new { id = 1, vector = new[] { 1f, 0f, 0f, 0f } } } }),
            ("POST", "/api/v1/collections/docs/points/search", new { vector = new[] { 1f, 0f, 0f, 0f }, limit = 1 }),
            ("DELETE", "/api/v1/collections/docs", null),
            ("GET", "/api/v1/features/views/quality", null),
            ("POST", "/api/v1/features/views/quality/rows", new { rows = new[] { new { example_id = "a", event_time = "2026-01-01T00:00:00Z", score = 1.0 } } }),
        };

        var failures = new List<string>();
        foreach (var (who, client) in strangers)
        {
            foreach (var (method, path, body) in probes)
            {
                var (status, text) = await SendAsync(client, method, path, body);
                if (status != HttpStatusCode.NotFound)
                {
                    failures.Add($"{who}: {method} {path} -> {(int)status} {SecurityProbe.Truncate(text)}");
                }
            }

            var files = await SendAsync(client, "GET", "/v1/files", null);
            if (files.Body.Contains(fileId, StringComparison.Ordinal))
            {
                failures.Add($"{who}: /v1/files lists the owner's file");
            }

            client.Dispose();
        }

        output.WriteLine($"{strangers.Count * probes.Length} cross-workspace probes");
        Assert.True(failures.Count == 0, string.Join("\n", failures));

        // The owner still has everything.
        await ExpectAsync(owner, "GET", $"/v1/files/{fileId}", null, HttpStatusCode.OK, fileId);
        await ExpectAsync(owner, "GET", "/api/v1/collections/docs", null, HttpStatusCode.OK, "docs");
    }

    [Fact]
    public async Task Members_CannotChooseALooserPolicy_TheOperatorGovernsWhichAreAllowed()
    {
        await using var server = await TestServer.StartAsync();
        using var op = server.Client();
        using var member = server.Client(await server.CreateKeyAsync("team-a"));
        using var admin = server.Client(await server.CreateKeyAsync("team-a", "admin"));

        // The operator defines policies; a name never changes meaning.
        await ExpectAsync(op, "POST", "/api/v1/policies", new { name = "anywhere", allowed_jurisdictions = new[] { "*" } }, HttpStatusCode.Created, "anywhere");
        await ExpectAsync(op, "POST", "/api/v1/policies", new { name = "fr-onprem", allowed_jurisdictions = new[] { "FR" }, require_on_prem = true }, HttpStatusCode.Created, "fr-onprem");
        await ExpectAsync(op, "POST", "/api/v1/policies", new { name = "anywhere", allowed_jurisdictions = new[] { "EU" } }, HttpStatusCode.Conflict, "never changes");
        await ExpectAsync(op, "POST", "/api/v1/policies", new { name = "bad name!", allowed_jurisdictions = new[] { "eu" } }, HttpStatusCode.UnprocessableEntity, "allowed_jurisdictions[0]");

        // A member cannot pick a policy looser than its workspace allows, with or without admin rights.
        foreach (var caller in new[] { member, admin })
        {
            await ExpectAsync(caller, "POST", "/api/v1/collections", new { name = "loose", dimension = 4, metric = "cosine", policy = "anywhere" }, HttpStatusCode.Forbidden, "looser than this workspace allows");
            await ExpectAsync(caller, "POST", "/api/v1/features/views", new { name = "loose", entity_key = "k", timestamp_field = "t", fields = new[] { new { name = "s", type = "float64" } }, policy = "anywhere" }, HttpStatusCode.Forbidden, "looser than this workspace allows");
        }

        // A stricter policy is always allowed (France is in the EU, and on-prem is stricter).
        var strict = await ExpectAsync(member, "POST", "/api/v1/collections", new { name = "strict", dimension = 4, metric = "cosine", policy = "fr-onprem" }, HttpStatusCode.Created, "strict");
        Assert.Equal("fr-onprem", strict["policy"]!.GetValue<string>());
        var listed = await ExpectAsync(member, "GET", "/api/v1/policies", null, HttpStatusCode.OK, "anywhere");
        Assert.False(listed["data"]!.AsArray().Single(p => p!["name"]!.GetValue<string>() == "anywhere")!["usable_here"]!.GetValue<bool>());
        Assert.True(listed["data"]!.AsArray().Single(p => p!["name"]!.GetValue<string>() == "fr-onprem")!["usable_here"]!.GetValue<bool>());

        // The operator allows the looser policy for team-a and makes the strict one its default:
        // the member may now choose it, and its uploads take the new default.
        var governed = await ExpectAsync(op, "PUT", "/api/v1/workspaces/team-a/policies", new { default_policy = "fr-onprem", allowed_policies = new[] { "default", "anywhere" } }, HttpStatusCode.OK, "fr-onprem");
        Assert.True(governed["governed"]!.GetValue<bool>());
        await ExpectAsync(member, "POST", "/api/v1/collections", new { name = "loose", dimension = 4, metric = "cosine", policy = "anywhere" }, HttpStatusCode.Created, "anywhere");
        var fileId = await ApiRequests.UploadAsync(member, "train.jsonl", [ApiRequests.Chat("What is two plus two, please?", "Two plus two is four.")]);
        var placement = server.Audit.Tail(50).Last(e => e.Type == "placement" && e.ArtifactId == fileId);
        Assert.Equal("fr-onprem", placement.Policy);

        // The member sees its own workspace's events, whichever part of the server wrote them
        // (files, collections, keys, refusals), all under the workspace's id, and nobody else's.
        var mine = (await ExpectAsync(member, "GET", "/api/v1/audit?limit=1000", null, HttpStatusCode.OK, "data"))["data"]!.AsArray();
        var types = mine.Select(e => e!["type"]!.GetValue<string>()).ToHashSet();
        Assert.Contains("placement", types);
        Assert.Contains("key_created", types);
        Assert.Contains("access_refused", types);
        Assert.Contains(mine, e => e!["artifact_kind"]?.GetValue<string>() == "collection");
        Assert.Contains(mine, e => e!["artifact_id"]?.GetValue<string>() == fileId);
        Assert.Single(mine.Select(e => e!["workspace"]!.GetValue<string>()).Distinct());
        Assert.DoesNotContain(mine, e => e!["type"]!.GetValue<string>() == "policy_created");

        // Another workspace is untouched by team-a's governance.
        using var other = server.Client(await server.CreateKeyAsync("team-b"));
        await ExpectAsync(other, "POST", "/api/v1/collections", new { name = "loose", dimension = 4, metric = "cosine", policy = "anywhere" }, HttpStatusCode.Forbidden, "looser");

        // Unknown names are named; the changes and refusals are audited.
        await ExpectAsync(op, "PUT", "/api/v1/workspaces/team-a/policies", new { allowed_policies = new[] { "nope" } }, HttpStatusCode.BadRequest, "nope");
        var events = server.Audit.Tail(200);
        Assert.Equal(2, events.Count(e => e.Type == "policy_created"));
        Assert.Contains(events, e => e.Type == "workspace_policies_set" && e.Detail!.StartsWith("default fr-onprem; allowed [default, anywhere, fr-onprem] (was default default; allowed [default])", StringComparison.Ordinal));
        Assert.Equal(5, events.Count(e => e.Type == "access_refused" && e.Detail!.Contains("looser", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task WorkspaceNames_ThatCollideWithIdsOrReservedWords_AreRefused()
    {
        await using var server = await TestServer.StartAsync();
        using var op = server.Client();
        var memberKey = await server.CreateKeyAsync("team-a");
        var teamA = (await ExpectAsync(server.Client(memberKey), "GET", "/api/v1/workspaces", null, HttpStatusCode.OK, "team-a"))["data"]![0]!["id"]!.GetValue<string>();
        Assert.StartsWith("ws_", teamA, StringComparison.Ordinal);

        foreach (var name in new[] { teamA, "ws_anything", "system", "SYSTEM", "unknown", "operator" })
        {
            await ExpectAsync(op, "POST", "/api/v1/workspaces", new { name }, HttpStatusCode.BadRequest, "workspace name");
            await ExpectAsync(op, "POST", "/api/v1/keys", new { name = "k", workspace = name }, HttpStatusCode.BadRequest, "workspace name");
        }

        await ExpectAsync(op, "POST", "/api/v1/workspaces", new { name = "team-a" }, HttpStatusCode.Conflict, "exists");
        var created = await ExpectAsync(op, "POST", "/api/v1/workspaces", new { name = "team-c", default_policy = "checkpoints" }, HttpStatusCode.Created, "team-c");
        Assert.Equal("checkpoints", created["default_policy"]!.GetValue<string>());
    }

    private static async Task<(HttpStatusCode Status, string Body)> SendAsync(HttpClient client, string method, string path, object? body)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), path) { Content = body is null ? null : JsonContent.Create(body) };
        using var response = await client.SendAsync(request);
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    private static async Task<JsonNode> ExpectAsync(HttpClient client, string method, string path, object? body, HttpStatusCode expected, string mustContain)
    {
        var (status, text) = await SendAsync(client, method, path, body);
        Assert.True(status == expected, $"{method} {path}: expected {(int)expected}, got {(int)status}: {text}");
        Assert.Contains(mustContain, text, StringComparison.OrdinalIgnoreCase);
        return JsonNode.Parse(text)!;
    }
}
