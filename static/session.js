// The browser's credential: the server's token, kept in this tab's sessionStorage and sent as
// `Authorization: Bearer` by every request of the pages, streams included (they are read with
// fetch: sse.js). Nothing else carries it: no cookie, no URL.
//
// Why not a cookie (what the pages used before): a browser sends a cookie to every port of its
// host, because cookies ignore ports. Any other web server on 127.0.0.1 that the user visits (a
// dev server, another user's server) received the dashboard's cookie with every request and could
// replay it with curl, which sends no Origin for our checks to refuse. sessionStorage is kept per
// origin, port included, and per tab: no request to anything else ever carries the token.
//
// Why fetch and not EventSource for the streams: EventSource cannot send a header, so the token
// would have to travel in each stream URL, and a URL is copied into logs (ours masks it, but a
// reverse proxy's does not), the network panel and crash reports. A header is not.
//
// What sessionStorage does not protect against: a script running in the page could read it.
// None can: the pages' Content-Security-Policy allows only our own script files (no inline
// script, no other origin), and agent output is only ever inserted as text, never as markup.

const KEY = "agent-supervisor-token";

/** The token this tab holds for this server, or null. */
export function token() {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null; // storage disabled: the user is asked for the token when a request needs it
  }
}

/** Keep `value` as this tab's token (null forgets it). */
export function setToken(value) {
  try {
    if (value) sessionStorage.setItem(KEY, value);
    else sessionStorage.removeItem(KEY);
  } catch {
    /* storage disabled: the token is asked again on the next 401 */
  }
}

/** `headers` with `Authorization: Bearer <token>` added when this tab holds a token. */
export function withToken(headers = {}) {
  const value = token();
  return value ? { ...headers, Authorization: `Bearer ${value}` } : headers;
}

/**
 * The `?token=` the server printed, taken from the address bar at once (before anything can
 * leak it through history or a screen share), removed with history.replaceState and kept in
 * sessionStorage. Returns true when the address had one.
 */
export function adoptAddressBarToken() {
  const url = new URL(location.href);
  const value = url.searchParams.get("token");
  if (value === null) return false;
  url.searchParams.delete("token");
  history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  setToken(value.trim() || null);
  return Boolean(value.trim());
}
