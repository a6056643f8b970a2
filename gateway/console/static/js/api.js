// The gateway's API, called with the signed-in user's own key or JWT. The credential lives
// in this tab's session storage only: never in a URL, a cookie or local storage.

const CREDENTIAL = "valuechain.credential";

export function credential() {
  return sessionStorage.getItem(CREDENTIAL);
}

export function setCredential(value) {
  sessionStorage.setItem(CREDENTIAL, value);
}

export function forgetCredential() {
  sessionStorage.removeItem(CREDENTIAL);
}

export class ApiError extends Error {
  constructor(status, body) {
    const detail = body && (typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail ?? body));
    super(`${status}${body && body.error ? " " + body.error : ""}: ${detail ?? "no answer"}`);
    this.status = status;
    this.body = body;
  }
}

// `query` is an object; entries that are undefined, null or "" are left out.
export function withQuery(path, query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query || {})) {
    if (value === undefined || value === null || value === "") continue;
    for (const item of Array.isArray(value) ? value : [value]) params.append(name, String(item));
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

// fetch() a gateway path; returns the parsed JSON (null for an empty answer), or throws ApiError.
export async function api(path, { method = "GET", query, json, body, headers = {}, signal, raw = false } = {}) {
  const init = { method, headers: { ...headers }, signal };
  const token = credential();
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  const answer = await fetch(withQuery(path, query), init);
  if (raw && answer.ok) return answer;
  const text = await answer.text();
  let parsed = null;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = { error: "not_json", detail: text.slice(0, 300) };
    }
  }
  if (!answer.ok) {
    if (answer.status === 401) window.dispatchEvent(new CustomEvent("console:signed-out"));
    throw new ApiError(answer.status, parsed);
  }
  return parsed;
}

// Every item of a cursor-paginated list (`items`, `next_cursor`), up to `max` items.
export async function apiAll(path, query = {}, max = 1000) {
  const items = [];
  let cursor;
  do {
    const page = await api(path, { query: { ...query, cursor } });
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items.slice(0, max);
}
