namespace Atelier.Modeling.Tensors;

/// <summary>
/// A seeded xoshiro256** generator. Its sequence is fixed by this code, not by the runtime, so
/// weights, LoRA initialisation, dropout and sampling are reproducible across .NET versions.
/// </summary>
public sealed class DeterministicRandom
{
    private ulong _s0, _s1, _s2, _s3;

    /// <summary>Creates a generator from a seed; equal seeds give equal sequences.</summary>
    public DeterministicRandom(ulong seed)
    {
        var x = seed;
        _s0 = SplitMix(ref x);
        _s1 = SplitMix(ref x);
        _s2 = SplitMix(ref x);
        _s3 = SplitMix(ref x);
    }

    /// <summary>The next 64 random bits.</summary>
    public ulong NextUInt64()
    {
        var result = RotateLeft(_s1 * 5, 7) * 9;
        var t = _s1 << 17;
        _s2 ^= _s0;
        _s3 ^= _s1;
        _s1 ^= _s2;
        _s0 ^= _s3;
        _s2 ^= t;
        _s3 = RotateLeft(_s3, 45);
        return result;
    }

    /// <summary>A uniform float in [0, 1) with 24 random bits.</summary>
    public float NextSingle() => (NextUInt64() >> 40) * (1.0f / (1 << 24));

    /// <summary>A uniform double in [0, 1) with 53 random bits.</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>A standard normal sample (Box–Muller).</summary>
    public double NextGaussian()
    {
        var u1 = 1.0 - NextDouble();
        var u2 = NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }

    /// <summary>
    /// A stateless hash of a counter to a uniform float in [0, 1): used where each element needs its
    /// own random number whatever thread computes it (dropout masks).
    /// </summary>
    public static float HashUniform(ulong key, ulong index)
    {
        var x = key ^ (index * 0x9E3779B97F4A7C15UL);
        var z = SplitMix(ref x);
        return (z >> 40) * (1.0f / (1 << 24));
    }

    /// <summary>Mixes several integers into one 64-bit key.</summary>
    public static ulong MixKey(ulong a, ulong b, ulong c = 0, ulong d = 0)
    {
        var x = a;
        var h = SplitMix(ref x);
        x = h ^ b;
        h = SplitMix(ref x);
        x = h ^ c;
        h = SplitMix(ref x);
        x = h ^ d;
        return SplitMix(ref x);
    }

    private static ulong SplitMix(ref ulong x)
    {
        var z = x += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private static ulong RotateLeft(ulong x, int k) => (x << k) | (x >> (64 - k));
}
