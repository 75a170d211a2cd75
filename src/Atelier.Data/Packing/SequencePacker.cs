namespace Atelier.Data.Packing;

/// <summary>
/// One training window of <c>seq_len</c> positions: inputs, next-token targets, loss mask, and the
/// lengths of the sample pieces it holds (so attention and positions can reset per sample).
/// </summary>
public sealed class PackedWindow
{
    internal PackedWindow(int[] inputIds, int[] labels, byte[] lossMask, int[] sizes, long[] sampleOrdinals)
    {
        InputIds = inputIds;
        Labels = labels;
        LossMask = lossMask;
        Sizes = sizes;
        SampleOrdinals = sampleOrdinals;
    }

    /// <summary>Input token ids (x).</summary>
    public int[] InputIds { get; }

    /// <summary>Target ids (y: the next token of each input).</summary>
    public int[] Labels { get; }

    /// <summary>1 where the target is trained.</summary>
    public byte[] LossMask { get; }

    /// <summary>Lengths of the consecutive sample pieces; they add up to <c>seq_len</c>.</summary>
    public int[] Sizes { get; }

    /// <summary>The example ordinal of each piece (-1 for padding).</summary>
    public long[] SampleOrdinals { get; }
}

/// <summary>The part of a window being filled, saved in build checkpoints.</summary>
public sealed record PackerState(int[] InputIds, int[] Labels, byte[] LossMask, int[] Sizes, long[] SampleOrdinals);

/// <summary>
/// Packs tokenised samples into <c>seq_len</c> windows as mistral-finetune's
/// <c>sequence_iterator</c> does: each sample gives <c>x = tokens[:-1]</c>, <c>y = tokens[1:]</c>,
/// <c>mask = mask[1:]</c>; pieces are appended until a window is full, a sample that does not fit
/// continues in the next window, pieces whose mask is all false are skipped, and the last window
/// is padded (mask false) when it holds any trained position.
/// </summary>
public sealed class SequencePacker
{
    private readonly int _sequenceLength;
    private readonly int[] _x;
    private readonly int[] _y;
    private readonly byte[] _mask;
    private readonly List<int> _sizes = [];
    private readonly List<long> _ordinals = [];
    private readonly int _padId;
    private int _fill;

    /// <summary>Creates a packer.</summary>
    public SequencePacker(int sequenceLength, int padId = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(sequenceLength, 2);
        _sequenceLength = sequenceLength;
        _padId = padId;
        _x = new int[sequenceLength];
        _y = new int[sequenceLength];
        _mask = new byte[sequenceLength];
    }

    /// <summary>Adds a sample; full windows go to <paramref name="emit"/>.</summary>
    public void Add(long ordinal, ReadOnlySpan<int> tokens, ReadOnlySpan<bool> mask, List<PackedWindow> emit)
    {
        ArgumentNullException.ThrowIfNull(emit);
        if (tokens.Length < 2)
        {
            return;
        }

        ReadOnlySpan<int> x = tokens[..^1];
        ReadOnlySpan<int> y = tokens[1..];
        ReadOnlySpan<bool> m = mask[1..];
        int position = 0;
        while (position < x.Length)
        {
            int size = Math.Min(_sequenceLength - _fill, x.Length - position);
            ReadOnlySpan<bool> pieceMask = m.Slice(position, size);
            if (!pieceMask.Contains(true))
            {
                position += size;
                continue;
            }

            x.Slice(position, size).CopyTo(_x.AsSpan(_fill));
            y.Slice(position, size).CopyTo(_y.AsSpan(_fill));
            for (int i = 0; i < size; i++)
            {
                _mask[_fill + i] = pieceMask[i] ? (byte)1 : (byte)0;
            }

            _fill += size;
            _sizes.Add(size);
            _ordinals.Add(ordinal);
            position += size;
            if (_fill == _sequenceLength)
            {
                emit.Add(TakeWindow());
            }
        }
    }

    /// <summary>Pads and emits the last window when it holds any trained position.</summary>
    public void Flush(List<PackedWindow> emit)
    {
        ArgumentNullException.ThrowIfNull(emit);
        if (_fill == 0 || !_mask.AsSpan(0, _fill).Contains((byte)1))
        {
            Reset();
            return;
        }

        int missing = _sequenceLength - _fill;
        _x.AsSpan(_fill).Fill(_padId);
        _y.AsSpan(_fill).Fill(_padId);
        _mask.AsSpan(_fill).Clear();
        if (missing > 0)
        {
            _sizes.Add(missing);
            _ordinals.Add(-1);
        }

        _fill = _sequenceLength;
        emit.Add(TakeWindow());
    }

    /// <summary>The partial window, for a checkpoint.</summary>
    public PackerState SaveState() =>
        new(_x[.._fill], _y[.._fill], _mask[.._fill], [.. _sizes], [.. _ordinals]);

    /// <summary>Restores a partial window saved by <see cref="SaveState"/>.</summary>
    public void RestoreState(PackerState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        Reset();
        state.InputIds.CopyTo(_x, 0);
        state.Labels.CopyTo(_y, 0);
        state.LossMask.CopyTo(_mask, 0);
        _sizes.AddRange(state.Sizes);
        _ordinals.AddRange(state.SampleOrdinals);
        _fill = state.InputIds.Length;
    }

    private PackedWindow TakeWindow()
    {
        var window = new PackedWindow((int[])_x.Clone(), (int[])_y.Clone(), (byte[])_mask.Clone(), [.. _sizes], [.. _ordinals]);
        Reset();
        return window;
    }

    private void Reset()
    {
        _fill = 0;
        _sizes.Clear();
        _ordinals.Clear();
    }
}
