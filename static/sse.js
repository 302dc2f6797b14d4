// One SSE stream of the API, on top of EventSource, with an honest connection state.
//
// EventSource reconnects by itself and sends Last-Event-ID, so the server replays what was
// missed; we still drop any event whose id is not above the last one seen, so a replay that
// overlaps (a manual retry, a proxy that repeats) never shows a line twice.
//
// States: "connecting" (first attempt), "connected", "reconnecting" (EventSource is retrying),
// "done" (after `complete`: closed on purpose, not reopened), "error" (EventSource gave up,
// e.g. a non-200 answer: `detail` says why; call `retry()`).

import { ensureSession, sessionGeneration } from "./api.js";

const EVENT_TYPES = [
  "log",
  "extraction",
  "state",
  "complete",
  "agent_added",
  "agent_removed",
];

export class StreamClient {
  /**
   * @param {string} path  the stream's path, e.g. `/api/agents/x/stream`
   * @param {object} handlers  `onEvent(envelope)`, `onReset(data)`, `onState(state, detail)`
   * @param {object} options  `endsOnComplete`: the agent stream ends after `complete`
   */
  constructor(path, handlers, { endsOnComplete = false, lastEventId = 0 } = {}) {
    this.path = path;
    this.handlers = handlers;
    this.endsOnComplete = endsOnComplete;
    this.lastId = lastEventId;
    this.state = "idle";
    this.detail = "";
    this.es = null;
    this.duplicates = 0;
    this._reopened = false;
  }

  open() {
    this._close();
    const url = new URL(this.path, location.href);
    // A fresh EventSource has no Last-Event-ID of its own: pass ours in the query.
    if (this.lastId > 0) url.searchParams.set("last_event_id", String(this.lastId));
    const es = new EventSource(url.pathname + url.search); // the session cookie goes along
    this.es = es;
    this._set(this.state === "idle" ? "connecting" : "reconnecting", "");
    es.addEventListener("open", () => this.es === es && this._set("connected", ""));
    es.addEventListener("connected", () => {
      if (this.es !== es) return;
      this._reopened = false;
      this._set("connected", "");
    });
    for (const type of EVENT_TYPES) {
      es.addEventListener(type, (e) => this.es === es && this._event(e));
    }
    es.addEventListener("reset", (e) => {
      if (this.es !== es) return;
      // After a reset the replay may start below our last id (the history was replaced): take
      // it from the start.
      this.lastId = 0;
      this.handlers.onReset?.(safeJson(e.data) || {});
    });
    // `error` is both EventSource's own failure event and the server's `event: error`.
    es.addEventListener("error", (e) => {
      if (this.es !== es) return;
      if (typeof e.data === "string") {
        const data = safeJson(e.data);
        if (data && data.reason) {
          // slow_consumer: the server ends the response; EventSource reconnects with its
          // Last-Event-ID and loses nothing.
          this._set("reconnecting", `dropped by the server (${data.reason})`);
        } else if (data) {
          this._event(e); // an agent's `error` event (e.g. could not be started)
        }
        return;
      }
      if (es.readyState === EventSource.CONNECTING) {
        this._set("reconnecting", this.detail || "connection lost");
      } else if (this.state !== "done") {
        this._failed(es);
      }
    });
  }

  /** Open again from the last event seen (after `error`, or to follow a new run after `done`). */
  retry() {
    this.open();
  }

  /** Close for good (another agent was selected, or the page goes away). */
  close() {
    this._close();
    this._set("closed", "");
  }

  _close() {
    if (this.es) this.es.close();
    this.es = null;
  }

  _event(e) {
    const env = safeJson(e.data);
    if (!env) return;
    const id = Number(env.id ?? e.lastEventId);
    if (id && id <= this.lastId) {
      this.duplicates++;
      return;
    }
    if (id) this.lastId = id;
    this.handlers.onEvent(env);
    if (env.type === "complete" && this.endsOnComplete) {
      // The server ends the response after `complete`; closing now keeps EventSource from
      // asking again (it would get a 204).
      this._close();
      this._set("done", "");
    }
  }

  // EventSource gave up (a non-200 answer). It does not say why: ask the same URL with fetch,
  // read the status and the JSON error, and abort if it turns out to work now.
  async _failed(es) {
    this._close();
    this._set("error", "the stream was refused");
    const probe = new AbortController();
    let detail = "the stream was refused";
    try {
      const seen = sessionGeneration();
      const url = new URL(this.path, location.href);
      if (this.lastId > 0) url.searchParams.set("last_event_id", String(this.lastId));
      const resp = await fetch(url.pathname + url.search, {
        headers: { Accept: "text/event-stream" },
        signal: probe.signal,
        cache: "no-store",
      });
      if (resp.status === 200) {
        probe.abort();
        detail = "";
      } else if (resp.status === 204) {
        this._set("done", "");
        return;
      } else if (resp.status === 401) {
        if (await ensureSession(seen)) {
          this.open();
          return;
        }
        detail = "a valid API token is needed";
      } else {
        const body = safeJson(await resp.text());
        const err = body && body.error;
        detail = err ? err.message : `HTTP ${resp.status}`;
      }
    } catch (exc) {
      if (exc.name !== "AbortError") detail = "the server cannot be reached";
    }
    if (this.es === null && this.state === "error") {
      // It works now: go on, once. If EventSource keeps failing where fetch succeeds, say so.
      if (detail === "" && !this._reopened) {
        this._reopened = true;
        this.open();
      } else {
        this._set("error", detail || "EventSource could not read the stream");
      }
    }
  }

  _set(state, detail) {
    if (state === this.state && detail === this.detail) return;
    this.state = state;
    this.detail = detail;
    this.handlers.onState?.(state, detail);
  }
}

function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
