namespace Atelier.Training.Jobs;

/// <summary>
/// A job's expected duration measured from its own steps: the planning estimate (from the model's
/// size and an assumed FLOP rate) can be off by several times for small models, whose steps are
/// dominated by fixed costs, so once a few steps have run the measured rate replaces it. Each
/// estimate is the time trained so far plus the remaining steps at the rate seen since training
/// started (checkpoint stalls included, since they are part of the steps' wall time).
/// </summary>
public sealed class TrainingDurationEstimate
{
    /// <summary>Steps measured before the first estimate: the first step also pays warm-up costs.</summary>
    public const int WarmupSteps = 3;

    private readonly TimeProvider _clock;
    private readonly int _totalSteps;
    private readonly int _every;
    private readonly long _start;
    private int _firstStep = -1;
    private long _firstStepEnd;

    /// <summary>Starts measuring now.</summary>
    /// <param name="totalSteps">The plan's steps.</param>
    /// <param name="every">After the first estimate, estimate again every this many steps.</param>
    /// <param name="clock">The clock.</param>
    public TrainingDurationEstimate(int totalSteps, int every, TimeProvider clock)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(totalSteps, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(every, 1);
        ArgumentNullException.ThrowIfNull(clock);
        _clock = clock;
        _totalSteps = totalSteps;
        _every = every;
        _start = clock.GetTimestamp();
    }

    /// <summary>
    /// Records that <paramref name="step"/> (1-based, over the whole job) finished; returns a new
    /// estimate of the whole run in seconds when one is due, else null. A resumed run measures
    /// from the first step it trained itself.
    /// </summary>
    public long? StepFinished(int step)
    {
        long now = _clock.GetTimestamp();
        if (_firstStep < 0)
        {
            _firstStep = step;
            _firstStepEnd = now;
            return null;
        }

        int measured = step - _firstStep;
        if (measured < WarmupSteps - 1 || (measured > WarmupSteps - 1 && step % _every != 0 && step != _totalSteps))
        {
            return null;
        }

        // The rate leaves the first step out: it loads the model, warms caches and JITs kernels.
        double perStep = _clock.GetElapsedTime(_firstStepEnd, now).TotalSeconds / measured;
        double elapsed = _clock.GetElapsedTime(_start, now).TotalSeconds;
        return (long)Math.Ceiling(elapsed + (perStep * (_totalSteps - step)));
    }
}
