using System.Security.Cryptography;

namespace Atelier.Storage.Audit;

/// <summary>
/// Checks an audit log against a signed head exported earlier: the chain is intact, the event at
/// the head's sequence number has exactly the head's hash, and the head's signature is valid (under
/// a pinned public key, when one is given). Events appended after the head are fine: the head pins
/// the history up to its event, not the end of the log.
/// </summary>
public static class AuditHeadVerifier
{
    /// <summary>Verifies <paramref name="jsonLines"/> (the export format: <c>audit.jsonl</c>) against <paramref name="head"/>.</summary>
    /// <param name="head">The head exported earlier.</param>
    /// <param name="jsonLines">The log, one event per line, oldest first.</param>
    /// <param name="pinnedPublicKey">The SubjectPublicKeyInfo the head must be signed with; empty to trust the key the head carries.</param>
    public static AuditHeadVerification Verify(AuditHead head, Stream jsonLines, ReadOnlySpan<byte> pinnedPublicKey = default)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(jsonLines);
        var signatureProblem = CheckSignature(head, pinnedPublicKey);

        string? hashAtSeq = head.Seq == 0 ? AuditLog.GenesisHash : null;
        var chain = AuditLog.VerifyChain(AuditLog.ReadLines(jsonLines), e =>
        {
            if (e.Seq == head.Seq)
            {
                hashAtSeq = e.Hash;
            }
        });

        var matches = hashAtSeq is not null && string.Equals(hashAtSeq, head.Hash, StringComparison.Ordinal);
        string? matchProblem = null;
        long? firstBadSeq = chain.FirstBadSeq;
        if (!matches)
        {
            firstBadSeq ??= head.Seq;
            matchProblem = hashAtSeq is not null
                ? $"event {head.Seq} has hash {hashAtSeq}, the head says {head.Hash}: the log was rewritten at or before seq {head.Seq}"
                : chain.Valid
                    ? $"the log ends at seq {chain.Events}, before the head's seq {head.Seq}: events were removed from its end, or it was replaced"
                    : $"the chain breaks at or before the head's seq {head.Seq}, so its event cannot be checked";
        }

