using Atelier.Core.IO;

namespace Atelier.Core.Tests;

public sealed class AtomicFileTests : IDisposable
{
    private readonly string _dir = Atelier.Testing.TestCleanup.CreateDirectory("atelier-atomic");

    public void Dispose() => Atelier.Testing.TestCleanup.Delete(_dir);

    [Fact]
    public async Task Write_ReplacesTheTargetWhole_AndLeavesNoTemporaryFile()
    {
        var path = Path.Combine(_dir, "a.json");
        AtomicFile.WriteAllBytes(path, "old"u8);
        await AtomicFile.WriteAllBytesAsync(path, "new content"u8.ToArray(), CancellationToken.None);

        Assert.Equal("new content", await File.ReadAllTextAsync(path));
        Assert.Equal(["a.json"], Directory.GetFiles(_dir).Select(Path.GetFileName));
    }

    [Fact]
    public async Task Write_ThatFailsHalfway_LeavesTheOldFileAndNoTemporaryFile()
    {
        var path = Path.Combine(_dir, "b.bin");
        AtomicFile.WriteAllBytes(path, "kept"u8);

        await Assert.ThrowsAsync<InvalidOperationException>(() => AtomicFile.WriteAsync(path, async s =>
        {
            await s.WriteAsync("partial"u8.ToArray());
            throw new InvalidOperationException("the writer died");
        }, CancellationToken.None));
        Assert.Throws<IOException>(() => AtomicFile.Write(path, s =>
        {
            s.Write("partial"u8);
            throw new IOException("disk full");
        }));

        Assert.Equal("kept", await File.ReadAllTextAsync(path));
        Assert.Single(Directory.GetFiles(_dir));
    }

    [Fact]
    public void WriteWithoutOverwrite_RefusesAnExistingTarget_AndKeepsIt()
    {
        var path = Path.Combine(_dir, "config.json");
        AtomicFile.WriteAllBytes(path, "first"u8, overwrite: false);

        Assert.Throws<IOException>(() => AtomicFile.WriteAllBytes(path, "second"u8, overwrite: false));
        Assert.Equal("first", File.ReadAllText(path));
        Assert.Single(Directory.GetFiles(_dir));
    }

    [Fact]
    public async Task StreamingWriteWithoutOverwrite_RefusesAnExistingTarget_AndLeavesNoTemporaryFile()
    {
        var path = Path.Combine(_dir, "download.bin");
        await AtomicFile.WriteAsync(path, s => s.WriteAsync("first"u8.ToArray()).AsTask(), CancellationToken.None, overwrite: false);

        await Assert.ThrowsAsync<IOException>(() => AtomicFile.WriteAsync(path, s => s.WriteAsync("second"u8.ToArray()).AsTask(), CancellationToken.None, overwrite: false));
        Assert.Throws<IOException>(() => AtomicFile.Write(path, s => s.Write("third"u8), overwrite: false));

        Assert.Equal("first", File.ReadAllText(path));
        Assert.Equal(["download.bin"], Directory.GetFiles(_dir).Select(Path.GetFileName));
    }

    [Fact]
    public void WriteFiles_WritesEveryFileWhole_AndLeavesNoTemporaryFile()
    {
        AtomicFile.WriteAllBytes(Path.Combine(_dir, "b.seg"), "old b"u8);

        AtomicFile.WriteFiles(_dir, [("a.seg", s => s.Write("new a"u8)), ("b.seg", s => s.Write("new b"u8))]);

        Assert.Equal("new a", File.ReadAllText(Path.Combine(_dir, "a.seg")));
        Assert.Equal("new b", File.ReadAllText(Path.Combine(_dir, "b.seg")));
        Assert.Equal(["a.seg", "b.seg"], Directory.GetFiles(_dir).Select(Path.GetFileName).Order());
    }

    [Fact]
    public void WriteFiles_ThatFailsPartWay_KeepsTheFilesBeforeIt_TheOldContentOfTheFailedOne_AndNoTemporaryFile()
    {
        AtomicFile.WriteAllBytes(Path.Combine(_dir, "b.seg"), "old b"u8);
        AtomicFile.WriteAllBytes(Path.Combine(_dir, "c.seg"), "old c"u8);

        Assert.Throws<IOException>(() => AtomicFile.WriteFiles(_dir,
        [
            ("a.seg", s => s.Write("new a"u8)),
            ("b.seg", s =>
            {
                s.Write("partial"u8);
                throw new IOException("disk full");
            }),
            ("c.seg", s => s.Write("new c"u8)),
        ]));

        Assert.Equal("new a", File.ReadAllText(Path.Combine(_dir, "a.seg")));
        Assert.Equal("old b", File.ReadAllText(Path.Combine(_dir, "b.seg")));
        Assert.Equal("old c", File.ReadAllText(Path.Combine(_dir, "c.seg")));
        Assert.Equal(["a.seg", "b.seg", "c.seg"], Directory.GetFiles(_dir).Select(Path.GetFileName).Order());
    }

    [Fact]
    public void WriteFiles_WhoseRenameFails_RemovesTheTemporaryFile()
    {
        // A directory where the file should go: the data is written and flushed, the rename fails.
        Directory.CreateDirectory(Path.Combine(_dir, "taken.seg"));

        Assert.ThrowsAny<IOException>(() => AtomicFile.WriteFiles(_dir, [("taken.seg", s => s.Write("bytes"u8))]));

        Assert.Empty(Directory.GetFiles(_dir));
    }

    [Fact]
    public void DeleteTemporaryFiles_RemovesLeftoversOfMatchingNamesOnly()
    {
        File.WriteAllText(Path.Combine(_dir, ".vectors.g2.seg.0123abcd.tmp"), "torn");
        File.WriteAllText(Path.Combine(_dir, ".MANIFEST.0123abcd.tmp"), "torn");
        File.WriteAllText(Path.Combine(_dir, "vectors.g1.seg"), "committed");

        AtomicFile.DeleteTemporaryFiles(_dir, "*.seg");

        Assert.Equal([".MANIFEST.0123abcd.tmp", "vectors.g1.seg"], Directory.GetFiles(_dir).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        AtomicFile.DeleteTemporaryFiles(Path.Combine(_dir, "missing"), "*.seg");
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void Mode_IsAppliedToTheNewFile()
    {
        var path = Path.Combine(_dir, "secret.key");
        AtomicFile.WriteAllBytes(path, "s"u8, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
    }

    [Fact]
    public void FsyncDirectory_OfAMissingDirectory_IsAnError_NotASilentNoOp() =>
        Assert.Throws<IOException>(() => AtomicFile.FsyncDirectory(Path.Combine(_dir, "missing")));
}
