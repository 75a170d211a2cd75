using System.Text;
using System.Text.Json.Nodes;
using Atelier.Storage.Audit;

namespace Atelier.Training.Erasure;

/// <summary>
/// The erasure report a data protection officer keeps: what was erased (ids and the content's hash,
/// never the content), the plan, what became of each artifact, and each location's answer that the
/// bytes are absent, signed with the audit heads' key (<see cref="AuditHeadSigner"/>, decision 0004) so
/// that anyone holding the public key can check it was not altered.
/// </summary>
public static class ErasureReport
{
    /// <summary>The format of the signed bytes: the prefix keeps a report from being taken for a head or anything else the key signs.</summary>
    public const string Format = "atelier-erasure-report-v1";

    /// <summary>
    /// Signs <paramref name="body"/>: the signature covers <c>atelier-erasure-report-v1\n</c> followed by
    /// the body's compact JSON (without <c>signature</c>), and is added as <c>signature</c>
    /// (<c>format</c>, <c>key_id</c>, <c>public_key</c>, <c>signature</c>).
    /// </summary>
    public static JsonObject Sign(JsonObject body, AuditHeadSigner signer)
    {
        ArgumentNullException.ThrowIfNull(body);
        ArgumentNullException.ThrowIfNull(signer);

        // Parsed back from its own text first, so the report signed is exactly the one a verifier
        // re-reads (numbers and strings as written, not as the CLR values were).
        var report = JsonNode.Parse(body.ToJsonString())!.AsObject();
        report.Remove("signature");
        var signature = signer.SignDocument(SignedBytes(report));
        report["signature"] = new JsonObject
        {
            ["format"] = Format,
            ["key_id"] = signer.KeyId,
            ["public_key"] = signer.PublicKeyBase64,
            ["signature"] = signature,
        };
        return report;
    }

    /// <summary>Checks a report's signature; null when valid, else why not.</summary>
    /// <param name="report">The report as stored or exported.</param>
    /// <param name="pinnedPublicKey">The SubjectPublicKeyInfo it must be signed with; empty to trust the key it carries.</param>
    public static string? Verify(JsonObject report, ReadOnlySpan<byte> pinnedPublicKey = default)
    {
        ArgumentNullException.ThrowIfNull(report);
        if (report["signature"] is not JsonObject signature)
        {
            return "the report has no signature";
        }

        if (signature["format"]?.GetValueKind() != System.Text.Json.JsonValueKind.String || (string?)signature["format"] != Format)
        {
            return $"the report's format is not {Format}";
        }

        string? Text(string name) => signature[name]?.GetValueKind() == System.Text.Json.JsonValueKind.String ? (string?)signature[name] : null;
        var unsigned = JsonNode.Parse(report.ToJsonString())!.AsObject();
        unsigned.Remove("signature");
        return AuditHeadVerifier.CheckDocumentSignature(SignedBytes(unsigned), Text("key_id") ?? "", Text("public_key") ?? "", Text("signature") ?? "", pinnedPublicKey);
    }

    private static byte[] SignedBytes(JsonObject unsigned) => Encoding.UTF8.GetBytes(Format + "\n" + unsigned.ToJsonString());
}
