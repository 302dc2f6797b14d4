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
