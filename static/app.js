// The dashboard: the agent list (live from /api/stream), the start form, the selected agent's
// log viewer (its own stream), input, extractions and stats. Wiring only; the logic lives in
// ansi.js, linebuffer.js, logview.js, sse.js and api.js.

import { api, ApiError, setTokenPrompt } from "./api.js";
import { LogView } from "./logview.js";
import { adoptAddressBarToken } from "./session.js";
import { StreamClient } from "./sse.js";
import { clock, count, h, parseExtractors, shellSplit, stateLabel } from "./util.js";

const $ = (id) => document.getElementById(id);

const STATS_EVERY_MS = 2000;
const EXTRACTIONS_LIMIT = 1000;
const ACTIVE = new Set(["starting", "running", "stopping", "backoff"]);
const CAN_STOP = new Set(["starting", "running", "backoff"]);
const CAN_TYPE = new Set(["starting", "running"]);

/** name -> agent (the REST shape, kept current by the all-agents stream); `_seen` is the id
 * of the newest event reflected in it. */
const agents = new Map();
let selected = null;
let viewerStream = null;
let globalStream = null;

const view = new LogView({
  scroller: $("term-scroll"),
  lines: $("term-lines"),
  placeholder: $("term-placeholder"),
  resume: $("resume"),
  status: $("line-status"),
});

// For the console and the browser tests: read-only handles on the live objects.
const debug = {
  agents,
  view,
  tokenPrompts: 0,
  loggedInFromAddress: false,
  get viewerStream() {
    return viewerStream;
  },
  get globalStream() {
    return globalStream;
  },
};
window.agentSupervisor = debug;

// ---------------------------------------------------------------- token prompt

setTokenPrompt((refused) => {
  const dialog = $("token-dialog");
  debug.tokenPrompts++;
  $("token-message").textContent = refused
    ? "That token was refused. Enter the server's API token."
    : "This server needs an API token.";
  $("token-input").value = "";
  return new Promise((resolve) => {
    // Enter in the field means "use it" (implicit submission would pick the first button).
    $("token-input").onkeydown = (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        dialog.close("ok");
      }
    };
    dialog.addEventListener(
      "close",
      () => resolve(dialog.returnValue === "ok" ? $("token-input").value : null),
      { once: true },
    );
    dialog.showModal();
  });
});

// ---------------------------------------------------------------- connection badges

function renderConn(el, state, detail) {
  const labels = {
    connecting: "connecting…",
    connected: "live",
    reconnecting: "reconnecting…",
    done: "done",
    error: "error",
    closed: "",
  };
  el.dataset.state = state;
  el.hidden = state === "closed";
  let text = labels[state] ?? state;
  if (detail) text += ` — ${detail}`;
  el.querySelector(".conn-text").textContent = text;
  el.querySelector(".conn-retry").hidden = state !== "error";
}

// ---------------------------------------------------------------- agents list

async function refreshAgents() {
  const { agents: list } = await api("GET", "/api/agents");
  const snapshotMax = Math.max(0, ...list.map((a) => a.last_event_id || 0));
  const names = new Set(list.map((a) => a.name));
  for (const a of list) {
    const mine = agents.get(a.name);
    // The stream may already be ahead of this snapshot for some agents: keep what is newer.
    if (!mine || (a.last_event_id || 0) >= mine._seen) agents.set(a.name, { ...a, _seen: a.last_event_id || 0 });
  }
  for (const [name, a] of agents) {
    if (!names.has(name) && a._seen <= snapshotMax) agents.delete(name);
  }
  renderAgents();
  renderViewerHead();
  return snapshotMax;
}

