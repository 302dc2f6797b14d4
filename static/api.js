// The REST client: JSON in and out, errors as ApiError with the server's message. Every
// request carries the tab's token as `Authorization: Bearer` (session.js); on a 401 the user is
// asked for it once, however many requests (and streams) are waiting.

import { setToken, token, withToken } from "./session.js";

/** An error answer from the API: `status`, `code` and the server's own `message`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let loginPrompt = null; // the pending prompt shared by every request that got a 401
let sessions = 0; // how many tokens were entered: a request sent with an older one needs no prompt
let askUser = defaultAsk;

/** Install the function that asks the user for a token: `(refused: bool) => Promise<string|null>`. */
export function setTokenPrompt(fn) {
  askUser = fn;
}

function defaultAsk(refused) {
  const text = refused ? "That token was refused. API token:" : "This server needs an API token:";
  return Promise.resolve(window.prompt(text));
}

/** The session generation: pass it to ensureSession after a 401. */
export function sessionGeneration() {
  return sessions;
}

/**
 * After a 401 on a request sent at session generation `seen`: ask for the token (once, however
 * many requests are waiting) and keep it. The prompt says "refused" when the tab already held a
 * token (the one that was just refused). Resolves to true when there is a new token to retry
 * with (a wrong one comes back here with its 401), false when the user gave up.
 */
export function ensureSession(seen) {
  if (sessions !== seen) return Promise.resolve(true);
  if (!loginPrompt) {
    loginPrompt = (async () => {
      const entered = ((await askUser(token() !== null)) || "").trim();
      if (!entered) return false;
      setToken(entered);
      sessions++;
      return true;
    })().finally(() => {
      loginPrompt = null;
    });
  }
  return loginPrompt;
}

/**
 * Send a request, asking for a token on a 401 until one works or the user gives up; resolves
 * to the Response (any status). Every call of the page goes through here, so the credentials
 * are handled in one place.
 */
async function send(method, path, { accept, body, signal }) {
  for (;;) {
    const seen = sessions;
    const headers = withToken({ Accept: accept });
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: "no-store",
    });
    if (resp.status === 401 && (await ensureSession(seen))) continue;
    return resp;
  }
}

/** The ApiError of an error answer: the server's JSON error, or the bare status. */
async function errorOf(resp, data = undefined) {
  if (data === undefined) {
    try {
      data = await resp.json();
    } catch {
      data = null; // not JSON: reported with the status
    }
  }
  const err = (data && data.error) || {};
  return new ApiError(resp.status, err.code || "http_error", err.message || `HTTP ${resp.status}`);
}

/**
 * Call the API. Resolves to the parsed JSON body (null for 204); rejects with ApiError on an
 * error status (after asking for a token on 401 until one works or the user gives up) and with
 * TypeError when the server cannot be reached.
 */
export async function api(method, path, body = undefined, { signal } = {}) {
  const resp = await send(method, path, { accept: "application/json", body, signal });
  if (resp.status === 204) return null;
  let data = null;
  try {
    data = await resp.json();
  } catch {
    /* not JSON: reported below with the status */
  }
  if (resp.ok) return data;
  throw await errorOf(resp, data);
}

/** GET `path` as a Blob (a download, such as output.log); rejects like `api`. */
export async function apiBlob(path, { signal } = {}) {
  const resp = await send("GET", path, { accept: "*/*", signal });
  if (resp.ok) return resp.blob();
  throw await errorOf(resp);
}
