using System.Text.Json;
using System.Text.Json.Serialization;

namespace Atelier.Server.Errors;

// The shapes ErrorMapping writes, declared once for the OpenAPI document (component schemas
// MistralError and Problem). ErrorMapping builds its bodies as dictionaries so that the optional
// members are absent rather than null; WhenWritingNull says the same here. The OpenAPI conformance
// test (tests/e2e/openapi.e2e.mjs) validates real error answers against these schemas, so a member
// ErrorMapping adds or renames without changing these records fails it.

/// <summary>The error body on <c>/v1</c>: Mistral's shape, with FastAPI-style <c>detail</c> entries for validation problems.</summary>
/// <param name="Object">Always <c>error</c>.</param>
/// <param name="Message">What went wrong, for a person.</param>
/// <param name="Type">The error's code (<c>not_found</c>, <c>invalid_file</c>, ...): stable, for programs.</param>
/// <param name="Param">Always null (Mistral's field; Atelier names the field in <c>detail</c> and <c>problems</c>).</param>
/// <param name="Code">The HTTP status, as a string (<c>"404"</c>).</param>
/// <param name="Detail">One entry per validation problem, as the Mistral SDK's <c>HTTPValidationError</c> reads them; only on validation errors.</param>
/// <param name="Problems">The validation problems with their file, line and field; only on validation errors.</param>
/// <param name="TotalProblems">How many problems there were in all (<c>problems</c> may list only the first ones); only on validation errors.</param>
/// <param name="Derived">What derives from an artifact whose deletion was refused (409); only then.</param>
public sealed record MistralErrorBody(
    string Object,
    string Message,
    string Type,
    string? Param,
    string Code,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<ValidationDetailEntry>? Detail = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<ProblemEntry>? Problems = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] int? TotalProblems = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<DerivedEntry>? Derived = null);

/// <summary>The error body on everything but <c>/v1</c>: RFC 9457 problem details (<c>application/problem+json</c>) with Atelier's members.</summary>
/// <param name="Type">A URI naming the error's code: <c>https://atelier.dev/errors/{code}</c>.</param>
/// <param name="Title">The status's name (<c>Not found</c>).</param>
/// <param name="Status">The HTTP status.</param>
/// <param name="Detail">What went wrong, for a person.</param>
/// <param name="Instance">The request's path.</param>
/// <param name="Code">The error's code (<c>not_found</c>, <c>invalid_request</c>, ...): stable, for programs.</param>
/// <param name="Problems">The validation problems with their file, line and field; only on validation errors.</param>
/// <param name="TotalProblems">How many problems there were in all; only on validation errors.</param>
/// <param name="Derived">What derives from an artifact whose deletion was refused (409); only then.</param>
public sealed record ProblemBody(
    string Type,
    string Title,
    int Status,
    string Detail,
    string? Instance,
    string Code,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<ProblemEntry>? Problems = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] int? TotalProblems = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<DerivedEntry>? Derived = null);

/// <summary>One validation problem.</summary>
/// <param name="File">The file it is in, when the request had several.</param>
/// <param name="Line">The line of a JSONL file, from 1.</param>
/// <param name="Field">The field (<c>messages[2].role</c>).</param>
/// <param name="Message">What is wrong.</param>
public sealed record ProblemEntry(string? File, long? Line, string? Field, string Message);

/// <summary>A FastAPI-style validation entry (Mistral's <c>ValidationError</c>).</summary>
/// <param name="Loc">Where: <c>["body", "messages", 2, "role"]</c>, or <c>["body", "file", "line", 3, "messages"]</c>; strings and whole numbers.</param>
/// <param name="Msg">What is wrong.</param>
/// <param name="Type">Always <c>value_error</c>.</param>
public sealed record ValidationDetailEntry(IReadOnlyList<JsonElement> Loc, string Msg, string Type);

/// <summary>An artifact that derives from one whose deletion was refused.</summary>
/// <param name="Kind">Its kind (<c>dataset</c>, <c>fine_tuning_job</c>, <c>model</c>, ...).</param>
/// <param name="Id">Its id.</param>
public sealed record DerivedEntry(string Kind, string Id);
