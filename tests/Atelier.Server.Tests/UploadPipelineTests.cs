using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Atelier.Server.Tests;

/// <summary>
/// The upload pipeline over real HTTP with files of several receive chunks: the next chunk is
/// received while the last one is hashed and written, and lines are validated beside it, in
/// either part order. The stored bytes and their SHA-256 must not depend on any of that.
/// </summary>
public sealed class UploadPipelineTests
{
    [Theory]
    [InlineData(true, "fine-tune")]
    [InlineData(false, "fine-tune")]
    [InlineData(true, "batch")]
    [InlineData(false, "batch")]
    public async Task Upload_OfSeveralChunks_InEitherPartOrder_StoresTheExactBytesAndTheirHash(bool fileFirst, string purpose)
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        var content = purpose == "batch" ? BatchLines(40_000) : ChatLines(30_000);
        Assert.True(content.Length > 3 << 20, "the file must span several receive chunks");

        using var response = await client.PostAsync("/v1/files", Form(content, "big.jsonl", purpose, fileFirst));
        var body = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, body);
        var file = JsonDocument.Parse(body).RootElement;
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(content)), file.GetProperty("signature").GetString());
        Assert.Equal(content.Length, file.GetProperty("bytes").GetInt64());
        Assert.Equal(purpose == "batch" ? 40_000 : 30_000, file.GetProperty("num_lines").GetInt64());
        Assert.Equal(purpose == "batch" ? "batch_request" : "instruct", file.GetProperty("sample_type").GetString());
        Assert.Equal(content, await client.GetByteArrayAsync($"/v1/files/{file.GetProperty("id").GetString()}/content"));
    }

    [Fact]
    public async Task Upload_FileFirstWithABadLineLateInABigFile_NamesItsFileAndLineAndStoresNothing()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();

        // The purpose arrives after the file, so the bad line is judged before the rule set is known.
        var good = ChatLines(30_000);
        var bad = Encoding.UTF8.GetBytes("{\"messages\":[{\"role\":\"user\",\"content\":\"a question with no answer\"}]}\n");
        var content = good.Concat(bad).Concat(ChatLines(10)).ToArray();

        using var response = await client.PostAsync("/v1/files", Form(content, "late.jsonl", "fine-tune", fileFirst: true));
        var body = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.UnprocessableEntity, response.StatusCode);
        Assert.Contains("late.jsonl:30001", body, StringComparison.Ordinal);
        FilesApiTests.AssertNoBlobs(server);
        Assert.Equal(0, JsonDocument.Parse(await client.GetStringAsync("/v1/files")).RootElement.GetProperty("total").GetInt32());
    }

    [Fact]
    public async Task Upload_AbortedByTheClientMidBody_LeavesNothingAndTheServerGoesOn()
    {
        await using var server = await TestServer.StartAsync();
        using var client = server.Client();
        var temp = Path.Combine(server.DataDirectory, "blobs", "local", "tmp");

        var file = new StreamContent(new StallingStream(bytesBeforeStall: 8 << 20), 1 << 16);
        file.Headers.ContentType = new MediaTypeHeaderValue("application/jsonl");
        using var form = new MultipartFormDataContent { { file, "file", "cut.jsonl" }, { new StringContent("fine-tune"), "purpose" } };
        using var abort = new CancellationTokenSource();
        var upload = client.PostAsync("/v1/files", form, abort.Token);

        // Wait until the server has written part of the body to a pending blob, then walk away.
        var deadline = Stopwatch.StartNew();
        while (!Directory.Exists(temp) || !Directory.EnumerateFiles(temp).Any(f => new FileInfo(f).Length > (1 << 20)))
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(60), "the server never started writing the upload");
            await Task.Delay(50);
        }

        await abort.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => upload);

        // The server notices the aborted connection on its own time; wait for the pending blob to go.
        deadline.Restart();
        while (Directory.EnumerateFiles(Path.Combine(server.DataDirectory, "blobs"), "*", SearchOption.AllDirectories).Any())
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(60), "the aborted upload's pending blob was never removed");
            await Task.Delay(50);
        }

        Assert.Equal(0, JsonDocument.Parse(await client.GetStringAsync("/v1/files")).RootElement.GetProperty("total").GetInt32());
        using var after = await client.PostAsync("/v1/files", Form(ChatLines(10), "after.jsonl", "fine-tune", fileFirst: true));
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }

    private static MultipartFormDataContent Form(byte[] content, string fileName, string purpose, bool fileFirst)
    {
        var file = new ByteArrayContent(content);
        file.Headers.ContentType = new MediaTypeHeaderValue("application/jsonl");
        var form = new MultipartFormDataContent();
        if (!fileFirst)
        {
            form.Add(new StringContent(purpose), "purpose");
        }

        form.Add(file, "file", fileName);
        if (fileFirst)
        {
            form.Add(new StringContent(purpose), "purpose");
        }

        return form;
    }

    // Chat lines of varied shapes: escapes, non-ASCII text, surrogate pairs, weights, extra
    // fields; some settled by the direct scan, some by the reader, all valid.
    private static byte[] ChatLines(int count)
    {
        string[] contents = ["plain words", "caf\\u00e9 and \\\"quotes\\\"\\n", "données, 日本語, ελληνικά", "emoji \\ud83d\\ude00", "tab\\tand\\\\slash\\/"];
        var builder = new StringBuilder();
        for (var i = 0; i < count; i++)
        {
            var weight = (i % 3) switch { 0 => "", 1 => ",\"weight\":0", _ => ",\"weight\":1e0" };
            var extra = i % 7 == 0 ? ",\"meta\":{\"n\":[1,2.5,-3e2,true,null]}" : "";
            builder.Append("{\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\",\"content\":\"question ")
                .Append(i).Append(' ').Append(contents[i % contents.Length])
                .Append("\"},{\"role\":\"assistant\",\"content\":\"answer ").Append(contents[(i + 1) % contents.Length]).Append('"').Append(weight)
                .Append("}]").Append(extra).Append("}\n");
        }

        return Encoding.UTF8.GetBytes(builder.ToString());
    }

    private static byte[] BatchLines(int count)
    {
        var builder = new StringBuilder();
        for (var i = 0; i < count; i++)
        {
            builder.Append("{\"custom_id\":\"request-").Append(i)
                .Append("\",\"body\":{\"max_tokens\":64,\"messages\":[{\"role\":\"user\",\"content\":\"summarise document number ").Append(i).Append(" in one line\"}]}}\n");
        }

        return Encoding.UTF8.GetBytes(builder.ToString());
    }
}
