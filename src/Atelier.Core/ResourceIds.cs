namespace Atelier.Core;

/// <summary>
/// Identifiers of resources. Files and jobs use UUIDs as Mistral's API does; version 7 keeps them
/// sortable by creation time, which makes catalog indexes and listings cheap.
/// </summary>
public static class ResourceIds
{
    /// <summary>A new resource id in the canonical 36-character UUID form.</summary>
    public static string NewUuid(TimeProvider clock) =>
        Guid.CreateVersion7(clock.GetUtcNow()).ToString("D");

    /// <summary>True when <paramref name="id"/> is a canonical UUID string (the only ids that reach storage keys).</summary>
    public static bool IsUuid(string? id) =>
        id is { Length: 36 } && Guid.TryParseExact(id, "D", out _);
}