function onGlobalEvent(env) {
  const d = env.data || {};
  if (env.type === "agent_added") {
    agents.set(d.agent.name, { ...d.agent, _seen: env.id });
  } else if (env.type === "agent_removed") {
    agents.delete(d.name ?? env.agent_name);
  } else {
    const a = agents.get(env.agent_name);
    if (!a || env.id <= a._seen) return; // already in the snapshot
    a._seen = env.id;
    a.last_event_id = env.id;
    if (env.type === "state") {
      if (d.state === "starting") Object.assign(a, { lines: 0, extractions: 0, exit_code: null, signal: null });
      if (d.command) a.command = d.command;
      Object.assign(a, pick(d, ["state", "run", "pid", "exit_code", "signal", "reason"]));
      if (env.agent_name === selected && d.state === "starting" && viewerStream?.state === "done") {
        viewerStream.retry(); // a new run of the agent we are watching: follow it
      }
    } else if (env.type === "complete") {
      Object.assign(a, pick(d, ["state", "exit_code", "signal", "duration_s", "lines", "extractions", "reason"]));
    } else if (env.type === "log") {
      if (d.run === a.run && !d.partial) a.lines = Math.max(a.lines || 0, d.line_num);
    } else if (env.type === "extraction") {
      if (d.run === a.run) a.extractions = (a.extractions || 0) + 1;
    } else {
      return;
    }
  }
  scheduleAgentsRender();
}

function pick(obj, keys) {
  const out = {};
  for (const k of keys) if (k in obj) out[k] = obj[k];
  return out;
}

let agentsFrame = 0;
function scheduleAgentsRender() {
  if (!agentsFrame) {
    agentsFrame = requestAnimationFrame(() => {
      agentsFrame = 0;
      renderAgents();
      renderViewerHead();
    });
  }
}

function renderAgents() {
  const list = $("agent-list");
  const names = [...agents.keys()].sort((a, b) => a.localeCompare(b));
  const items = new Map([...list.children].map((li) => [li.dataset.name, li]));
  names.forEach((name, i) => {
    const a = agents.get(name);
    let li = items.get(name);
    if (!li) {
      li = h("li", { className: "agent", dataset: { name } },
        h("button", { type: "button", className: "agent-select", onclick: () => select(name) },
          h("span", { className: "agent-name" }, name),
          h("span", { className: "badge" }),
          h("span", { className: "agent-meta" })));
    }
    items.delete(name);
    if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
    li.classList.toggle("selected", name === selected);
    li.dataset.state = a.state;
    setBadge(li.querySelector(".badge"), a);
    const meta = [`run ${a.run ?? "–"}`, `${count(a.lines ?? 0)} lines`];
    if (a.extractions) meta.push(`${count(a.extractions)} extracted`);
    if (a.usage) meta.push(usageText(a.usage));
    li.querySelector(".agent-meta").textContent = meta.join(" · ");
  });
  for (const li of items.values()) li.remove();
  $("agent-count").textContent = String(agents.size);
  $("agents-empty").hidden = agents.size > 0;
}

// What the agent's whole process tree costs, from the server's sampler (GET /api/agents, /api/sse/stats).
function usageText(u) {
  const cpu = u.cpu_percent == null ? "–" : `${u.cpu_percent.toFixed(0)}%`;
  return `CPU ${cpu} · ${(u.rss_bytes / 1048576).toFixed(0)} MB · ${u.processes} proc${u.processes === 1 ? "" : "s"}`;
}

function setBadge(el, agent) {
  el.dataset.state = agent.state;
  el.textContent = stateLabel(agent);
  el.classList.toggle("bad", agent.state === "exited" && (agent.exit_code || agent.signal) ? true : false);
  el.title = agent.reason ? `${agent.state}: ${agent.reason}` : agent.state;
}

// ---------------------------------------------------------------- the selected agent

function select(name) {
  if (viewerStream) viewerStream.close();
  selected = name;
  history.replaceState(null, "", `#agent=${encodeURIComponent(name)}`);
  view.clear("Waiting for output…");
  extractions.clear();
  $("filter").value = "";
  view.setFilter("");
  showNotice("");
  showInputError("");
  viewerStream = new StreamClient(
    `/api/agents/${encodeURIComponent(name)}/stream`,
    {
      onEvent: onViewerEvent,
      onReset: (data) => {
        view.clear("Waiting for output…");
        extractions.clear();
        if (data.missed) {
          showNotice(`${count(data.missed)} older events are no longer kept by the server; showing what it has.`);
        }
      },
      onState: (state, detail) => renderConn($("viewer-conn"), state, detail),
    },
    { endsOnComplete: true },
  );
  viewerStream.open();
  renderAgents();
  renderViewerHead();
}

