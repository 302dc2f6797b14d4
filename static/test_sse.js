// The SSE test page (test_sse.html): one stream read with fetch() and parsed here, so that the
// raw frames can be shown as they arrived. See the comment at the top of test_sse.html.

import { adoptAddressBarToken, setToken, withToken } from "./session.js";
import { SSEParser } from "./sseparser.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const ANSI_RE = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[ -/]*[0-~]|[\x00-\x08\x0a-\x1f\x7f-\x9f]/g;

let session = null; // the current connection loop, or null
const counts = { events: 0, lines: 0, extractions: 0, reconnects: 0 };
const logRows = new Map(); // "run:line_num" -> row element (partials are replaced)

// ------------------------------------------------------------ the connection loop

function streamPath(agent) {
  return agent ? `/api/agents/${encodeURIComponent(agent)}/stream` : "/api/stream";
}

function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status-text").textContent = text;
  const active = state === "connecting" || state === "connected" || state === "reconnecting";
  $("connect").disabled = active;
  $("disconnect").disabled = !active;
}

/** Connect and keep reconnecting (with Last-Event-ID) until complete, a 204, or disconnect. */
async function run(s) {
  let first = true;
  while (!s.stopped) {
    setStatus(first ? "connecting" : "reconnecting", first ? "connecting…" : `reconnecting (Last-Event-ID ${s.lastEventId || "none"})…`);
    const headers = { Accept: "text/event-stream" };
    if (s.lastEventId) headers["Last-Event-ID"] = s.lastEventId;
    s.controller = new AbortController();
    let resp;
    try {
      resp = await fetch(s.path, { headers: withToken(headers), signal: s.controller.signal, cache: "no-store" });
    } catch (err) {
      if (s.stopped) return;
      note(`connection failed: ${err.message}`);
      if (!(await pause(s))) return;
      first = false;
      counts.reconnects++;
      renderCounts();
      continue;
    }
    if (resp.status === 204) {
      note("204 No Content: nothing more to send, not reconnecting");
      setStatus("done", "done");
      return;
    }
    if (resp.status !== 200) {
      let message = `HTTP ${resp.status}`;
      try {
        const body = await resp.json();
        if (body && body.error) message = `${resp.status} ${body.error.code}: ${body.error.message}`;
      } catch { /* not JSON */ }
      note(message, true);
      setStatus("error", message);
      return;
    }
    setStatus("connected", `connected to ${s.path}`);
    const reader = resp.body.getReader();
    const decoder = new TextDecoder("utf-8");
    const parser = new SSEParser((frame) => onFrame(s, frame));
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        parser.feed(decoder.decode(value, { stream: true }));
      }
      parser.feed(decoder.decode(), true);
    } catch (err) {
      if (s.stopped) return;
      note(`connection lost: ${err.message}`);
      s.complete = false; // cut short, maybe before the last run's complete: ask for the rest
    }
    if (s.stopped) return;
    if (s.complete) {
      note("complete: the stream is over, not reconnecting");
      setStatus("done", "done (complete)");
      return;
    }
    note("the server ended the response");
    if (!(await pause(s))) return;
    first = false;
    counts.reconnects++;
    renderCounts();
  }
}

// Wait the server's retry delay before reconnecting; false if disconnected meanwhile.
function pause(s) {
  setStatus("reconnecting", `reconnecting in ${(s.retry / 1000).toFixed(1)} s…`);
  return new Promise((resolve) => {
    s.wake = () => resolve(false);
    setTimeout(() => resolve(!s.stopped), s.retry);
  });
}

function connect() {
  disconnect();
  const agent = $("agent").value.trim();
  const token = $("token").value.trim();
  if (token) setToken(token); // kept for this tab, like the dashboard's
  $("token").value = "";
  const s = { path: streamPath(agent), lastEventId: "", retry: 3000, stopped: false, complete: false, controller: null, wake: null };
  session = s;
  const url = new URL(location.href);
  url.searchParams.set("agent", agent);
  history.replaceState(null, "", url);
  run(s);
}

function disconnect() {
  const s = session;
  if (!s) return;
  s.stopped = true;
  if (s.controller) s.controller.abort();
  if (s.wake) s.wake();
  session = null;
  setStatus("idle", "disconnected");
}

// ------------------------------------------------------------ frames -> panels

