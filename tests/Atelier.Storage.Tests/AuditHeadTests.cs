using Atelier.Storage.Audit;

namespace Atelier.Storage.Tests;

public sealed class AuditHeadTests
{
    private static string NewDirectory() => Atelier.Testing.TestCleanup.CreateDirectory("atelier-audit-head");

    private static async Task AppendAsync(AuditLog log, string prefix, int count)
    {
        for (var i = 0; i < count; i++)
        {
            await log.AppendAsync(new AuditEvent { Type = "placement", ArtifactId = $"{prefix}{i}", Bytes = i });
        }
    }

    // A log of `count` events in `dir` and a head of it, with the log closed again.
    private static async Task<AuditHead> WriteAndExportHeadAsync(string dir, AuditHeadSigner signer, int count)
    {
        using var log = new AuditLog(dir, TimeProvider.System);
        await AppendAsync(log, "a", count);
        return await log.ExportHeadAsync(signer, "test", "ws_test");
    }

    private static async Task<AuditHeadVerification> VerifyExportAsync(AuditLog log, AuditHead head, ReadOnlyMemory<byte> pinned = default)
    {
        using var export = new MemoryStream();
        await log.ExportAsync(export, CancellationToken.None);
        export.Position = 0;
        return AuditHeadVerifier.Verify(head, export, pinned.Span);
    }

    [Fact]
    public async Task ExportedHead_RoundTripsThroughJson_AndVerifiesAgainstTheExportedLog()
    {
        var dir = NewDirectory();
        using var signer = AuditHeadSigner.LoadOrCreate(Path.Combine(dir, AuditHeadSigner.FileName));
        using var log = new AuditLog(Path.Combine(dir, "audit"), TimeProvider.System);
        await AppendAsync(log, "a", 5);

        var head = await log.ExportHeadAsync(signer, "test", "ws_test");
        Assert.Equal(5, head.Seq);
        Assert.Equal(log.Read(4, 1)[0].Hash, head.Hash);
        Assert.Equal(signer.KeyId, head.KeyId);

        // The export is recorded as the event right after the head.
        var exported = Assert.Single(log.Read(5, 10));
        Assert.Equal("audit_head_exported", exported.Type);
        Assert.Equal(6, exported.Seq);

        var parsed = AuditHead.Parse(head.ToJson());
        Assert.Equal(head, parsed);
        var result = await VerifyExportAsync(log, parsed, signer.PublicKey.ToArray());
        Assert.True(result.Valid, result.Reason);
        Assert.True(result.Against.SignatureValid);
        Assert.True(result.Against.Matches);
        Assert.Equal(6, result.Events);
        Assert.Null(result.FirstBadSeq);
        Assert.True(log.Verify(parsed).Valid);
    }

    public static TheoryData<string> Tamperings => ["hash", "seq", "signature", "signed_at", "key_id"];

    [Theory]
    [MemberData(nameof(Tamperings))]
    public async Task TamperedHead_FailsItsSignature(string field)
    {
        var dir = NewDirectory();
        using var signer = AuditHeadSigner.CreateEphemeral();
        using var log = new AuditLog(dir, TimeProvider.System);
        await AppendAsync(log, "a", 5);
        var head = await log.ExportHeadAsync(signer, "test", "ws_test");
        var other = log.Read(3, 1)[0];

        var signature = Convert.FromBase64String(head.Signature);
        signature[^1] ^= 1;
        var tampered = field switch
        {
            // Another event's real seq or hash: the chain agrees, so only the signature can tell.
            "hash" => head with { Hash = other.Hash! },
            "seq" => head with { Seq = other.Seq, Hash = other.Hash! },
            "signature" => head with { Signature = Convert.ToBase64String(signature) },
            "signed_at" => head with { SignedAt = head.SignedAt.AddSeconds(1) },
            _ => head with { KeyId = new string('0', 64) },
        };

        var result = await VerifyExportAsync(log, tampered);
        Assert.False(result.Valid);
        Assert.False(result.Against.SignatureValid);
        Assert.NotNull(result.Reason);
        Assert.True((await VerifyExportAsync(log, head)).Valid);
    }

    [Fact]
    public async Task EventsAppendedAfterTheHead_StillVerify()
    {
        var dir = NewDirectory();
        using var signer = AuditHeadSigner.CreateEphemeral();
        using var log = new AuditLog(dir, TimeProvider.System);
        await AppendAsync(log, "a", 3);
        var head = await log.ExportHeadAsync(signer, "test", "ws_test");
        await AppendAsync(log, "b", 20);

        var result = await VerifyExportAsync(log, head);
        Assert.True(result.Valid, result.Reason);
        Assert.Equal(24, result.Events);
        Assert.Equal(3, result.Against.Seq);
    }

