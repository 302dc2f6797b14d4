// The dashboard: the agent list (live from /api/stream), the start form, the selected agent's
// log viewer (its own stream) and, for agents with a virtual screen, its Screen view, input,
// extractions and stats. Wiring only; the logic lives in ansi.js, linebuffer.js, logview.js,
// screen.js, sse.js and api.js.

import { api, apiBlob, ApiError, setTokenPrompt } from "./api.js";
import { LogView } from "./logview.js";
import { ScreenView } from "./screen.js";
import { adoptAddressBarToken } from "./session.js";
import { StreamClient } from "./sse.js";
import {
  bytes,
  clock,
  count,
  duration,
  h,
  parseExtractors,
  plural,
  shellQuote,
  shellSplit,
  stateLabel,
  stateSentence,
} from "./util.js";

const $ = (id) => document.getElementById(id);

const STATS_EVERY_MS = 2000;
const EXTRACTIONS_LIMIT = 1000;
const ACTIVE = new Set(["starting", "running", "stopping", "backoff"]);
const CAN_STOP = new Set(["starting", "running", "backoff"]);
const CAN_TYPE = new Set(["starting", "running"]);
const RUNNING = new Set(["starting", "running", "stopping"]);
const START_FORM_KEY = "agent-supervisor-start-form-open";

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

// The Screen view, offered while the selected agent's run has a screen; shown by itself the
// first time a full-screen program's screen appears, unless the user picked a view.
let viewChosen = false;
const screenView = new ScreenView(
  { view: $("screen-view"), term: $("screen-term"), status: $("screen-status") },
  {
    onAvailable: (available, alternate) => {
      $("view-tabs").hidden = !available;
      $("screen-status").hidden = !available;
      if (!available) showView("log");
      else if (alternate && !viewChosen) showView("screen");
    },
    onError: (message) => showNotice(`typing into the screen: ${message}`, true),
  },
);

function showView(which) {
  const screen = which === "screen";
  $("tab-log").setAttribute("aria-selected", String(!screen));
  $("tab-screen").setAttribute("aria-selected", String(screen));
  $("log-view").hidden = screen;
  $("filter").hidden = screen;
  $("line-status").hidden = screen;
  $("input-form").hidden = screen;
  screenView.setVisible(screen);
}

$("tab-log").addEventListener("click", () => {
  viewChosen = true;
  showView("log");
});
$("tab-screen").addEventListener("click", () => {
  viewChosen = true;
  showView("screen");
});

// For the console and the browser tests: read-only handles on the live objects.
const debug = {
  agents,
  view,
  screen: screenView,
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
      if (d.state === "starting") {
        Object.assign(a, { lines: 0, extractions: 0, exit_code: null, signal: null, waiting_input: false, prompt: null });
        a.started_at = env.timestamp;
        a.usage = null; // the last run's figures; the uptime counts from started_at until the next poll
      }
      if (d.command) a.command = d.command;
      Object.assign(a, pick(d, ["state", "run", "pid", "exit_code", "signal", "reason"]));
      if (env.agent_name === selected && d.state === "starting" && viewerStream?.state === "done") {
        viewerStream.retry(); // a new run of the agent we are watching: follow it
      }
      if (env.agent_name === selected && d.state === "starting" && !screenView.es && a.screen !== "off") {
        screenView.open(selected, a.screen); // its screen stream was never opened (screen was off)
      }
    } else if (env.type === "complete") {
      Object.assign(a, pick(d, ["state", "exit_code", "signal", "duration_s", "lines", "extractions", "reason"]));
    } else if (env.type === "log") {
      if (d.run === a.run && !d.partial) a.lines = Math.max(a.lines || 0, d.line_num);
    } else if (env.type === "extraction") {
      if (d.run === a.run) a.extractions = (a.extractions || 0) + 1;
    } else if (env.type === "waiting_input") {
      a.waiting_input = d.waiting_input === true;
      a.prompt = a.waiting_input ? d.prompt : null;
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

/** Checks run after each change of the agents (see untilEnded); each returns true when done. */
const endWatchers = new Set();

let agentsFrame = 0;
function scheduleAgentsRender() {
  if (!agentsFrame) {
    agentsFrame = requestAnimationFrame(() => {
      agentsFrame = 0;
      renderAgents();
      renderViewerHead();
      for (const check of endWatchers) if (check()) endWatchers.delete(check);
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
          h("span", { className: "flag waiting", hidden: true }, "waiting for input"),
          h("span", { className: "agent-meta" })));
    }
    items.delete(name);
    if (list.children[i] !== li) list.insertBefore(li, list.children[i] || null);
    li.classList.toggle("selected", name === selected);
    li.classList.toggle("waiting", Boolean(a.waiting_input));
    li.dataset.state = a.state;
    setBadge(li.querySelector(".badge"), a);
    const waiting = li.querySelector(".flag.waiting");
    waiting.hidden = !a.waiting_input;
    waiting.title = a.prompt ? `Waiting at: ${a.prompt}` : "";
    // Rebuilt only when a figure changed: a flood of lines re-renders the list every frame.
    const cells = cardCells(a);
    const key = cells.flat().join("\u0000");
    if (li._cells !== key) {
      li._cells = key;
      li.querySelector(".agent-meta").replaceChildren(...cells.map(renderCell));
    }
    li.querySelector(".agent-select").title =
      `run ${a.run ?? 0} · ${plural(a.extractions ?? 0, "extraction")}` + (a.origin === "config" ? " · from the config file" : "");
  });
  for (const li of items.values()) li.remove();
  $("agent-count").textContent = String(agents.size);
  $("agents-empty").hidden = agents.size > 0;
  const waiting = [...agents.values()].filter((a) => a.waiting_input).length;
  const badge = $("waiting-count");
  badge.hidden = waiting === 0;
  badge.textContent = `${waiting} waiting`;
  $("stop-all-btn").disabled = ![...agents.values()].some((a) => CAN_STOP.has(a.state));
  renderTitle(waiting);
}

