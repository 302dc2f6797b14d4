// The browser session: the token is traded once for an HttpOnly, SameSite=Strict cookie
// (POST /api/session), which then goes with every fetch and EventSource of this origin by
// itself. No script keeps the token: not in sessionStorage, not in a stream URL.
//
// Why a cookie and not sessionStorage: EventSource cannot send headers, so a stored token
// would travel in every stream URL; and a script injected into the page could read a stored
// token and carry it away, but cannot read an HttpOnly cookie. See api/auth.py.

/**
 * The `?token=` the server printed, taken from the address bar at once (before anything can
 * leak it through history or a screen share) and removed with history.replaceState.
 * Returns it, or null when the address had none.
 */
export function takeTokenFromAddressBar() {
  const url = new URL(location.href);
  const token = url.searchParams.get("token");
  if (token === null) return null;
  url.searchParams.delete("token");
  history.replaceState(history.state, "", url.pathname + url.search + url.hash);
  return token.trim();
}

/** Trade `token` for the session cookie; true when the server took it. */
export async function login(token) {
  try {
    const resp = await fetch("/api/session", {
      method: "POST",
      headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
      cache: "no-store",
    });
    return resp.ok;
  } catch {
    return false; // unreachable: the next request will say so
  }
}

/** Log in with the address bar's token, if it has one. Resolves when done (either way). */
export async function adoptAddressBarToken() {
  const token = takeTokenFromAddressBar();
  return token ? login(token) : false;
}