    [Fact]
    public async Task LogRewrittenWhole_PassesTheSelfCheck_ButFailsAgainstTheOldHead()
    {
        var dir = NewDirectory();
        using var signer = AuditHeadSigner.CreateEphemeral();
        AuditHead head;
        using (var log = new AuditLog(dir, TimeProvider.System))
        {
            await AppendAsync(log, "real", 5);
            head = await log.ExportHeadAsync(signer, "test", "ws_test");
        }

        // A fresh, self-consistent chain of other events, written by the log itself, swapped in.
        var forged = NewDirectory();
        using (var log = new AuditLog(forged, TimeProvider.System))
        {
            await AppendAsync(log, "forged", 8);
        }

        File.Move(Path.Combine(forged, "audit.jsonl"), Path.Combine(dir, "audit.jsonl"), overwrite: true);

        using (var log = new AuditLog(dir, TimeProvider.System))
        {
            var self = log.Verify();
            Assert.True(self.Valid, self.Reason);
            Assert.Equal(8, self.Events);

            var result = log.Verify(head);
            Assert.False(result.Valid);
            Assert.True(result.Against.SignatureValid);
            Assert.False(result.Against.Matches);
            Assert.Equal(5, result.FirstBadSeq);
            Assert.Contains("event 5 has hash", result.Reason, StringComparison.Ordinal);
            Assert.Equal(8, result.Events);
        }
    }

    [Fact]
    public async Task LogShorterThanTheHead_FailsAtTheHeadsSeq()
    {
        var dir = NewDirectory();
        using var signer = AuditHeadSigner.CreateEphemeral();
        var head = await WriteAndExportHeadAsync(dir, signer, 5);
        var path = Path.Combine(dir, "audit.jsonl");
        var lines = await File.ReadAllLinesAsync(path);
        await File.WriteAllLinesAsync(path, lines[..3]);

        using var truncated = new AuditLog(dir, TimeProvider.System);
        Assert.True(truncated.Verify().Valid);
        var result = truncated.Verify(head);
        Assert.False(result.Valid);
        Assert.Equal(5, result.FirstBadSeq);
        Assert.Contains("ends at seq 3", result.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task HeadSignedByAnotherKey_FailsOnlyWhenAKeyIsPinned()
    {
        var dir = NewDirectory();
        using var server = AuditHeadSigner.CreateEphemeral();
        using var stranger = AuditHeadSigner.CreateEphemeral();
        using var log = new AuditLog(dir, TimeProvider.System);
        await AppendAsync(log, "a", 4);
        var real = log.Read(3, 1)[0];
        var head = stranger.Sign(real.Seq, real.Hash!, DateTimeOffset.UnixEpoch);

        Assert.True((await VerifyExportAsync(log, head)).Valid);
        var pinned = await VerifyExportAsync(log, head, server.PublicKey.ToArray());
        Assert.False(pinned.Valid);
        Assert.False(pinned.Against.SignatureValid);
        Assert.True(pinned.Against.Matches);
        Assert.Contains("not by the pinned key", pinned.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ChainBrokenBeforeTheHead_FailsWhereItBreaks()
    {
        var dir = NewDirectory();
        using var signer = AuditHeadSigner.CreateEphemeral();
        var head = await WriteAndExportHeadAsync(dir, signer, 5);
        var path = Path.Combine(dir, "audit.jsonl");
        var lines = await File.ReadAllLinesAsync(path);
        lines[1] = lines[1].Replace("\"bytes\":1", "\"bytes\":7", StringComparison.Ordinal);
        await File.WriteAllLinesAsync(path, lines);

        using var edited = new AuditLog(dir, TimeProvider.System);
        var result = edited.Verify(head);
        Assert.False(result.Valid);
        Assert.True(result.Against.SignatureValid);
        Assert.False(result.Against.Matches);
        Assert.Equal(2, result.FirstBadSeq);
        Assert.Contains("edited", result.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void SigningKey_IsCreatedOnce_PrivateAndReloaded()
    {
        var path = Path.Combine(NewDirectory(), AuditHeadSigner.FileName);
        string keyId;
        using (var created = AuditHeadSigner.LoadOrCreate(path))
        {
            keyId = created.KeyId;
        }

        Assert.StartsWith("-----BEGIN PRIVATE KEY-----", File.ReadAllText(path), StringComparison.Ordinal);
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        }

        using var loaded = AuditHeadSigner.LoadOrCreate(path);
        Assert.Equal(keyId, loaded.KeyId);
        Assert.Empty(Directory.EnumerateFiles(Path.GetDirectoryName(path)!, "*.tmp"));
    }

    [Fact]
    public void SigningKey_ThatIsNotAKey_IsRefusedRatherThanReplaced()
    {
        var path = Path.Combine(NewDirectory(), AuditHeadSigner.FileName);
        File.WriteAllText(path, "not a key\n");
        Assert.Throws<InvalidDataException>(() => AuditHeadSigner.LoadOrCreate(path));
        Assert.Equal("not a key\n", File.ReadAllText(path));
    }
}