/** The page title: how many agents wait for input first, so it shows on a background tab. */
function renderTitle(waiting) {
  const base = selected ? `${selected} · agent-supervisor` : "agent-supervisor";
  document.title = waiting ? `(${waiting} waiting) ${base}` : base;
}

// A card's figures, as [kind, label, value, title]: lines of its run, then CPU, memory, uptime
// and restarts: what its whole process tree costs (the server's sampler, via GET /api/agents
// and /api/sse/stats), how long its run is up, how often it ran again (every restart, as PM2's
// counter; the API's `restarts` counts only those in a row by the policy).
function cardCells(a) {
  const u = a.usage;
  const up = u ? u.uptime_s : RUNNING.has(a.state) && a.started_at ? (Date.now() - Date.parse(a.started_at)) / 1000 : null;
  const restarts = Math.max(0, (a.run || 0) - 1);
  return [
    // In a cluster (serve --redis), the node that runs the agent.
    ...(a.node ? [["node", "on", a.node, "the node of the cluster that runs it"]] : []),
    ["lines", "", plural(a.lines ?? 0, "line"), "complete lines of the current run"],
    ["cpu", "CPU", u && u.cpu_percent != null ? `${u.cpu_percent.toFixed(0)}%` : "–", "CPU of the whole process tree (100% = one core)"],
    ["mem", "", u ? bytes(u.rss_bytes) : "– MB", u ? `resident memory of ${plural(u.processes, "process", "processes")}` : "no process runs"],
    ["up", "up", up == null ? "–" : duration(up), "uptime of the current run"],
    ["restarts", "↻", String(restarts), `${plural(restarts, "restart")} (run ${a.run ?? 0})`],
  ];
}

function renderCell([kind, label, value, title]) {
  return h("span", { className: `cell ${kind}`, title }, label ? h("b", {}, label) : null, label ? ` ${value}` : value);
}

function setBadge(el, agent) {
  el.dataset.state = agent.state || "new";
  el.textContent = agent.state ? stateLabel(agent) : "defined";
  el.classList.toggle("bad", agent.state === "exited" && (agent.exit_code || agent.signal) ? true : false);
  el.title = agent.reason ? `${agent.state}: ${agent.reason}` : agent.state || "defined, not started";
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
    // The replay of an agent that ran several times holds a `complete` per run: the stream is
    // over at the one of its newest run (the server ends it there), not at the first.
    { endsOnComplete: (env) => (env.data?.run ?? 0) >= (agents.get(name)?.run ?? 0) },
  );
  viewerStream.open();
  viewChosen = false;
  showView("log");
  screenView.open(name, agents.get(name)?.screen);
  renderAgents();
  renderViewerHead();
}

