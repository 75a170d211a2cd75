namespace Atelier.Server.Hosting;

// Shapes several endpoints share. Handlers that build their bodies as JSON nodes or anonymous
// objects declare these for the OpenAPI document (decision 0014); the conformance test checks
// real answers against them.

/// <summary>A list in the platform's <c>{"object": "list", "data": [...]}</c> shape.</summary>
/// <typeparam name="T">The items.</typeparam>
/// <param name="Object">Always <c>list</c>.</param>
/// <param name="Data">The items.</param>
public sealed record ObjectList<T>(string Object, IReadOnlyList<T> Data);

/// <summary>The answer to a delete: the id, the kind of object, and <c>deleted: true</c>.</summary>
/// <param name="Id">The id.</param>
/// <param name="Object">The kind.</param>
/// <param name="Deleted">Always true.</param>
public sealed record DeletedObject(string Id, string Object, bool Deleted);

/// <summary>A list in the <c>{"data": [...]}</c> shape, without <c>object</c>.</summary>
/// <typeparam name="T">The items.</typeparam>
/// <param name="Data">The items.</param>
public sealed record DataList<T>(IReadOnlyList<T> Data);

/// <summary>The answer of <c>GET /health</c>.</summary>
/// <param name="Status">Always <c>ok</c>.</param>
public sealed record HealthObject(string Status);
