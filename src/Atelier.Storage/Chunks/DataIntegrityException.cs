using Atelier.Core.Errors;

namespace Atelier.Storage.Chunks;

/// <summary>
/// Stored bytes no longer match the hash they were committed with (bit rot, a truncated copy, a
/// tampered file), and no other copy could stand in for them. The message names the artifact and
/// the chunk, and what each location held.
/// </summary>
public sealed class DataIntegrityException(string message) : AtelierException(message)
{
    /// <inheritdoc />
    public override int StatusCode => 500;

    /// <inheritdoc />
    public override string Code => "data_integrity";
}
