// One SSE stream of the API, read with fetch() (so that it carries the tab's token as a header:
// see session.js) and parsed by sseparser.js, with an honest connection state.
//
// It reconnects the way EventSource does: after the server's `retry:` delay, with the
// `Last-Event-ID` header, so the server replays what was missed; it also drops any event whose
// id is not above the last one seen, so a replay that overlaps never shows a line twice.
//
// States: "connecting" (first attempt), "connected", "reconnecting" (waiting to try again),
// "done" (after `complete`, or a 204: not reopened by itself), "error" (the server refused the
// stream: `detail` has its message; call `retry()`), "closed".

import { ensureSession, sessionGeneration } from "./api.js";
import { withToken } from "./session.js";
import { SSEParser } from "./sseparser.js";

const EVENT_TYPES = new Set([
  "log",
  "extraction",
  "screen",
  "state",
  "complete",
  "agent_added",
  "agent_removed",
  "waiting_input",
]);

/** EventSource's default delay, used until the server says `retry:`. */
const DEFAULT_RETRY_MS = 3000;

export class StreamClient {
  /**
   * @param {string} path  the stream's path, e.g. `/api/agents/x/stream`
   * @param {object} handlers  `onEvent(envelope)`, `onReset(data)`, `onState(state, detail)`
   * @param {object} options  `endsOnComplete`: the agent stream ends after `complete`: true,
   *   or a function of the `complete` envelope saying whether it is the last one (the replay of
   *   an agent that ran several times has one per run, and only the newest run's ends it);
   *   `lastEventId`: resume after this id; `types`: a stream of other frames than the event
   *   log's (a screen stream: snapshot, diff, no_screen), each given to `onEvent(data, type)`
   *   as it comes, with no ids to resume from (such a stream starts afresh on each connection)
   */
  constructor(path, handlers, { endsOnComplete = false, lastEventId = 0, types = null } = {}) {
    this.path = path;
    this.handlers = handlers;
    this.endsOnComplete = endsOnComplete;
    this.types = types;
    this.lastId = lastEventId;
    this.retryMs = DEFAULT_RETRY_MS;
    this.state = "idle";
    this.detail = "";
    this.duplicates = 0;
    this.connections = 0; // responses that began (200), for the tests and the console
    this._run = null; // the current connection loop: {controller, stopped, wake}
  }

  open() {
    this._close();
    const run = { controller: null, stopped: false, wake: null };
    this._run = run;
    this._loop(run);
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
    const run = this._run;
    this._run = null;
    if (!run) return;
    run.stopped = true;
    run.controller?.abort();
    run.wake?.();
  }

  async _loop(run) {
    this._set(this.state === "idle" ? "connecting" : "reconnecting", "");
    while (!run.stopped) {
      const outcome = await this._connect(run);
      if (run.stopped || outcome === "stop") return;
      // The connection failed or the server ended the response: like EventSource, wait the
      // server's retry delay, then ask for what came after our last event.
      if (!this.detail) this._set("reconnecting", "connection lost");
      if (!(await this._pause(run))) return;
    }
  }

  /** One request. Resolves to "stop" (done, refused, or replaced) or "again" (reconnect). */
  async _connect(run) {
    run.controller = new AbortController();
    const headers = { Accept: "text/event-stream" };
    if (this.lastId > 0) headers["Last-Event-ID"] = String(this.lastId);
    const seen = sessionGeneration();
    let resp;
    try {
      resp = await fetch(this.path, {
        headers: withToken(headers),
        signal: run.controller.signal,
        cache: "no-store",
      });
    } catch {
      if (!run.stopped) this._set("reconnecting", "the server cannot be reached");
      return "again";
    }
    if (resp.status === 204) {
      this._set("done", ""); // nothing after our last event, and the agent is done
      return "stop";
    }
    if (resp.status === 401) {
      if (await ensureSession(seen)) return run.stopped ? "stop" : this._connect(run);
      this._set("error", "a valid API token is needed");
      return "stop";
    }
    if (resp.status !== 200) {
      let detail = `HTTP ${resp.status}`;
      try {
        const body = await resp.json();
        if (body && body.error && body.error.message) detail = body.error.message;
      } catch {
        /* not JSON: the status says it */
      }
      if (!run.stopped) this._set("error", detail);
      return "stop";
    }
    this.connections++;
    this._set("connected", "");
    const decoder = new TextDecoder("utf-8");
    let done = false;
    const parser = new SSEParser((frame) => {
      if (!run.stopped && !done) done = this._frame(frame);
    });
    try {
      const reader = resp.body.getReader();
      while (!done) {
        const chunk = await reader.read();
        if (chunk.done) break;
        parser.feed(decoder.decode(chunk.value, { stream: true }));
      }
      if (done) reader.cancel().catch(() => {});
      else parser.feed(decoder.decode(), true);
    } catch {
      /* the connection broke (or was aborted): reconnect below unless stopped */
    }
    if (run.stopped) return "stop";
    if (done) {
      // After `complete` the server ends the response; asking again would only get a 204.
      this._set("done", "");
      return "stop";
    }
    return "again";
  }

  /** Handle one frame; true when the stream is over (`complete` on an agent's stream). */
  _frame(frame) {
    if (frame.retry !== null) this.retryMs = frame.retry;
    if (frame.comment || frame.data === null) return false;
    const data = safeJson(frame.data);
    const type = frame.event;
    if (type === "connected") {
      this._set("connected", "");
      return false;
    }
    if (this.types) {
      if (this.types.has(type) && data) this.handlers.onEvent(data, type);
      return false;
    }
    if (type === "reset") {
      // After a reset the replay may start below our last id (the history was replaced): take
      // it from the start.
      this.lastId = 0;
      this.handlers.onReset?.(data || {});
      return false;
    }
    if (type === "error" && data && data.reason) {
      // slow_consumer: the server ends the response; we reconnect with our last id and lose
      // nothing.
      this._set("reconnecting", `dropped by the server (${data.reason})`);
      return false;
    }
    if (!EVENT_TYPES.has(type) && type !== "error") return false; // ping, and types to come
    if (!data) return false;
    const id = Number(data.id ?? frame.id);
    if (id && id <= this.lastId) {
      this.duplicates++;
      return false;
    }
    if (id) this.lastId = id;
    this.handlers.onEvent(data);
    if (data.type !== "complete") return false;
    return typeof this.endsOnComplete === "function" ? Boolean(this.endsOnComplete(data)) : this.endsOnComplete;
  }

  // Wait the server's retry delay before reconnecting; false if closed meanwhile.
  _pause(run) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(!run.stopped), this.retryMs);
      run.wake = () => {
        clearTimeout(timer);
        resolve(false);
      };
    });
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
