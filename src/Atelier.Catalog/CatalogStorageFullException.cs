using Atelier.Core.Errors;

namespace Atelier.Catalog;

/// <summary>
/// The catalog could not write because its storage is full. Each provider turns its own signal
/// (SQLite's <c>SQLITE_FULL</c>, PostgreSQL's <c>53100</c>) into this, so the API edge answers 507 and
/// a deletion can free the audit log's reserve without knowing which database holds the catalog.
/// </summary>
public sealed class CatalogStorageFullException(string message, Exception? inner = null) : AtelierException(message, inner)
{
    /// <inheritdoc />
    public override int StatusCode => 507;

    /// <inheritdoc />
    public override string Code => "insufficient_storage";
}
