using Atelier.Modeling.Kernels;

namespace Atelier.Modeling.Tests;

/// <summary>
/// The kernel team (<see cref="KernelTeam"/>): forks inside a hot scope run every task once, give the bits of the
/// thread-pool path, run nested forks inline, pass a task's exception to the caller and stay usable after it, and
/// let a second caller that finds the team busy fall back without waiting on it.
/// </summary>
[Collection(GlobalKernelSettings.Name)]
public class KernelTeamTests
{
    private static T WithThreads<T>(int threads, Func<T> body)
    {
        var saved = KernelParallelism.MaxThreads;
        KernelParallelism.MaxThreads = threads;
        try
        {
            return body();
        }
        finally
        {
            KernelParallelism.MaxThreads = saved;
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(7)]
    [InlineData(200)]
    public void A_hot_fork_runs_every_task_exactly_once(int tasks)
    {
        var counts = WithThreads(4, () =>
        {
            var seen = new int[tasks];
            using (KernelTeam.Hot())
            {
                for (var repeat = 0; repeat < 50; repeat++)
                {
                    KernelParallelism.Run(tasks, 4, i => Interlocked.Increment(ref seen[i]));
                }
            }

            return seen;
        });

        Assert.All(counts, c => Assert.Equal(50, c));
    }

    [Theory]
    [InlineData(1, 768, 1280)]
    [InlineData(1, 2048, 768)]
    [InlineData(5, 300, 70)]
    [InlineData(32, 768, 4096)]
    [InlineData(100, 256, 600)]
    public void Products_in_a_hot_scope_give_the_bits_of_the_thread_pool_path(int m, int k, int n)
    {
        var w = TestData.Uniform(n * k, 21);
        using var packed = new PackedMatrix(w, n, k);
        var a = TestData.Uniform(m * k, 22);
        var (cold, hot) = WithThreads(2, () =>
        {
            var c1 = new float[m * n];
            Sgemm.MultiplyBatchInvariant(m, 1f, a, k, packed, 0f, c1, n);
            var c2 = new float[m * n];
            using (KernelTeam.Hot())
            {
                Sgemm.MultiplyBatchInvariant(m, 1f, a, k, packed, 0f, c2, n);
            }

            return (c1, c2);
        });

        Assert.Equal(cold, hot);
    }

    [Fact]
    public void A_fork_inside_a_task_runs_inline_and_completes()
    {
        var total = WithThreads(2, () =>
        {
            var sum = 0;
            using (KernelTeam.Hot())
            {
                KernelParallelism.Run(4, 2, _ =>
                {
                    var thread = Environment.CurrentManagedThreadId;
                    var inner = 0;
                    var sameThread = true;
                    KernelParallelism.Run(8, 2, _ =>
                    {
                        inner++;
                        sameThread &= Environment.CurrentManagedThreadId == thread;
                    });

                    Assert.True(sameThread, "a nested fork must run on its task's own thread");
                    Interlocked.Add(ref sum, inner);
                });
            }

            return sum;
        });

        Assert.Equal(32, total);
    }

    [Fact]
    public void A_task_exception_reaches_the_caller_and_the_team_stays_usable()
    {
        WithThreads(2, () =>
        {
            using (KernelTeam.Hot())
            {
                var error = Assert.Throws<AggregateException>(() =>
                    KernelParallelism.Run(6, 2, i =>
                    {
                        if (i == 3)
                        {
                            throw new InvalidOperationException("task 3 failed");
                        }
                    }));
                Assert.Equal("task 3 failed", Assert.IsType<InvalidOperationException>(Assert.Single(error.InnerExceptions)).Message);

                var ran = 0;
                KernelParallelism.Run(6, 2, _ => Interlocked.Increment(ref ran));
                Assert.Equal(6, ran);
            }

            return 0;
        });
    }

    [Fact]
    public void Two_callers_at_once_both_finish_with_the_same_bits()
    {
        const int m = 1, k = 1024, n = 2048;
        var w = TestData.Uniform(n * k, 31);
        using var packed = new PackedMatrix(w, n, k);
        var a = TestData.Uniform(m * k, 32);
        var expected = new float[n];
        Sgemm.MultiplyBatchInvariant(m, 1f, a, k, packed, 0f, expected, n);
        var results = WithThreads(2, () =>
        {
            using (KernelTeam.Hot())
            {
                // One caller holds the team while the other forks: the second falls back to the thread pool.
                var outputs = new float[4][];
                Parallel.For(0, outputs.Length, new ParallelOptions { MaxDegreeOfParallelism = 4 }, i =>
                {
                    var c = new float[n];
                    for (var repeat = 0; repeat < 20; repeat++)
                    {
                        Sgemm.MultiplyBatchInvariant(m, 1f, a, k, packed, 0f, c, n);
                    }

                    outputs[i] = c;
                });
                return outputs;
            }
        });

        Assert.All(results, r => Assert.Equal(expected, r));
    }
}
