using System.CommandLine;
using System.Net.Http.Headers;
using Atelier.Core.IO;
using Spectre.Console;

namespace Atelier.Cli;

/// <summary><c>atelier files upload|list|get|download|delete</c>, against a running server.</summary>
internal static class FilesCommands
{
    public static Command Build(ClientOptions client)
    {
        var command = new Command("files", "Files for fine-tuning, batch and OCR (Mistral's /v1/files).");
        command.Subcommands.Add(Upload(client));
        command.Subcommands.Add(List(client));
        command.Subcommands.Add(Get(client));
        command.Subcommands.Add(Download(client));
        command.Subcommands.Add(Delete(client));
        return command;
    }

    private static Command Upload(ClientOptions client)
    {
        var path = new Argument<FileInfo>("path") { Description = "The file to upload (JSONL for fine-tune and batch)." };
        var purpose = new Option<string>("--purpose") { Description = "What the file is for, which decides how it is validated (default fine-tune).", DefaultValueFactory = _ => "fine-tune" }.OneOf("fine-tune", "batch", "ocr");
        var expiry = new Option<int?>("--expiry") { Description = "Hours until the file is removed (default: never)." };
        var command = new Command("upload", "Upload a file; it is validated and stored atomically, or not at all.");
        command.Arguments.Add(path);
        command.Options.Add(purpose);
        command.Options.Add(expiry);
        command.SetAction(async (parse, cancel) =>
        {
            var file = parse.GetValue(path)!;
            if (!file.Exists)
            {
                throw new CliException($"No such file: {file.FullName}");
            }

            using var api = client.Connect(parse);
            await using var stream = file.OpenRead();
            using var content = new MultipartFormDataContent();
            var progress = new ProgressStream(stream);
            var fileContent = new StreamContent(progress, 1 << 20);
            fileContent.Headers.ContentType = new MediaTypeHeaderValue(file.Extension == ".jsonl" ? "application/jsonl" : "application/octet-stream");
            content.Add(fileContent, "file", file.Name);
            content.Add(new StringContent(parse.GetValue(purpose)!), "purpose");
            if (parse.GetValue(expiry) is { } hours)
            {
                content.Add(new StringContent(hours.ToString(System.Globalization.CultureInfo.InvariantCulture)), "expiry");
            }

            System.Text.Json.Nodes.JsonNode? body = null;
            var interactive = !Console.IsOutputRedirected && !client.WantsJson(parse);
            var send = async () => body = await api.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/v1/files") { Content = content }, cancel).ConfigureAwait(false);
            if (interactive)
            {
                await AnsiConsole.Progress()
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
                    .StartAsync(async ctx =>
                    {
                        var task = ctx.AddTask(Markup.Escape(file.Name), maxValue: Math.Max(1, file.Length));
                        progress.OnProgress = read => task.Value = read;
                        await send().ConfigureAwait(false);
                        task.Value = task.MaxValue;
                    }).ConfigureAwait(false);
            }
            else
            {
                await send().ConfigureAwait(false);
            }

            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(body!);
            }

            Console.WriteLine($"Uploaded {body!["filename"]} as {body["id"]}: {AtelierCommands.Bytes(body["bytes"]!.GetValue<long>())}, {body["num_lines"]} lines, {body["sample_type"]}, sha256 {body["signature"]}");
            return 0;
        });
        return command;
    }

    private static Command List(ClientOptions client)
    {
        var purpose = new Option<string?>("--purpose") { Description = "Only files of this purpose." };
        var search = new Option<string?>("--search") { Description = "Only files whose name contains this." };
        var page = new Option<int>("--page") { Description = "0-based page.", DefaultValueFactory = _ => 0 };
        var pageSize = new Option<int>("--page-size") { Description = "Files per page.", DefaultValueFactory = _ => 100 };
        var command = new Command("list", "List files, newest first.");
        command.Options.Add(purpose);
        command.Options.Add(search);
        command.Options.Add(page);
        command.Options.Add(pageSize);
        command.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            var query = $"/v1/files?page={parse.GetValue(page)}&page_size={parse.GetValue(pageSize)}";
            if (parse.GetValue(purpose) is { } p)
            {
                query += "&purpose=" + Uri.EscapeDataString(p);
            }

            if (parse.GetValue(search) is { } s)
            {
                query += "&search=" + Uri.EscapeDataString(s);
            }

            var body = await api.GetJsonAsync(query, cancel).ConfigureAwait(false);
            if (client.WantsJson(parse))
            {
                return AtelierCommands.Print(body);
            }

            var table = new Table().AddColumns("id", "filename", "purpose", "type", "lines", "size", "created");
            table.Columns[0].NoWrap();
            foreach (var f in body["data"]!.AsArray())
            {
                table.AddRow(
                    AtelierCommands.Str(f!["id"]),
                    Markup.Escape(AtelierCommands.Str(f["filename"])),
                    AtelierCommands.Str(f["purpose"]),
                    AtelierCommands.Str(f["sample_type"]),
                    AtelierCommands.Str(f["num_lines"]),
                    AtelierCommands.Bytes(f["bytes"]!.GetValue<long>()),
                    KeysCommands.Time(f["created_at"]!.GetValue<long>()));
            }

            AnsiConsole.Write(table);
            Console.WriteLine($"{body["total"]} file(s) in all.");
            return 0;
        });
        return command;
    }

    private static Command Get(ClientOptions client)
    {
        var id = new Argument<string>("id") { Description = "The file id." };
        var command = new Command("get", "Show a file's metadata.");
        command.Arguments.Add(id);
        command.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            return AtelierCommands.Print(await api.GetJsonAsync($"/v1/files/{Uri.EscapeDataString(parse.GetValue(id)!)}", cancel).ConfigureAwait(false));
        });
        return command;
    }

    private static Command Download(ClientOptions client)
    {
        var id = new Argument<string>("id") { Description = "The file id." };
        var output = new Option<FileInfo>("--output", "-o") { Description = "Where to write the bytes (required; never overwritten).", Required = true };
        var command = new Command("download", "Download a file's bytes.");
        command.Arguments.Add(id);
        command.Options.Add(output);
        command.SetAction(async (parse, cancel) =>
        {
            var target = parse.GetValue(output)!;
            if (target.Exists)
            {
                throw new CliException($"{target.FullName} exists; choose another --output.");
            }

            using var api = client.Connect(parse);
            using var response = await api.Http.GetAsync($"/v1/files/{Uri.EscapeDataString(parse.GetValue(id)!)}/content", HttpCompletionOption.ResponseHeadersRead, cancel).ConfigureAwait(false);
            if (!response.IsSuccessStatusCode)
            {
                throw new CliException(ApiClient.Describe(response, await response.Content.ReadAsStringAsync(cancel).ConfigureAwait(false)));
            }

            // Written beside the target and renamed, so an interrupted download leaves no partial file under the
            // name; never over a file that appeared meanwhile (the check above is only the friendly message).
            try
            {
                await AtomicFile.WriteAsync(target.FullName, file => response.Content.CopyToAsync(file, cancel), cancel, overwrite: false).ConfigureAwait(false);
            }
            catch (IOException) when (File.Exists(target.FullName))
            {
                throw new CliException($"{target.FullName} exists; choose another --output.");
            }

            Console.WriteLine($"Wrote {AtelierCommands.Bytes(new FileInfo(target.FullName).Length)} to {target.FullName}.");
            return 0;
        });
        return command;
    }

    private static Command Delete(ClientOptions client)
    {
        var id = new Argument<string>("id") { Description = "The file id." };
        var command = new Command("delete", "Delete a file and its bytes.");
        command.Arguments.Add(id);
        command.SetAction(async (parse, cancel) =>
        {
            using var api = client.Connect(parse);
            await api.SendAsync(new HttpRequestMessage(HttpMethod.Delete, $"/v1/files/{Uri.EscapeDataString(parse.GetValue(id)!)}"), cancel).ConfigureAwait(false);
            Console.WriteLine($"Deleted {parse.GetValue(id)}.");
            return 0;
        });
        return command;
    }

    /// <summary>Reports how far a read has got, for the progress bar.</summary>
    private sealed class ProgressStream(Stream inner) : Stream
    {
        private long _read;

        public Action<long>? OnProgress { get; set; }

        public override bool CanRead => true;

        public override bool CanSeek => inner.CanSeek;

        public override bool CanWrite => false;

        public override long Length => inner.Length;

        public override long Position { get => inner.Position; set => inner.Position = value; }

        public override int Read(byte[] buffer, int offset, int count) => Count(inner.Read(buffer, offset, count));

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            Count(await inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false));

        public override long Seek(long offset, SeekOrigin origin) => inner.Seek(offset, origin);

        public override void Flush()
        {
        }

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        private int Count(int n)
        {
            _read += n;
            OnProgress?.Invoke(_read);
            return n;
        }
    }
}
