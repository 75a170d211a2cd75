using System.Text.RegularExpressions;
using Atelier.Core;
using Deque.AxeCore.Playwright;
using Microsoft.Playwright;

namespace Atelier.Console.Tests;

/// <summary>
/// A real Atelier server and Debian's chromium (driven by Playwright, headless) with one page on
/// the console. Everything it starts is disposed, in reverse order, even when a test fails or
/// starting fails half-way.
/// </summary>
public sealed partial class ConsoleSession : IAsyncDisposable
{
    /// <summary>Debian's chromium: Playwright never downloads a browser here (eng/test.sh installs this one).</summary>
    public const string Chromium = "/usr/bin/chromium";

    /// <summary>How long a page may take to draw: generous, a loaded machine runs four builds at once.</summary>
    private const float PageTimeoutMs = 60_000;

    private readonly List<string> _pageErrors = [];

    private IPlaywright? _playwright;

    private IBrowser? _browser;

    private IBrowserContext? _context;

    private ConsoleSession(TestServer server) => Server = server;

    public TestServer Server { get; }

    public IPage Page { get; private set; } = null!;

    /// <summary>Where the screenshots go: the test results, beside the TRX files (eng/test.sh's artifacts/test-results).</summary>
    public static string ScreenshotDirectory { get; } = Path.Combine(Repo.Root, "artifacts", "test-results", "console");

    public static async Task<ConsoleSession> StartAsync(Func<AtelierConfig, AtelierConfig>? configure = null)
    {
        Assert.True(File.Exists(Chromium), $"{Chromium} is missing: install Debian's chromium (apt-get install chromium; eng/test.sh does it).");
        var session = new ConsoleSession(await TestServer.StartAsync(configure));
        try
        {
            await session.OpenBrowserAsync();
            return session;
        }
        catch
        {
            await session.DisposeAsync();
            throw;
        }
    }

    private async Task OpenBrowserAsync()
    {
        _playwright = await Playwright.CreateAsync();
        _browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = Chromium,
            Headless = true,

            // Root in a container has no user namespace for chromium's sandbox, and a container's
            // /dev/shm is often too small for its shared memory.
            ChromiumSandbox = false,
            Args = ["--disable-dev-shm-usage"],
        });
        _context = await _browser.NewContextAsync(new BrowserNewContextOptions { ViewportSize = new ViewportSize { Width = 1280, Height = 900 } });
        _context.SetDefaultTimeout(PageTimeoutMs);
        Page = await _context.NewPageAsync();
        Page.PageError += (_, error) => _pageErrors.Add("uncaught: " + error);
        Page.Console += (_, message) =>
        {
            // A violation of the Content-Security-Policy (an inline script or style) is a defect.
            if (message.Type == "error" && message.Text.Contains("Content Security Policy", StringComparison.Ordinal))
            {
                _pageErrors.Add("CSP: " + message.Text);
            }
        };
    }

    /// <summary>Opens the console and signs in with <paramref name="key"/> (the operator's by default).</summary>
    public async Task SignInAsync(string? key = null)
    {
        await Page.GotoAsync(Server.BaseUrl + "/");
        await Page.GetByLabel("API key").FillAsync(key ?? Server.AdminKey);
        await Page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        await WaitForPageAsync("overview");
    }

    /// <summary>Goes to <c>#/{route}</c> and waits until the page is drawn.</summary>
    public async Task OpenAsync(string route)
    {
        await Page.EvaluateAsync("route => { location.hash = '#/' + route; }", route);
        await WaitForPageAsync(route);
    }

    /// <summary>Waits until the page whose route starts with <paramref name="routePrefix"/> is drawn; fails with what the page shows when it is not.</summary>
    public async Task WaitForPageAsync(string routePrefix)
    {
        try
        {
            await Page.WaitForFunctionAsync(
                "prefix => { const p = document.getElementById('page'); return p.dataset.ready === 'true' && p.dataset.route.startsWith(prefix); }",
                routePrefix,
                new PageWaitForFunctionOptions { Timeout = PageTimeoutMs });
        }
        catch (TimeoutException)
        {
            var text = await Page.Locator("main").InnerTextAsync();
            Assert.Fail($"Page '{routePrefix}' was not drawn; the page shows:\n{text}");
        }
    }

    /// <summary>The route of the page drawn now, as in <c>#/jobs/ID</c> without <c>#/</c>.</summary>
    public Task<string> RouteAsync() => Page.EvaluateAsync<string>("() => document.getElementById('page').dataset.route");

    /// <summary>Saves a full-page screenshot as <c>{name}.png</c> under <see cref="ScreenshotDirectory"/>.</summary>
    public async Task ScreenshotAsync(string name)
    {
        Directory.CreateDirectory(ScreenshotDirectory);
        await Page.ScreenshotAsync(new PageScreenshotOptions { Path = Path.Combine(ScreenshotDirectory, Unsafe().Replace(name, "-") + ".png"), FullPage = true });
    }

    /// <summary>Runs axe-core on the page; fails on any serious or critical violation, naming each with its elements.</summary>
    public async Task AssertAccessibleAsync(string page)
    {
        var result = await Page.RunAxe();
        var bad = result.Violations.Where(v => v.Impact is "serious" or "critical").ToArray();
        Assert.True(bad.Length == 0, $"axe on {page}:\n" + string.Join("\n", bad.Select(v => $"{v.Impact} {v.Id}: {v.Help} at {string.Join(", ", v.Nodes.Select(n => string.Join(" ", n.Target)))}")));
    }

    /// <summary>Nothing went wrong in the page itself: no uncaught error, no blocked inline script or style.</summary>
    public void AssertNoPageErrors() => Assert.True(_pageErrors.Count == 0, string.Join("\n", _pageErrors));

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (_context is not null)
            {
                await _context.DisposeAsync();
            }

            if (_browser is not null)
            {
                await _browser.DisposeAsync();
            }
        }
        finally
        {
            _playwright?.Dispose();
            await Server.DisposeAsync();
        }
    }

    [GeneratedRegex("[^A-Za-z0-9._-]+")]
    private static partial Regex Unsafe();
}
