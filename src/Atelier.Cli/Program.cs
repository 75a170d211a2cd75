using System.CommandLine;
using Atelier.Cli;
using Spectre.Console;

// Redirected to a file or a pipe, nothing is cut to fit a terminal: tables take the width their
// cells need (Spectre assumes 80 columns without a terminal, and cut ids to 'ex…').
if (Console.IsOutputRedirected)
{
    AnsiConsole.Profile.Width = 4096;
}

try
{
    // No response files: '@file' is an argument the commands read themselves (a query vector).
    var parse = AtelierCommands.Build().Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null });
    return await parse.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false }).ConfigureAwait(false);
}
catch (CliException e)
{
    Console.Error.WriteLine("error: " + e.Message);
    return 2;
}
