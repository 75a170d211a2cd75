using Atelier.Training.Checkpoints;

namespace Atelier.Training.Tests;

/// <summary>
/// A stand-in for a trainer's state: frozen base weights, LoRA adapters, Adam moments, the data
/// loader's position and the RNG state, all filled from a fixed seed.
/// </summary>
internal sealed class CheckpointTrainingState
{
    public const int Chunk = CheckpointTestRig.ChunkSize;

    public CheckpointTrainingState(int seed, int baseChunks = 8, int adapterChunks = 2)
    {
        var random = new Random(seed);
        Base = new byte[(baseChunks * Chunk) - 1000];
        random.NextBytes(Base);
        Adapter = new byte[(adapterChunks * Chunk) + 123];
        random.NextBytes(Adapter);
        AdamM = new byte[adapterChunks * Chunk];
        AdamV = new byte[adapterChunks * Chunk];
        LoaderPosition = new byte[16];
        Rng = new byte[32];
        random.NextBytes(Rng);
    }

    public byte[] Base { get; }

    public byte[] Adapter { get; }

    public byte[] AdamM { get; }

    public byte[] AdamV { get; }

    public byte[] LoaderPosition { get; }

    public byte[] Rng { get; }

    /// <summary>Bytes that change every step: everything but the base.</summary>
    public long TrainableBytes => Adapter.Length + AdamM.Length + AdamV.Length + LoaderPosition.Length + Rng.Length;

    /// <summary>One optimiser step: adapters, moments, loader position and RNG change; the base does not.</summary>
    public void Step(int step)
    {
        var random = new Random(step * 7919);
        random.NextBytes(Adapter);
        random.NextBytes(AdamM);
        random.NextBytes(AdamV);
        BitConverter.TryWriteBytes(LoaderPosition, (long)step);
        random.NextBytes(Rng);
    }

    public CheckpointContent ToContent() => new CheckpointContent()
        .AddTensor("base/weights", "BF16", [Base.Length / 2], Base, frozen: true)
        .AddTensor("adapter/lora_A", "F32", [Adapter.Length], Adapter)
        .AddTensor("optimizer/adam_m", "F32", [AdamM.Length / 4], AdamM)
        .AddTensor("optimizer/adam_v", "F32", [AdamV.Length / 4], AdamV)
        .AddBlob("loader/position", LoaderPosition)
        .AddBlob("rng/state", Rng);

    public Dictionary<string, byte[]> Copy() => new(StringComparer.Ordinal)
    {
        ["base/weights"] = [.. Base],
        ["adapter/lora_A"] = [.. Adapter],
        ["optimizer/adam_m"] = [.. AdamM],
        ["optimizer/adam_v"] = [.. AdamV],
        ["loader/position"] = [.. LoaderPosition],
        ["rng/state"] = [.. Rng],
    };

    public static void AssertRestoredEquals(Dictionary<string, byte[]> expected, RestoredCheckpoint restored)
    {
        Assert.Equal(expected.Count, restored.Info.Entries.Count);
        foreach (var (name, bytes) in expected)
        {
            Assert.True(bytes.AsSpan().SequenceEqual(restored[name]), $"entry '{name}' of {restored.Info.Id} differs from what was saved");
        }
    }
}
