using System.CommandLine;
using System.Text;
using Atelier.Core.IO;
using Atelier.Storage.Audit;

namespace Atelier.Cli;

/// <summary>
/// <c>atelier audit head</c> and <c>atelier audit verify --against</c>: exporting a signed head of
/// the audit log, and checking the log against one here, with the server's log but not its answer.
/// </summary>
internal static class AuditHeadCommands
{
    /// <summary>The exit code of a log that does not verify (as the chain self-check's).</summary>
    public const int Invalid = 3;

    public static Command Head(ClientOptions client)
    {
        var output = new Option<FileInfo?>("--output", "-o") { Description = "Write the head to this file (never overwritten); without it, it is printed." };
        var command = new Command("head", "Export the signed head of the audit log. Keep it off this machine; check the log against it later with 'audit verify --against'.");
        command.Options.Add(output);
        command.SetAction(async (parse, cancel) =>
        {
            var target = parse.GetValue(output);
            if (target is not null && File.Exists(target.FullName))
            {
                throw new CliException($"{target.FullName} exists; choose another --output.");
            }

            using var api = client.Connect(parse);
            var body = await api.GetJsonAsync("/api/v1/audit/head", cancel).ConfigureAwait(false);
            var head = Parse(Encoding.UTF8.GetBytes(body.ToJsonString()), "the server's answer");
            var json = head.ToJson();
            if (target is null)
            {
                Console.WriteLine(Encoding.UTF8.GetString(json));
                return 0;
            }

            try
            {
                AtomicFile.WriteAllBytes(target.FullName, [.. json, (byte)'\n'], overwrite: false);
            }
            catch (IOException e)
            {
                throw new CliException($"Cannot write {target.FullName}: {e.Message}");
            }

            Console.WriteLine($"Audit head seq {head.Seq}, hash {head.Hash}, signed by key {head.KeyId}, written to {target.FullName}.");
            return 0;
        });
        return command;
    }

    /// <summary>
    /// Downloads the whole log and checks it here against the head in <paramref name="headFile"/>;
    /// prints one line saying what holds or what differs, and returns the exit code.
    /// </summary>
    public static async Task<int> VerifyAgainstAsync(ApiClient api, FileInfo headFile, string? publicKey, CancellationToken cancel)
    {
        byte[] bytes;
        try
        {
            bytes = await File.ReadAllBytesAsync(headFile.FullName, cancel).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CliException($"Cannot read the audit head {headFile.FullName}: {e.Message}");
        }

        var head = Parse(bytes, headFile.FullName);
        byte[] pinned = [];
        if (publicKey is not null)
        {
            try
            {
                pinned = Convert.FromBase64String(publicKey.Trim());
            }
            catch (FormatException)
            {
                throw new CliException("--public-key is not base64 (give the public_key of a head you trust).");
            }
        }

        HttpResponseMessage response;
        try
        {
            response = await api.Http.GetAsync("/api/v1/audit/export", HttpCompletionOption.ResponseHeadersRead, cancel).ConfigureAwait(false);
        }
        catch (HttpRequestException e)
        {
            throw new CliException($"Cannot reach the Atelier server at {api.Http.BaseAddress}: {e.Message}. Is 'atelier serve' running?");
        }

        using var _ = response;
        if (!response.IsSuccessStatusCode)
        {
            throw new CliException(ApiClient.Describe(response, await response.Content.ReadAsStringAsync(cancel).ConfigureAwait(false)));
        }

        // The verdict is computed here, from the log's bytes: a server that rewrote its log could
        // as well answer "valid" to POST /api/v1/audit/verify.
        var log = await response.Content.ReadAsStreamAsync(cancel).ConfigureAwait(false);
        await using (log.ConfigureAwait(false))
        {
            var result = AuditHeadVerifier.Verify(head, log, pinned);
            if (result.Valid)
            {
                Console.WriteLine($"Audit log valid against the head of seq {head.Seq} (hash {head.Hash}, key {head.KeyId}): {result.Events} events, head hash {result.HeadHash}.");
                return 0;
            }

            Console.Error.WriteLine($"Audit log INVALID against the head of seq {head.Seq} at seq {result.FirstBadSeq}: {result.Reason} ({result.Events} events verified).");
            return Invalid;
        }
    }

    private static AuditHead Parse(byte[] json, string source)
    {
        try
        {
            return AuditHead.Parse(json);
        }
        catch (InvalidDataException e)
        {
            throw new CliException($"{source} is not an audit head: {e.Message}");
        }
    }
}
