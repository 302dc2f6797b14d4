// The REST client: JSON in and out, errors as ApiError with the server's message, and the
// bearer token (asked for once on the first 401, kept in sessionStorage for the session).

export const TOKEN_KEY = "agent-supervisor.token";

/** An error answer from the API: `status`, `code` and the server's own `message`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let tokenPrompt = null; // the pending prompt shared by every request that got a 401
let askUser = defaultAsk;

/** Install the function that asks the user for a token: `(refused: bool) => Promise<string|null>`. */
export function setTokenPrompt(fn) {
  askUser = fn;
}

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch {
    return ""; // storage disabled: behave as if no token was set
  }
}

function setToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage disabled: the token lasts until the prompt comes again */
  }
}

function defaultAsk(refused) {
  const text = refused ? "That token was refused. API token:" : "This server needs an API token:";
  return Promise.resolve(window.prompt(text));
}

/**
 * Ask for a token once, however many requests are waiting for one. `failed` is the token that
 * was refused: if another caller already replaced it, no new prompt is needed. Resolves to
 * true when there is a new token to try.
 */
export function ensureToken(failed) {
  if (getToken() && getToken() !== failed) return Promise.resolve(true);
  if (!tokenPrompt) {
    tokenPrompt = askUser(Boolean(failed))
      .then((token) => {
        token = (token || "").trim();
        if (token) setToken(token);
        return Boolean(token);
      })
      .finally(() => {
        tokenPrompt = null;
      });
  }
  return tokenPrompt;
}

/** `url` with `?token=` added when a token is set (EventSource cannot send headers). */
export function withToken(url) {
  const token = getToken();
  if (!token) return url;
  const u = new URL(url, location.href);
  u.searchParams.set("token", token);
  return u.pathname + u.search;
}

/**
 * Call the API. Resolves to the parsed JSON body (null for 204); rejects with ApiError on an
 * error status (after asking for a token on 401 until one works or the user gives up) and with
 * TypeError when the server cannot be reached.
 */
export async function api(method, path, body = undefined, { signal } = {}) {
  for (;;) {
    const token = getToken();
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
    });
    if (resp.status === 401 && (await ensureToken(token))) continue;
    if (resp.status === 204) return null;
    let data = null;
    try {
      data = await resp.json();
    } catch {
      /* not JSON: reported below with the status */
    }
    if (resp.ok) return data;
    const err = (data && data.error) || {};
    throw new ApiError(resp.status, err.code || "http_error", err.message || `HTTP ${resp.status}`);
  }
}