        var problems = new[] { signatureProblem, chain.Reason, matchProblem }.OfType<string>().ToArray();
        var reason = problems.Length == 0 ? null : string.Join("; ", problems);
        return new AuditHeadVerification(
            signatureProblem is null && chain.Valid && matches,
            chain.Events,
            chain.HeadHash,
            new AuditHeadCheck(head.Seq, head.Hash, head.KeyId, signatureProblem is null, matches),
            firstBadSeq,
            reason);
    }

    /// <summary>
    /// Checks a document signed by <see cref="AuditHeadSigner.SignDocument"/>: the key id is the
    /// public key's, the key is P-256 (and the pinned one, when given) and the signature covers
    /// <paramref name="canonicalBytes"/>. Null when valid, else why not.
    /// </summary>
    public static string? CheckDocumentSignature(ReadOnlySpan<byte> canonicalBytes, string keyId, string publicKeyBase64, string signatureBase64, ReadOnlySpan<byte> pinnedPublicKey = default)
    {
        byte[] publicKey, signature;
        try
        {
            publicKey = Convert.FromBase64String(publicKeyBase64 ?? "");
            signature = Convert.FromBase64String(signatureBase64 ?? "");
        }
        catch (FormatException)
        {
            return "the public_key or signature is not base64";
        }

        var actual = AuditHeadSigner.KeyIdOf(publicKey);
        if (!string.Equals(actual, keyId, StringComparison.Ordinal))
        {
            return $"the key_id {keyId} is not the SHA-256 of the public_key ({actual})";
        }

        if (!pinnedPublicKey.IsEmpty && !pinnedPublicKey.SequenceEqual(publicKey))
        {
            return $"the document was signed by key {actual}, not by the pinned key {AuditHeadSigner.KeyIdOf(pinnedPublicKey)}";
        }

        using var key = ECDsa.Create();
        try
        {
            key.ImportSubjectPublicKeyInfo(publicKey, out var read);
            if (read != publicKey.Length || !AuditHeadSigner.IsP256(key))
            {
                return "the public_key is not an ECDSA P-256 key";
            }
        }
        catch (CryptographicException)
        {
            return "the public_key is not an ECDSA P-256 key";
        }

        return key.VerifyData(canonicalBytes, signature, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation)
            ? null
            : "the signature does not verify: the document was altered or not signed by its key";
    }

    /// <summary>Checks the head's signature; null when valid, else why not.</summary>
    /// <param name="head">The head.</param>
    /// <param name="pinnedPublicKey">The SubjectPublicKeyInfo the head must carry; empty for any.</param>
    public static string? CheckSignature(AuditHead head, ReadOnlySpan<byte> pinnedPublicKey = default)
    {
        ArgumentNullException.ThrowIfNull(head);
        if (head.Format != AuditHead.FormatV1)
        {
            return $"the head's format '{head.Format}' is not one this version knows ({AuditHead.FormatV1})";
        }

        if (head.Seq < 0)
        {
            return $"the head's seq {head.Seq} is negative";
        }

        byte[] publicKey, signature;
        try
        {
            publicKey = Convert.FromBase64String(head.PublicKey);
            signature = Convert.FromBase64String(head.Signature);
        }
        catch (FormatException)
        {
            return "the head's public_key or signature is not base64";
        }

        var keyId = AuditHeadSigner.KeyIdOf(publicKey);
        if (!string.Equals(keyId, head.KeyId, StringComparison.Ordinal))
        {
            return $"the head's key_id {head.KeyId} is not the SHA-256 of its public_key ({keyId})";
        }

        if (!pinnedPublicKey.IsEmpty && !pinnedPublicKey.SequenceEqual(publicKey))
        {
            return $"the head was signed by key {keyId}, not by the pinned key {AuditHeadSigner.KeyIdOf(pinnedPublicKey)}";
        }

        using var key = ECDsa.Create();
        try
        {
            key.ImportSubjectPublicKeyInfo(publicKey, out var read);
            if (read != publicKey.Length || !AuditHeadSigner.IsP256(key))
            {
                return "the head's public_key is not an ECDSA P-256 key";
            }
        }
        catch (CryptographicException)
        {
            return "the head's public_key is not an ECDSA P-256 key";
        }

        return key.VerifyData(head.SignedBytes(), signature, HashAlgorithmName.SHA256, DSASignatureFormat.IeeeP1363FixedFieldConcatenation)
            ? null
            : "the head's signature does not verify: the head was altered or not signed by its key";
    }
}

/// <summary>The result of checking a log against a signed head.</summary>
/// <param name="Valid">True when the chain is intact, the head's event has the head's hash and the signature is valid.</param>
/// <param name="Events">How many events of the chain checked out.</param>
/// <param name="HeadHash">The hash of the last event that checked out.</param>
/// <param name="Against">What was checked of the head.</param>
/// <param name="FirstBadSeq">The first event that does not check out, when invalid: where the chain breaks, else the head's seq.</param>
/// <param name="Reason">Why, when invalid.</param>
public sealed record AuditHeadVerification(bool Valid, long Events, string HeadHash, AuditHeadCheck Against, long? FirstBadSeq, string? Reason);

/// <summary>The head a log was checked against.</summary>
/// <param name="Seq">The head's sequence number.</param>
/// <param name="Hash">The hash the head names.</param>
/// <param name="KeyId">The key the head says signed it.</param>
/// <param name="SignatureValid">The signature verifies (under the pinned key, when one was given).</param>
/// <param name="Matches">The log's event at <paramref name="Seq"/> has exactly <paramref name="Hash"/>.</param>
public sealed record AuditHeadCheck(long Seq, string Hash, string KeyId, bool SignatureValid, bool Matches);
