using System.Net;
using System.Net.Sockets;

namespace Atelier.Testing;

/// <summary>What tests that start servers of their own need: a free port, and a bounded wait on a condition.</summary>
public static class Waits
{
    /// <summary>A TCP port on loopback that nothing listens on now (the OS picks it).</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>
    /// Polls <paramref name="condition"/> until it holds, failing after <paramref name="limit"/>
    /// (two minutes by default: generous, since tests never assert on time) with what was awaited.
    /// </summary>
    public static async Task UntilAsync(Func<Task<bool>> condition, Func<string> what, TimeSpan? limit = null)
    {
        var deadline = DateTime.UtcNow + (limit ?? TimeSpan.FromMinutes(2));
        while (!await condition())
        {
            if (DateTime.UtcNow >= deadline)
            {
                throw new TimeoutException($"timed out waiting for {what()}");
            }

            await Task.Delay(200);
        }
    }
}