function onViewerEvent(env) {
  const d = env.data || {};
  if (env.type === "log") view.addLog(env);
  else if (env.type === "extraction") extractions.add(env);
  else if (env.type === "error") showNotice(d.message || d.code || "error", true);
  else if (env.type === "state" && d.state === "starting") showNotice("");
}

function renderViewerHead() {
  const a = selected && agents.get(selected);
  $("viewer-title").textContent = selected || "No agent selected";
  document.title = selected ? `${selected} · agent-supervisor` : "agent-supervisor";
  const badge = $("viewer-badge");
  badge.hidden = !a;
  if (a) setBadge(badge, a);
  const meta = [];
  if (a) {
    if (a.pid && ACTIVE.has(a.state)) meta.push(`pid ${a.pid}`);
    if (a.run) meta.push(`run ${a.run}`);
    if (a.profile) meta.push(`profile ${a.profile}`);
    if (a.command) meta.push(a.command.join(" "));
  } else if (selected) {
    meta.push("not on the server (removed?)");
  }
  const metaEl = $("viewer-meta");
  metaEl.textContent = meta.join(" · ");
  metaEl.title = metaEl.textContent;
  $("stop-btn").disabled = !a || !CAN_STOP.has(a.state);
  $("restart-btn").disabled = !a;
  const canType = Boolean(a && CAN_TYPE.has(a.state));
  $("input-text").disabled = !canType;
  $("input-btn").disabled = !canType;
  $("input-text").placeholder = canType
    ? "Send a line to the agent (Enter)"
    : a ? `The agent is ${a.state}` : "Select an agent";
}

function showNotice(text, isError = false) {
  const el = $("viewer-notice");
  el.textContent = text;
  el.hidden = !text;
  el.classList.toggle("error", isError);
}

async function control(action) {
  if (!selected) return;
  const name = selected;
  try {
    const agent = await api("POST", `/api/agents/${encodeURIComponent(name)}/${action}`);
    if (agent && agent.name) {
      const mine = agents.get(name);
      // Only the REST answer's newer facts: the stream may be ahead already.
      if (!mine || (agent.last_event_id || 0) >= mine._seen) agents.set(name, { ...agent, _seen: agent.last_event_id || 0 });
      scheduleAgentsRender();
    }
    showNotice("");
  } catch (err) {
    showNotice(`${action}: ${err.message}`, true);
  }
}

$("stop-btn").addEventListener("click", () => control("stop"));
$("restart-btn").addEventListener("click", () => control("restart"));
$("viewer-conn").querySelector(".conn-retry").addEventListener("click", () => viewerStream?.retry());
$("filter").addEventListener("input", (e) => view.setFilter(e.target.value));

// ---------------------------------------------------------------- input

function showInputError(text) {
  const el = $("input-error");
  el.textContent = text;
  el.hidden = !text;
}

$("input-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!selected) return;
  const input = $("input-text");
  const text = input.value;
  try {
    await api("POST", `/api/agents/${encodeURIComponent(selected)}/input`, { data: `${text}\n` });
    input.value = "";
    showInputError("");
  } catch (err) {
    showInputError(err.message);
  }
});

// ---------------------------------------------------------------- extractions

const extractions = {
  pending: [],
  total: 0,
  frame: 0,
  clear() {
    this.pending = [];
    this.total = 0;
    $("extractions").tBodies[0].replaceChildren();
    this.render();
  },
  add(env) {
    this.pending.push(env);
    if (this.pending.length > EXTRACTIONS_LIMIT) this.pending.shift();
    this.total++;
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  },
  flush() {
    this.frame = 0;
    const body = $("extractions").tBodies[0];
    const frag = document.createDocumentFragment();
    // Newest first.
    for (let i = this.pending.length - 1; i >= 0; i--) {
      const { data: d, timestamp } = this.pending[i];
      frag.appendChild(
        h("tr", {},
          h("td", { className: "ext-name" }, d.name),
          h("td", { className: "ext-value", title: String(d.value) }, String(d.value)),
          h("td", { className: "num" }, d.line_num),
          h("td", { className: "ext-time", title: timestamp }, clock(timestamp))),
      );
    }
    this.pending = [];
    body.prepend(frag);
    while (body.rows.length > EXTRACTIONS_LIMIT) body.lastElementChild.remove();
    this.render();
  },
  render() {
    $("extraction-count").textContent = count(this.total);
    $("extractions-empty").hidden = this.total > 0;
  },
};

