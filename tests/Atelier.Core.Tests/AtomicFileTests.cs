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
