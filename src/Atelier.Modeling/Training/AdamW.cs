using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using Atelier.Modeling.Tensors;

namespace Atelier.Modeling.Training;

/// <summary>AdamW hyper-parameters (decoupled weight decay, as PyTorch's <c>torch.optim.AdamW</c>).</summary>
/// <param name="Beta1">First-moment decay.</param>
/// <param name="Beta2">Second-moment decay.</param>
/// <param name="Epsilon">Added to the denominator.</param>
/// <param name="WeightDecay">Decoupled decay: each step multiplies parameters by <c>1 − lr·wd</c>.</param>
public sealed record AdamWOptions(float Beta1 = 0.9f, float Beta2 = 0.95f, float Epsilon = 1e-8f, float WeightDecay = 0.1f);

/// <summary>
/// AdamW over a fixed list of parameters. Each element is updated independently, so the result does
/// not depend on threads; the state is kept per parameter in the order given.
/// </summary>
public sealed class AdamW : IDisposable
{
    private readonly (Tensor Value, Tensor Grad)[] _parameters;
    private readonly Tensor[] _m;
    private readonly Tensor[] _v;

    /// <summary>Creates the optimiser and zeroed moment buffers.</summary>
    public AdamW(IEnumerable<(Tensor Value, Tensor Grad)> parameters, AdamWOptions options)
    {
        _parameters = [.. parameters];
        Options = options;
        _m = new Tensor[_parameters.Length];
        _v = new Tensor[_parameters.Length];
        for (var i = 0; i < _parameters.Length; i++)
        {
            _m[i] = new Tensor(_parameters[i].Value.Shape);
            _v[i] = new Tensor(_parameters[i].Value.Shape);
        }
    }

    /// <summary>The hyper-parameters.</summary>
    public AdamWOptions Options { get; }

    /// <summary>Steps taken so far.</summary>
    public int StepCount { get; private set; }

    /// <summary>Applies one update with learning rate <paramref name="lr"/> from the current gradients.</summary>
    public void Step(float lr)
    {
        StepCount++;
        var o = Options;
        var bc1 = 1.0 - Math.Pow(o.Beta1, StepCount);
        var bc2 = 1.0 - Math.Pow(o.Beta2, StepCount);
        var decay = 1f - (lr * o.WeightDecay);
        var stepSize = (float)(lr / bc1);
        var bc2Sqrt = (float)Math.Sqrt(bc2);
        for (var i = 0; i < _parameters.Length; i++)
        {
            Update(_parameters[i].Value.Span, _parameters[i].Grad.Span, _m[i].Span, _v[i].Span, o, decay, stepSize, bc2Sqrt);
        }
    }

    /// <summary>
    /// One fused pass over a parameter: moments, bias-corrected step and decay, eight lanes at a time.
    /// The vector lanes do exactly the scalar tail's operations in the same order (no fused multiply-add,
    /// a correctly rounded square root and division), so every element gets the same bits either way.
    /// </summary>
    private static void Update(Span<float> p, ReadOnlySpan<float> g, Span<float> m, Span<float> v, AdamWOptions o, float decay, float stepSize, float bc2Sqrt)
    {
        var j = 0;
        if (Vector256.IsHardwareAccelerated && p.Length >= Vector256<float>.Count)
        {
            var b1 = Vector256.Create(o.Beta1);
            var c1 = Vector256.Create(1f - o.Beta1);
            var b2 = Vector256.Create(o.Beta2);
            var c2 = Vector256.Create(1f - o.Beta2);
            var bc = Vector256.Create(bc2Sqrt);
            var eps = Vector256.Create(o.Epsilon);
            var dec = Vector256.Create(decay);
            var step = Vector256.Create(stepSize);
            ref var pr = ref MemoryMarshal.GetReference(p);
            ref var gr = ref MemoryMarshal.GetReference(g);
            ref var mr = ref MemoryMarshal.GetReference(m);
            ref var vr = ref MemoryMarshal.GetReference(v);
            for (; j <= p.Length - Vector256<float>.Count; j += Vector256<float>.Count)
            {
                var gj = Vector256.LoadUnsafe(ref gr, (nuint)j);
                var mj = (b1 * Vector256.LoadUnsafe(ref mr, (nuint)j)) + (c1 * gj);
                var vj = (b2 * Vector256.LoadUnsafe(ref vr, (nuint)j)) + (c2 * gj * gj);
                var denom = (Vector256.Sqrt(vj) / bc) + eps;
                var pj = (Vector256.LoadUnsafe(ref pr, (nuint)j) * dec) - (step * mj / denom);
                mj.StoreUnsafe(ref mr, (nuint)j);
                vj.StoreUnsafe(ref vr, (nuint)j);
                pj.StoreUnsafe(ref pr, (nuint)j);
            }
        }

        for (; j < p.Length; j++)
        {
            var gj = g[j];
            m[j] = (o.Beta1 * m[j]) + ((1f - o.Beta1) * gj);
            v[j] = (o.Beta2 * v[j]) + ((1f - o.Beta2) * gj * gj);
            var denom = (MathF.Sqrt(v[j]) / bc2Sqrt) + o.Epsilon;
            p[j] = (p[j] * decay) - (stepSize * m[j] / denom);
        }
    }

