// The console's one way to call Atelier. The key lives in sessionStorage (this tab only, gone when
// it closes), goes out as an Authorization header, and is never put in a URL or written to the console.
const KEY = 'atelier.apiKey';

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  set(key) { sessionStorage.setItem(KEY, key); },
  clear() { sessionStorage.removeItem(KEY); },
};

/** An error answer: its status and the message the server gave (Mistral's or RFC 9457's shape). */
export class ApiError extends Error {
  constructor(status, body) {
    const message = typeof body === 'object' && body !== null
      ? (typeof body.detail === 'string' ? body.detail : body.message ?? body.title)
      : body;
    super(message || `HTTP ${status}`);
    this.status = status;
    this.body = body;
    // Line-level problems of an upload or a body: [{ line, field, message }].
    this.problems = (body && Array.isArray(body.problems)) ? body.problems : [];
  }
}

/** The Authorization header of the signed-in key, for the few calls that read a response as a stream. */
export const authorization = () => ({ Authorization: `Bearer ${session.key}` });

let onUnauthorized = () => {};
/** What to do when the key stops working (revoked, or a server restarted with another key). */
export function whenUnauthorized(handler) { onUnauthorized = handler; }

/** Calls the API; returns the parsed JSON (or text), throws ApiError on an error status. */
export async function api(path, { method = 'GET', json, form, signal, raw = false, accept = 'application/json' } = {}) {
  const headers = { Accept: accept };
  const key = session.key;
  if (key) headers.Authorization = `Bearer ${key}`;
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  const response = await fetch(path, { method, headers, body, signal, cache: 'no-store', credentials: 'omit' });
  if (raw && response.ok) return response;
  const text = await response.text();
  let data = text;
  if (text && (response.headers.get('content-type') ?? '').includes('json')) {
    try { data = JSON.parse(text); } catch { data = text; }
  }
  if (!response.ok) {
    if (response.status === 401) onUnauthorized();
    throw new ApiError(response.status, data);
  }
  return data;
}

/**
 * Calls an endpoint that newer servers have: null when this server does not know it (404 or 405
 * for the route itself), so a page can say "not available" instead of failing.
 */
export async function optional(path, options) {
  try {
    return await api(path, options);
  } catch (e) {
    if (e instanceof ApiError && (e.status === 404 || e.status === 405) && !isResourceNotFound(e)) return null;
    throw e;
  }
}

// Atelier answers a route it does not have with "No route with id '/path' was found."; any other
// 404 (a model that does not exist) is an answer of a route it has.
function isResourceNotFound(e) {
  return e.status === 404 && !/^No route /.test(e.message);
}

/** Reads a streamed chat completion (server-sent events), calling onDelta with each piece of text. */
export async function streamChat(request, onDelta, signal) {
  const response = await api('/v1/chat/completions', { method: 'POST', json: { ...request, stream: true }, signal, raw: true, accept: 'text/event-stream' });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let finish = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, end).trim();
      buffer = buffer.slice(end + 1);
      if (!line.startsWith('data:')) continue;
      const payload = line.slice(5).trim();
      if (payload === '[DONE]') return finish;
      const chunk = JSON.parse(payload);
      const choice = chunk.choices?.[0];
      if (choice?.delta?.content) onDelta(choice.delta.content);
      if (choice?.finish_reason) finish = choice.finish_reason;
    }
  }
  return finish;
}
