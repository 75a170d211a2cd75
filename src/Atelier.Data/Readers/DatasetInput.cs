namespace Atelier.Data.Readers;

/// <summary>The format of an input file.</summary>
public enum DataFormat
{
    /// <summary>Chosen from the file name: <c>.jsonl</c> fine-tune JSONL, <c>.parquet</c> Parquet, anything else text.</summary>
    Auto,

    /// <summary>One JSON object per line: chat <c>messages</c> (fine-tune) or pretrain <c>{"text": ...}</c>.</summary>
    FineTuneJsonl,

    /// <summary>A plain-text corpus, split into documents by <see cref="TextDocumentSplit"/>.</summary>
    Text,

    /// <summary>A Parquet corpus with one text column.</summary>
    Parquet,
}

/// <summary>How a plain-text corpus is cut into documents.</summary>
public enum TextDocumentSplit
{
    /// <summary>Documents are separated by one or more blank lines.</summary>
    BlankLine,

    /// <summary>Every non-empty line is a document.</summary>
    Line,

    /// <summary>The whole file is one document.</summary>
    WholeFile,
}

/// <summary>
/// One input of a build: a name (used in reports and features) and a way to open it. The stream is
/// opened again when a build resumes, so the factory must return the same bytes each time.
/// </summary>
public sealed class DatasetInput
{
    /// <summary>Creates an input whose content opens at once (a local file, bytes in memory).</summary>
    /// <param name="name">The name used in reports (a file name, never a secret path).</param>
    /// <param name="openRead">Opens the content for reading; Parquet needs a seekable stream.</param>
    /// <param name="format">The format, or <see cref="DataFormat.Auto"/>.</param>
    public DatasetInput(string name, Func<Stream> openRead, DataFormat format = DataFormat.Auto)
        : this(name, OpenAtOnce(openRead), format)
    {
    }

    /// <summary>Creates an input whose content is opened asynchronously (a blob in a store, possibly over the network).</summary>
    /// <param name="name">The name used in reports (a file name, never a secret path).</param>
    /// <param name="openReadAsync">Opens the content for reading; Parquet needs a seekable stream.</param>
    /// <param name="format">The format, or <see cref="DataFormat.Auto"/>.</param>
    public DatasetInput(string name, Func<CancellationToken, ValueTask<Stream>> openReadAsync, DataFormat format = DataFormat.Auto)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(openReadAsync);
        Name = name;
        OpenReadAsync = openReadAsync;
        Format = format == DataFormat.Auto ? FormatFromName(name) : format;
    }

    /// <summary>The name used in reports.</summary>
    public string Name { get; }

    /// <summary>Opens the content.</summary>
    public Func<CancellationToken, ValueTask<Stream>> OpenReadAsync { get; }

    /// <summary>The resolved format (never <see cref="DataFormat.Auto"/>).</summary>
    public DataFormat Format { get; }

    /// <summary>How a text input is cut into documents.</summary>
    public TextDocumentSplit TextSplit { get; init; } = TextDocumentSplit.BlankLine;

    /// <summary>The column holding the text in a Parquet input.</summary>
    public string ParquetTextColumn { get; init; } = "text";

    /// <summary>An input read from a local file.</summary>
    public static DatasetInput FromFile(string path, DataFormat format = DataFormat.Auto) =>
        new(Path.GetFileName(path), () => new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan), format);

    /// <summary>An input held in memory (tests, small eval sets).</summary>
    public static DatasetInput FromBytes(string name, ReadOnlyMemory<byte> content, DataFormat format = DataFormat.Auto) =>
        new(name, () => new MemoryStream(content.ToArray(), writable: false), format);

    /// <summary>An input made of a UTF-8 string (tests).</summary>
    public static DatasetInput FromText(string name, string content, DataFormat format = DataFormat.Auto) =>
        FromBytes(name, System.Text.Encoding.UTF8.GetBytes(content), format);

    private static Func<CancellationToken, ValueTask<Stream>> OpenAtOnce(Func<Stream> openRead)
    {
        ArgumentNullException.ThrowIfNull(openRead);
        return _ => ValueTask.FromResult(openRead());
    }

    private static DataFormat FormatFromName(string name)
    {
        if (name.EndsWith(".jsonl", StringComparison.OrdinalIgnoreCase) || name.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
        {
            return DataFormat.FineTuneJsonl;
        }

        return name.EndsWith(".parquet", StringComparison.OrdinalIgnoreCase) ? DataFormat.Parquet : DataFormat.Text;
    }
}
