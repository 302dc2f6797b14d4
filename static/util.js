// Small pure helpers shared by the dashboard modules.

/**
 * Split a command line into argv the way a POSIX shell would for plain words: whitespace
 * separates, '...' is literal, "..." allows \" \\ \$ \` escapes, a backslash outside quotes
 * escapes the next character. No expansion of any kind. Throws Error on an unclosed quote.
 */
export function shellSplit(line) {
  const argv = [];
  let word = null; // null: between words; "" is a real (empty) word once a quote opened it
  let i = 0;
  while (i < line.length) {
    const c = line[i];
    if (c === " " || c === "\t" || c === "\n") {
      if (word !== null) argv.push(word);
      word = null;
      i++;
    } else if (c === "'") {
      const end = line.indexOf("'", i + 1);
      if (end < 0) throw new Error("unclosed ' in the command");
      word = (word ?? "") + line.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      word = word ?? "";
      i++;
      for (;;) {
        if (i >= line.length) throw new Error('unclosed " in the command');
        const d = line[i];
        if (d === '"') break;
        if (d === "\\" && i + 1 < line.length && '"\\$`'.includes(line[i + 1])) {
          word += line[i + 1];
          i += 2;
        } else {
          word += d;
          i++;
        }
      }
      i++;
    } else if (c === "\\" && i + 1 < line.length) {
      word = (word ?? "") + line[i + 1];
      i += 2;
    } else {
      word = (word ?? "") + c;
      i++;
    }
  }
  if (word !== null) argv.push(word);
  return argv;
}

/**
 * Extractors from the form's text: a JSON list of {name, pattern, flags}, or one per line as
 * `name=pattern` (optionally `name/flags=pattern`). Blank lines and `#` comments are skipped.
 * Throws Error naming the line that is neither.
 */
export function parseExtractors(text) {
  const trimmed = text.trim();
  if (!trimmed) return [];
  if (trimmed.startsWith("[")) {
    const list = JSON.parse(trimmed);
    if (!Array.isArray(list)) throw new Error("extractors: expected a JSON list");
    return list;
  }
  const out = [];
  trimmed.split("\n").forEach((raw, n) => {
    const line = raw.trim();
    if (!line || line.startsWith("#")) return;
    const eq = line.indexOf("=");
    if (eq <= 0) throw new Error(`extractors line ${n + 1}: expected name=pattern`);
    const head = line.slice(0, eq).trim();
    const pattern = line.slice(eq + 1).trim();
    const slash = head.indexOf("/");
    const ext = { name: slash < 0 ? head : head.slice(0, slash), pattern };
    if (slash >= 0) ext.flags = head.slice(slash + 1);
    out.push(ext);
  });
  return out;
}

/** `HH:MM:SS` in local time of an RFC 3339 timestamp (or "" if there is none). */
export function clock(timestamp) {
  if (!timestamp) return "";
  const d = new Date(timestamp);
  if (Number.isNaN(d.getTime())) return "";
  return d.toTimeString().slice(0, 8);
}

/** 12345 -> "12,345"; 1234567 -> "1.2M". */
export function count(n) {
  if (n === null || n === undefined) return "–";
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  return n.toLocaleString("en-US");
}

/** The badge text of an agent state: "exited 0", "exited SIGTERM", "backoff", ... */
export function stateLabel(agent) {
  const state = agent.state || "unknown";
  if (state === "exited") {
    if (agent.signal) return `exited ${agent.signal}`;
    if (agent.exit_code !== null && agent.exit_code !== undefined)
      return `exited ${agent.exit_code}`;
  }
  return state;
}

/** `document.createElement` with properties, attributes (`attrs`) and children; text only. */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "attrs") for (const [a, v] of Object.entries(value)) el.setAttribute(a, v);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else el[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/**
 * An argv as a shell would need it typed: words with only safe characters as they are, the
 * rest in single quotes (a ' inside becomes '\''), an empty word as ''.
 * ["echo", "quoted arg"] -> "echo 'quoted arg'".
 */
export function shellQuote(argv) {
  return argv
    .map((word) => {
      const text = String(word);
      if (text === "") return "''";
      if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(text)) return text;
      return `'${text.replace(/'/g, "'\\''")}'`;
    })
    .join(" ");
}

/** "1 line", "2 lines", "1,234 lines": a count with its noun, in the right number. */
export function plural(n, one, many = `${one}s`) {
  return `${count(n)} ${n === 1 ? one : many}`;
}

/** 5 -> "5s", 192 -> "3m12s", 7384 -> "2h03m", 200000 -> "2d07h": how long, compactly. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours}h${String(m % 60).padStart(2, "0")}m`;
  return `${Math.floor(hours / 24)}d${String(hours % 24).padStart(2, "0")}h`;
}

/** 48234496 -> "46 MB", 900000 -> "879 KB": memory as people read it (binary units). */
export function bytes(n) {
  if (n === null || n === undefined) return "–";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${Math.round(n / 1024)} KB`;
  if (n < 1024 * 1024 * 1024) return `${Math.round(n / 1048576)} MB`;
  return `${(n / 1073741824).toFixed(1)} GB`;
}

/** What an agent's state means for the input field: "The agent has exited", ... */
export function stateSentence(agent) {
  switch (agent.state) {
    case "starting":
      return "The agent is starting";
    case "running":
      return "The agent is running";
    case "stopping":
      return "The agent is stopping";
    case "backoff":
      return "The agent waits to restart";
    case "exited":
      return "The agent has exited";
    case "failed":
      return "The agent could not start";
    case "lost":
      return "The agent was lost with the previous server";
    default:
      return "The agent has not run yet";
  }
}