// ---------------------------------------------------------------- start form

const form = $("start-form");

form.profile.addEventListener("input", () => {
  $("command-label").textContent = form.profile.value.trim() ? "Arguments" : "Command";
});

function showStartError(text) {
  const el = $("start-error");
  el.textContent = text;
  el.hidden = !text;
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = { name: form.name.value.trim() };
  const profile = form.profile.value.trim();
  try {
    const argv = shellSplit(form.command.value);
    if (profile) {
      body.profile = profile;
      if (argv.length) body.args = argv;
    } else {
      body.command = argv;
    }
    const ext = parseExtractors(form.extractors.value);
    if (ext.length) body.extractors = ext;
  } catch (err) {
    showStartError(err.message);
    return;
  }
  $("start-btn").disabled = true;
  try {
    const agent = await api("POST", "/api/agents", body);
    showStartError("");
    form.reset();
    $("command-label").textContent = "Command";
    if (!agents.has(agent.name) || (agent.last_event_id || 0) >= agents.get(agent.name)._seen) {
      agents.set(agent.name, { ...agent, _seen: agent.last_event_id || 0 });
    }
    select(agent.name);
  } catch (err) {
    showStartError(err instanceof ApiError ? err.message : `The server cannot be reached (${err.message}).`);
  } finally {
    $("start-btn").disabled = false;
  }
});

// ---------------------------------------------------------------- stats

async function pollStats() {
  try {
    const s = await api("GET", "/api/sse/stats");
    $("stat-clients").textContent = count(s.total_clients);
    $("stat-events").textContent = count(s.events_published);
    $("stat-drops").textContent = count(s.clients_dropped_slow);
    for (const [name, a] of agents) a.usage = (s.usage || {})[name] || null;
    scheduleAgentsRender();
    $("stats").title =
      `${count(s.events_delivered)} events delivered, ${count(s.bytes_delivered)} bytes, ` +
      `${count(s.clients_connected_total)} connections so far (from /api/sse/stats, every 2 s)`;
    $("stats").classList.remove("stale");
  } catch {
    $("stats").classList.add("stale");
  }
  setTimeout(pollStats, STATS_EVERY_MS);
}

// ---------------------------------------------------------------- start-up

async function start() {
  // The link the server printed carries ?token=: keep it for this tab, and out of the address bar.
  debug.loggedInFromAddress = adoptAddressBarToken();
  let snapshotMax = 0;
  try {
    snapshotMax = await refreshAgents();
  } catch (err) {
    renderConn($("global-conn"), "error", err.message);
  }
  globalStream = new StreamClient(
    "/api/stream",
    {
      onEvent: onGlobalEvent,
      onReset: () => refreshAgents().catch(() => {}),
      onState: (state, detail) => {
        renderConn($("global-conn"), state, detail);
        // (Re)connected: settle anything that changed between the snapshot and the stream.
        if (state === "connected") refreshAgents().catch(() => {});
      },
    },
    { lastEventId: snapshotMax },
  );
  globalStream.open();
  $("global-conn").querySelector(".conn-retry").addEventListener("click", () => globalStream.retry());
  const m = /^#agent=(.+)$/.exec(location.hash);
  if (m) select(decodeURIComponent(m[1]));
  else renderViewerHead();
  pollStats();
}

// A link or the address bar can pick the agent: #agent=<name>.
window.addEventListener("hashchange", () => {
  const m = /^#agent=(.+)$/.exec(location.hash);
  if (m && decodeURIComponent(m[1]) !== selected) select(decodeURIComponent(m[1]));
});

window.addEventListener("pagehide", () => {
  viewerStream?.close();
  globalStream?.close();
});

start();