    /// <summary>The first and second moment of parameter <paramref name="index"/> (in the order given at construction).</summary>
    public (Tensor M, Tensor V) Moments(int index) => (_m[index], _v[index]);

    /// <summary>Number of parameters optimised.</summary>
    public int ParameterCount => _parameters.Length;

    /// <summary>Restores the step count (the moments are restored through <see cref="Moments"/>).</summary>
    public void RestoreStepCount(int steps)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(steps);
        StepCount = steps;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (var t in _m)
        {
            t.Dispose();
        }

        foreach (var t in _v)
        {
            t.Dispose();
        }
    }
}

/// <summary>Linear warmup then cosine decay to a floor.</summary>
/// <param name="PeakLearningRate">Rate reached at the end of warmup.</param>
/// <param name="WarmupSteps">Steps of linear warmup (from <c>peak/warmup</c> at step 0).</param>
/// <param name="TotalSteps">Steps after which the rate stays at the floor.</param>
/// <param name="MinLearningRate">The floor of the cosine.</param>
public sealed record WarmupCosineSchedule(float PeakLearningRate, int WarmupSteps, int TotalSteps, float MinLearningRate = 0f)
{
    /// <summary>The learning rate for the 0-based step <paramref name="step"/>.</summary>
    public float At(int step)
    {
        if (step < WarmupSteps)
        {
            return PeakLearningRate * (step + 1) / WarmupSteps;
        }

        var span = Math.Max(1, TotalSteps - WarmupSteps);
        var progress = Math.Min(1.0, (double)(step - WarmupSteps) / span);
        return (float)(MinLearningRate + ((PeakLearningRate - MinLearningRate) * 0.5 * (1 + Math.Cos(Math.PI * progress))));
    }
}

/// <summary>Gradient clipping by global norm.</summary>
public static class GradientClipping
{
    /// <summary>
    /// Computes the global L2 norm of the gradients (summed in double, in the order given) and, when it
    /// exceeds <paramref name="maxNorm"/>, scales every gradient by <c>maxNorm / (norm + 1e-6)</c>.
    /// Returns the norm before clipping.
    /// </summary>
    public static double ClipByGlobalNorm(IEnumerable<Tensor> gradients, float maxNorm)
    {
        var list = gradients.ToList();
        double sum = 0;
        foreach (var g in list)
        {
            foreach (var x in g.Span)
            {
                sum += (double)x * x;
            }
        }

        var norm = Math.Sqrt(sum);
        if (maxNorm > 0 && norm > maxNorm)
        {
            var scale = (float)(maxNorm / (norm + 1e-6));
            foreach (var g in list)
            {
                System.Numerics.Tensors.TensorPrimitives.Multiply(g.Span, scale, g.Span);
            }
        }

        return norm;
    }
}