function onFrame(s, frame) {
  if (frame.id !== null) s.lastEventId = frame.id;
  if (frame.retry !== null) s.retry = frame.retry;
  addRaw(frame);
  if (frame.comment || frame.data === null) return;
  counts.events++;
  let payload = null;
  try { payload = JSON.parse(frame.data); } catch { /* shown raw only */ }
  const type = frame.event;
  const d = (payload && payload.data) || {};
  const time = payload && payload.timestamp ? payload.timestamp.slice(11, 23) : "";
  if (type === "log") {
    addLog(d);
  } else if (type === "extraction") {
    counts.extractions++;
    addItem("extractions", time, d.name, String(d.value), `line ${d.line_num}`, "");
  } else if (type === "state") {
    const extra = [d.previous ? `from ${d.previous}` : "", d.pid ? `pid ${d.pid}` : "", d.exit_code !== null && d.exit_code !== undefined ? `exit ${d.exit_code}` : "", d.signal || "", d.reason || ""].filter(Boolean).join(" · ");
    addItem("states", time, `${payload.agent_name}: ${d.state}`, "", extra, "state");
  } else if (type === "complete") {
    if (s.path !== "/api/stream") {
      // The server ends the response after the complete of an agent that is done: then do not
      // reconnect (it would only answer 204). Read on until it does: the history of an agent
      // that ran several times has a complete per run, and the runs after the first follow.
      s.complete = true;
    }
    addItem("states", time, `${payload.agent_name}: complete`, d.state, `exit ${d.exit_code ?? "–"} · ${d.lines} lines · ${d.extractions} extractions · ${d.duration_s} s`, "state");
  } else if (type === "error") {
    addItem("states", time, "error", payload.reason || d.message || d.code || frame.data, "", "bad");
  } else if (type === "reset") {
    addItem("states", "", "reset", `missed ${payload.missed}`, `first available ${payload.first_available ?? "–"}`, "bad");
  } else if (type === "connected") {
    addItem("states", "", "connected", payload ? `client ${payload.client_id}` : "", payload ? `last event id ${payload.last_event_id ?? "–"}` : "", "note");
  } else if (type === "agent_added") {
    addItem("states", time, `${payload.agent_name}: added`, "", "", "note");
  } else if (type === "agent_removed") {
    addItem("states", time, `${d.name || payload.agent_name}: removed`, "", "", "note");
  } else if (type === "screen") {
    const rows = (d.text || []).filter((row) => row.trim()).length;
    addItem("states", time, `${payload.agent_name}: screen settled`, `${d.cols}×${d.rows}, ${rows} rows with text`, `seq ${d.seq}${d.final ? " · final" : ""}`, "note");
  }
  renderCounts();
}

function limit() {
  return Number($("limit").value);
}

// Append to a panel: trim it to the history limit, and follow the bottom if the user is there.
function append(id, el) {
  const body = $(id);
  const stick = $("autoscroll").checked && body.scrollHeight - body.scrollTop - body.clientHeight < 30;
  const empty = body.querySelector(".empty");
  if (empty) empty.remove();
  body.appendChild(el);
  while (body.childElementCount > limit()) {
    const first = body.firstElementChild;
    if (first.dataset.key) logRows.delete(first.dataset.key);
    first.remove();
  }
  $(`n-${id === "extractions" ? "extraction" : id === "states" ? "state" : id}`).textContent = `${body.childElementCount}`;
  if (stick) body.scrollTop = body.scrollHeight;
}

function addRaw(frame) {
  const el = document.createElement("pre");
  el.className = "frame";
  el.dataset.event = frame.comment ? "comment" : frame.event;
  if (frame.id !== null) el.dataset.id = frame.id;
  const t = document.createElement("span");
  t.className = "t";
  t.textContent = new Date().toTimeString().slice(0, 8);
  el.append(t, frame.raw.replace(/(\r\n|\r|\n)+$/, ""));
  append("raw", el);
}

function addLog(d) {
  const key = `${d.run}:${d.line_num}`;
  let row = logRows.get(key);
  if (!d.partial) counts.lines++;
  const text = d.plain !== undefined ? d.plain : String(d.line).replace(ANSI_RE, "");
  if (!row) {
    row = document.createElement("div");
    row.dataset.key = key;
    const ln = document.createElement("span");
    ln.className = "ln";
    ln.textContent = d.line_num;
    const tx = document.createElement("span");
    tx.className = "tx";
    row.append(ln, tx);
    logRows.set(key, row);
    append("log", row);
  }
  row.className = "line" + (d.partial ? " partial" : "");
  row.lastChild.textContent = text;
}

function addItem(id, time, key, value, meta, cls) {
  const el = document.createElement("div");
  el.className = `item ${cls}`;
  const parts = [["t", time], ["k", key], ["v", value ? ` ${value}` : ""], ["m", meta ? `  ${meta}` : ""]];
  for (const [c, text] of parts) {
    if (!text) continue;
    const span = document.createElement("span");
    span.className = c;
    span.textContent = text;
    el.appendChild(span);
  }
  append(id, el);
}

function note(text, bad = false) {
  addItem("states", new Date().toTimeString().slice(0, 8), "connection", text, "", bad ? "bad" : "note");
}

function renderCounts() {
  $("count-events").textContent = counts.events.toLocaleString("en-US");
  $("count-lines").textContent = counts.lines.toLocaleString("en-US");
  $("count-extractions").textContent = counts.extractions.toLocaleString("en-US");
  $("count-reconnects").textContent = counts.reconnects.toLocaleString("en-US");
}

function clearPanels() {
  for (const [id, text] of [["raw", "Frames appear here exactly as received."], ["log", "No lines yet."], ["extractions", "No extractions yet."], ["states", "No state changes yet."]]) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = text;
    $(id).replaceChildren(p);
  }
  for (const n of ["raw", "log", "extraction", "state"]) $(`n-${n}`).textContent = "";
  logRows.clear();
  Object.keys(counts).forEach((k) => (counts[k] = 0));
  renderCounts();
}

// ------------------------------------------------------------ wiring

$("connect-form").addEventListener("submit", (e) => {
  e.preventDefault();
  clearPanels();
  connect();
});
$("disconnect").addEventListener("click", disconnect);
$("clear").addEventListener("click", clearPanels);
$("agent").value = params.get("agent") || "";
if (params.get("limit")) {
  const opt = document.createElement("option");
  opt.textContent = params.get("limit");
  $("limit").appendChild(opt);
  $("limit").value = params.get("limit");
}
window.sseTestPage = { counts, get session() { return session; } }; // for tests and the console
// The link may carry ?token= (as the server prints it): keep it for this tab, then connect.
adoptAddressBarToken();
if (params.get("connect") === "1") connect();
