namespace Atelier.Training;

/// <summary>
/// Catalog writes issued from synchronous callbacks (a trainer's step and checkpoint reports, a
/// builder's progress) that must not block the thread reporting them: each write starts once the
/// previous one is done, so the catalog sees them in the order they were issued, and the owner
/// awaits them before the write that must come after them (the end of the run).
/// </summary>
internal sealed class OrderedWrites
{
    private readonly Lock _lock = new();
    private Task _last = Task.CompletedTask;

    /// <summary>Issues <paramref name="write"/> after every write issued before it. A failed write stops the ones after it.</summary>
    public void Enqueue(Func<Task> write)
    {
        lock (_lock)
        {
            _last = AfterAsync(_last, write);
        }
    }

    /// <summary>Completes when every write issued so far is done; throws the first failure.</summary>
    public Task FlushAsync()
    {
        lock (_lock)
        {
            return _last;
        }
    }

    /// <summary>Completes when every write issued so far is done or has failed; never throws.</summary>
    public async Task SettledAsync()
    {
        try
        {
            await FlushAsync().ConfigureAwait(false);
        }
        catch (Exception)
        {
            // Observed here so that the owner can first report how the run ended; FlushAsync rethrows it.
        }
    }

    private static async Task AfterAsync(Task previous, Func<Task> write)
    {
        await previous.ConfigureAwait(false);
        await write().ConfigureAwait(false);
    }
}
