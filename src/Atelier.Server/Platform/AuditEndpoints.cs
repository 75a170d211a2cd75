using Atelier.Cluster;
using Atelier.Cluster.Jobs;
using Atelier.Core;
using Atelier.Server.Auth;
using Atelier.Server.Errors;
using Atelier.Server.Hosting;
using Atelier.Storage.Audit;

namespace Atelier.Server.Platform;

/// <summary>A page of audit events.</summary>
/// <param name="Data">The events, oldest first.</param>
/// <param name="LastSeq">The log's last sequence number.</param>
public sealed record AuditEventPage(IReadOnlyList<AuditEvent> Data, long LastSeq);

/// <summary>What <c>POST /api/v1/audit/verify</c> answers: the chain's check, and with a head, what it was checked against.</summary>
/// <param name="Valid">Whether it verified.</param>
/// <param name="Events">Events checked.</param>
/// <param name="FirstBadSeq">The first event that does not verify.</param>
/// <param name="Reason">Why it does not.</param>
/// <param name="HeadHash">The hash of the last event.</param>
/// <param name="Against">The head it was checked against (only with a head).</param>
public sealed record AuditCheckObject(
    bool Valid, long Events, long? FirstBadSeq, string? Reason, string HeadHash,
    [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] AuditHeadCheck? Against = null);

/// <summary>What <c>GET /api/v1/audit/verify</c> answers: this node's chain and, in a cluster, every node's.</summary>
/// <param name="Valid">This node's chain verifies and so does every node's that answered.</param>
/// <param name="Events">Events of this node's chain checked.</param>
/// <param name="FirstBadSeq">The first event of this node's chain that does not verify.</param>
/// <param name="Reason">Why it does not.</param>
/// <param name="HeadHash">The hash of this node's last event.</param>
/// <param name="Nodes">In a cluster: each node's check, this one's included; a node that is down is listed with <c>reachable: false</c>.</param>
public sealed record AuditVerifyObject(
    bool Valid, long Events, long? FirstBadSeq, string? Reason, string HeadHash,
    [property: System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<NodeAuditCheck>? Nodes = null);

/// <summary><c>/api/v1/audit</c>: reading, verifying and exporting the hash-chained audit log.</summary>
public static class AuditEndpoints
{
    /// <summary>The most audit events one request returns.</summary>
    public const int MaxAuditPage = 10_000;

    /// <summary>Maps <c>/audit</c> under <paramref name="api"/>.</summary>
    public static void MapAudit(this IEndpointRouteBuilder api)
    {
        var audit = api.MapGroup("/audit").WithTags("Audit");
        audit.MapGet("", (HttpContext context, AuditLog log) =>
        {
            var caller = ApiKeyAuthentication.Caller(context);
            // Events name workspaces by id, so a workspace named like another's id sees only its own.
            Func<AuditEvent, bool>? filter = caller.Key.IsOperator ? null : e => e.Workspace == caller.WorkspaceId;
            var after = QueryParameters.Integer(context.Request, "after", 0, 0, long.MaxValue);
            var limit = QueryParameters.OptionalInteger(context.Request, "limit", 1, MaxAuditPage);
            var tail = QueryParameters.OptionalInteger(context.Request, "tail", 1, MaxAuditPage);
            var n = (int)(limit ?? tail ?? 100);
            var events = tail is not null ? log.Tail(n, filter) : log.Read(after, n, filter);
            return Results.Json(new { data = events, last_seq = log.LastSeq }, AtelierJson.Options);
        }).WithSummary("Audit events: the operator sees every workspace's, everyone else their own workspace's.").WithName("listAuditEvents").Produces<AuditEventPage>().Query("after", typeof(long), "Events after this sequence number (0).").Query("limit", typeof(int), "At most this many (100, up to 10000).").Query("tail", typeof(int), "The last this many instead.");

        audit.MapGet("/verify", async (HttpContext context, AuditLog log, ClusterNodes cluster) =>
        {
            ApiKeyAuthentication.Operator(context);
            var own = log.Verify();
            if (cluster.Embedded)
            {
                return Results.Json(new AuditVerifyObject(own.Valid, own.Events, own.FirstBadSeq, own.Reason, own.HeadHash), AtelierJson.Options);
            }

            // Each node keeps its own chain; every live node checks its own and says so. A node that
            // is down is listed as not reached: it does not make the others' chains invalid.
            var nodes = await cluster.VerifyAuditAsync().ConfigureAwait(false);
            var valid = own.Valid && nodes.All(n => n.Valid || !n.Reachable);
            return Results.Json(new AuditVerifyObject(valid, own.Events, own.FirstBadSeq, own.Reason, own.HeadHash, nodes), AtelierJson.Options);
        }).WithSummary("Check the hash chain of the whole audit log; in a cluster, every node's chain (operator).").WithName("verifyAuditLog").Produces<AuditVerifyObject>().ProducesErrors(403);

        audit.MapPost("/verify", (HttpContext context, AuditHead? head, AuditLog log) =>
        {
            ApiKeyAuthentication.Operator(context);
            return head is null
                ? Results.Json(log.Verify(), AtelierJson.Options)
                : Results.Json(log.Verify(head), AtelierJson.Options);
        }).WithSummary("Check the audit log against a head exported earlier (the body); without a body, check the hash chain alone (operator).").WithName("verifyAuditLogAgainstHead").Produces<AuditCheckObject>().ProducesErrors(403);

        audit.MapGet("/head", async (HttpContext context, AuditLog log, AuditHeadSigner signer) =>
        {
            var caller = ApiKeyAuthentication.Operator(context);
            var head = await log.ExportHeadAsync(signer, caller.Actor, caller.WorkspaceId, context.RequestAborted).ConfigureAwait(false);
            return Results.Json(head, AtelierJson.Options);
        }).WithSummary("The signed head of the audit log: keep it off this machine and verify against it later (operator).").WithName("exportAuditHead").Produces<AuditHead>().ProducesErrors(403);

        audit.MapGet("/export", async (HttpContext context, AuditLog log) =>
        {
            ApiKeyAuthentication.Operator(context);
            context.Response.ContentType = "application/jsonl";
            await log.ExportAsync(context.Response.Body, context.RequestAborted).ConfigureAwait(false);
        }).WithSummary("The raw audit log as JSON lines (operator).").WithName("exportAuditLog").ProducesBytes("application/jsonl").ProducesErrors(403);
    }
}
