using System.CommandLine;
using Atelier.Cli;

try
{
    return await AtelierCommands.Build().Parse(args).InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false }).ConfigureAwait(false);
}
catch (CliException e)
{
    Console.Error.WriteLine("error: " + e.Message);
    return 2;
}