/** Back to no agent selected (the selected one was deleted). */
function deselect() {
  viewerStream?.close();
  viewerStream = null;
  selected = null;
  history.replaceState(null, "", location.pathname + location.search);
  view.clear("Select an agent to see its output.");
  extractions.clear();
  renderConn($("viewer-conn"), "closed");
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
  renderTitle([...agents.values()].filter((x) => x.waiting_input).length);
  const badge = $("viewer-badge");
  badge.hidden = !a;
  if (a) setBadge(badge, a);
  const waiting = $("viewer-waiting");
  waiting.hidden = !(a && a.waiting_input);
  waiting.title = a && a.prompt ? `Waiting at: ${a.prompt}` : "";
  const meta = [];
  if (a) {
    if (a.node) meta.push(`node ${a.node}`);
    if (a.pid && ACTIVE.has(a.state)) meta.push(`pid ${a.pid}`);
    if (a.run) meta.push(`run ${a.run}`);
    if (a.profile) meta.push(`profile ${a.profile}`);
    if (a.command) meta.push(shellQuote(a.command));
  } else if (selected) {
    meta.push("not on the server (removed?)");
  }
  const metaEl = $("viewer-meta");
  metaEl.textContent = meta.join(" · ");
  metaEl.title = metaEl.textContent;
  $("stop-btn").disabled = !a || !CAN_STOP.has(a.state);
  $("restart-btn").disabled = !a;
  $("download-btn").disabled = !a || !a.run;
  const del = $("delete-btn");
  del.disabled = !a || a.origin === "config";
  del.title = a && a.origin === "config"
    ? "Defined in the config file: remove it there, then run agent-supervisor reload"
    : a && ACTIVE.has(a.state) ? "Stop the agent, then delete it and its history" : "Delete the agent and its history";
  const canType = Boolean(a && CAN_TYPE.has(a.state));
  $("input-text").disabled = !canType;
  $("input-btn").disabled = !canType;
  $("input-text").placeholder = canType
    ? a.waiting_input ? `Answer: ${a.prompt ?? ""}`.trim() : "Send a line to the agent (Enter)"
    : a ? stateSentence(a) : "Select an agent";
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
$("delete-btn").addEventListener("click", () => removeSelected());
$("download-btn").addEventListener("click", () => downloadLog());
$("stop-all-btn").addEventListener("click", () => stopAll());

// Delete, as `agent-supervisor rm --force` and `pm2 delete` do: a running agent is stopped
// first (the API itself refuses to delete a live one, like `supervisorctl remove`), once the
// user has confirmed both. A config file's agent is removed in the file, not here.
async function removeSelected() {
  const name = selected;
  const a = name && agents.get(name);
  if (!a) return;
  const live = ACTIVE.has(a.state);
  const question = live
    ? `${name} is ${a.state}. Stop it, then delete it and its whole history?`
    : `Delete agent ${name} and its whole history?`;
  if (!window.confirm(question)) return;
  const path = `/api/agents/${encodeURIComponent(name)}`;
  const button = $("delete-btn");
  button.disabled = true;
  try {
    if (live) {
      showNotice(`Stopping ${name}…`);
      await api("POST", `${path}/stop`);
      await untilEnded(name);
    }
    await api("DELETE", path);
    agents.delete(name);
    if (selected === name) deselect();
    scheduleAgentsRender();
    showNotice(`${name} was deleted, with its history.`);
  } catch (err) {
    showNotice(`delete: ${err.message}`, true);
  } finally {
    renderViewerHead();
  }
}

/** Resolves once `name` is no longer active (the all-agents stream says so), or is gone. */
function untilEnded(name) {
  return new Promise((resolve) => {
    const check = () => {
      const a = agents.get(name);
      if (a && ACTIVE.has(a.state)) return false;
      resolve();
      return true;
    };
    if (!check()) endWatchers.add(check);
  });
}

async function stopAll() {
  const names = [...agents.values()].filter((a) => CAN_STOP.has(a.state)).map((a) => a.name).sort();
  const listed = names.length > 10 ? `${names.slice(0, 10).join(", ")} and ${names.length - 10} more` : names.join(", ");
  if (!names.length || !window.confirm(`Stop ${plural(names.length, "agent")}: ${listed}?`)) return;
  const failed = [];
  await Promise.all(names.map(async (name) => {
    try {
      await api("POST", `/api/agents/${encodeURIComponent(name)}/stop`);
    } catch (err) {
      failed.push(`${name}: ${err.message}`);
    }
  }));
  showNotice(failed.length ? `stop all: ${failed.join("; ")}` : `Stopping ${plural(names.length, "agent")}.`, failed.length > 0);
}

// The raw output (output.log and its rotated files) as a file: fetched with the page's
// credentials, then handed to the browser as a download.
async function downloadLog() {
  const name = selected;
  if (!name) return;
  const button = $("download-btn");
  button.disabled = true;
  try {
    const blob = await apiBlob(`/api/agents/${encodeURIComponent(name)}/output.log`);
    const url = URL.createObjectURL(blob);
    const link = h("a", { href: url, download: `${name}-output.log`, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (err) {
    showNotice(`download: ${err.message}`, true);
  } finally {
    renderViewerHead();
  }
}
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
const startPanel = $("start-panel");

// The start form folds away so more agents fit; open when there is none yet, else as the user
// left it (kept per browser).
function initStartPanel(agentCount) {
  let saved = null;
  try {
    saved = localStorage.getItem(START_FORM_KEY);
  } catch {
    /* storage disabled: the default below */
  }
  startPanel.open = saved === null ? agentCount === 0 : saved === "1";
  let shown = startPanel.open; // the toggle event of this very assignment is not the user's
  startPanel.addEventListener("toggle", () => {
    if (startPanel.open === shown) return;
    shown = startPanel.open;
    try {
      localStorage.setItem(START_FORM_KEY, startPanel.open ? "1" : "0");
    } catch {
      /* storage disabled: not remembered */
    }
  });
}

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
  initStartPanel(agents.size);
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
  screenView.close();
});

start();
