// ANSI escape sequences -> styled text runs, and runs -> DOM spans.
//
// Pure and DOM-free except for `renderRuns`, so the parser is testable on its own. The grammar
// mirrors supervisor/ansi.py (ECMA-48 as xterm reads it): SGR (`ESC [ ... m`) changes the
// style; every other sequence (cursor moves, erasures, OSC titles and hyperlinks, DCS strings)
// and every control character but TAB is dropped. Agent text is untrusted: `renderRuns` only
// ever sets `textContent` and individual style properties, never markup.

// CSI, OSC, string sequences (DCS/SOS/PM/APC), other ESC sequences, stray controls: in that
// order, because `[`, `]` and `P` are also valid final bytes of a plain ESC sequence.
const ESCAPE_RE = new RegExp(
  [
    "\\x1b\\[([0-?]*)([ -/]*)([@-~])", // CSI: params, intermediates, final byte
    "\\x1b\\][^\\x07\\x1b]*(?:\\x07|\\x1b\\\\)?", // OSC
    "\\x1b[PX^_][^\\x07\\x1b]*(?:\\x07|\\x1b\\\\)?", // DCS, SOS, PM, APC
    "\\x1b[ -/]*[0-~]", // ESC 7, ESC ( B, ...
    "[\\x00-\\x08\\x0a-\\x1f\\x7f-\\x9f]", // controls (a lone ESC too), TAB excepted
  ].join("|"),
  "g",
);

/** The default style: no colour, no attributes. Styles are treated as immutable values. */
export const PLAIN = Object.freeze({
  fg: null, // null | {i: 0..255} | {r, g, b}
  bg: null,
  bold: false,
  dim: false,
  italic: false,
  underline: false,
  inverse: false,
  strike: false,
  hidden: false,
});

/** True when `style` changes nothing about how text looks. */
export function isPlain(style) {
  for (const key in PLAIN) if (style[key] !== PLAIN[key]) return false;
  return true;
}

/**
 * Split `text` into runs of equally styled text.
 *
 * `start` is the style in effect before the first character (the previous line's end style,
 * since a terminal carries SGR state across newlines). Returns `{runs, end}`: `runs` is a list
 * of `{text, style}` with non-empty text; `end` is the style after the last character.
 */
export function parseAnsi(text, start = PLAIN) {
  const runs = [];
  let style = start;
  let last = 0;
  ESCAPE_RE.lastIndex = 0;
  for (let m; (m = ESCAPE_RE.exec(text)) !== null; ) {
    if (m.index > last) pushRun(runs, text.slice(last, m.index), style);
    last = ESCAPE_RE.lastIndex;
    // SGR: CSI with final `m`, no intermediates and no private-mode prefix (`ESC[>4m` is an
    // xterm key-modifier setting, not a colour).
    if (m[3] === "m" && m[2] === "" && !/^[<=>?]/.test(m[1])) style = applySgr(style, m[1]);
  }
  if (last < text.length) pushRun(runs, text.slice(last), style);
  return { runs, end: style };
}

/** `text` without escape sequences or controls (TAB kept): what a terminal shows. */
export function stripAnsi(text) {
  return text.replace(ESCAPE_RE, "");
}

function pushRun(runs, text, style) {
  const prev = runs[runs.length - 1];
  if (prev && prev.style === style) prev.text += text;
  else runs.push({ text, style });
}

/**
 * The style after the SGR parameter string `params` (`"1;38;5;208"`, `"38:2::255:0:0"`, `""`).
 *
 * Semicolon and colon forms of extended colours are both accepted; an incomplete extended
 * colour is ignored, like xterm does.
 */
export function applySgr(style, params) {
  // Each parameter is a list of its colon-separated sub-parameters; empty means 0.
  const list = params === "" ? [[0]] : params.split(";").map((p) => p.split(":").map(toInt));
  const s = { ...style };
  for (let k = 0; k < list.length; k++) {
    const sub = list[k];
    const code = sub[0];
    if (code === 0) Object.assign(s, PLAIN);
    else if (code === 1) s.bold = true;
    else if (code === 2) s.dim = true;
    else if (code === 3) s.italic = true;
    else if (code === 4) s.underline = sub.length < 2 || sub[1] !== 0; // 4:0 = no underline
    else if (code === 7) s.inverse = true;
    else if (code === 8) s.hidden = true;
    else if (code === 9) s.strike = true;
    else if (code === 21) s.underline = true; // double underline
    else if (code === 22) s.bold = s.dim = false;
    else if (code === 23) s.italic = false;
    else if (code === 24) s.underline = false;
    else if (code === 27) s.inverse = false;
    else if (code === 28) s.hidden = false;
    else if (code === 29) s.strike = false;
    else if (code >= 30 && code <= 37) s.fg = { i: code - 30 };
    else if (code === 39) s.fg = null;
    else if (code >= 40 && code <= 47) s.bg = { i: code - 40 };
    else if (code === 49) s.bg = null;
    else if (code >= 90 && code <= 97) s.fg = { i: code - 90 + 8 };
    else if (code >= 100 && code <= 107) s.bg = { i: code - 100 + 8 };
    else if (code === 38 || code === 48) {
      let color;
      if (sub.length > 1) {
        color = extendedColor(sub.slice(1), true); // 38:5:n or 38:2:[cs]:r:g:b
      } else {
        // 38;5;n or 38;2;r;g;b: the colour takes the next parameters.
        const rest = list.slice(k + 1).map((p) => p[0]);
        color = extendedColor(rest, false);
        k += color ? color.used : rest.length; // an incomplete one swallows the rest
      }
      if (color) s[code === 38 ? "fg" : "bg"] = color.value;
    }
    // Anything else (blink, fonts, overline, ...) changes nothing we draw.
  }
  return isSameStyle(s, style) ? style : Object.freeze(s);
}

function toInt(p) {
  const n = parseInt(p, 10);
  return Number.isNaN(n) ? 0 : n;
}

// `args` starts with the colour mode: 5 (index) or 2 (RGB). In the colon form RGB may carry a
// colour-space id first (`2::r:g:b` or `2:cs:r:g:b`), recognised by there being four values.
function extendedColor(args, colon) {
  const mode = args[0];
  if (mode === 5 && args.length >= 2) {
    const i = args[1];
    return i >= 0 && i <= 255 ? { value: { i }, used: 2 } : null;
  }
  if (mode === 2) {
    let rgb = args.slice(1, 4);
    if (colon && args.length >= 5) rgb = args.slice(2, 5);
    if (rgb.length < 3) return null;
    const [r, g, b] = rgb.map((v) => Math.max(0, Math.min(255, v)));
    return { value: { r, g, b }, used: 4 };
  }
  return null;
}

function isSameStyle(a, b) {
  for (const key in PLAIN) {
    const x = a[key];
    const y = b[key];
    if (x === y) continue;
    if (x && y && typeof x === "object" && x.i === y.i && x.r === y.r && x.g === y.g && x.b === y.b)
      continue;
    return false;
  }
  return true;
}

// The xterm 256-colour cube (16..231) and grey ramp (232..255).
const CUBE = [0, 95, 135, 175, 215, 255];

/** A CSS colour for `color` ({i} or {r,g,b}); 0..15 use the theme's `--ansi-N` variables. */
export function cssColor(color) {
  if ("i" in color) {
    const i = color.i;
    if (i < 16) return `var(--ansi-${i})`;
    if (i < 232) {
      const n = i - 16;
      return `rgb(${CUBE[Math.floor(n / 36)]}, ${CUBE[Math.floor(n / 6) % 6]}, ${CUBE[n % 6]})`;
    }
    const v = 8 + (i - 232) * 10;
    return `rgb(${v}, ${v}, ${v})`;
  }
  return `rgb(${color.r}, ${color.g}, ${color.b})`;
}

/**
 * A DocumentFragment of `runs`: plain text nodes for unstyled runs, `<span>`s otherwise.
 *
 * Attributes become classes (`sgr-bold`, `sgr-dim`, ...); colours become inline `color` /
 * `background-color`. Inverse swaps them, falling back to the terminal's own colours.
 */
export function renderRuns(runs, doc = document) {
  const frag = doc.createDocumentFragment();
  for (const { text, style } of runs) {
    if (isPlain(style)) {
      frag.appendChild(doc.createTextNode(text));
      continue;
    }
    const span = doc.createElement("span");
    span.textContent = text;
    const cls = [];
    if (style.bold) cls.push("sgr-bold");
    if (style.dim) cls.push("sgr-dim");
    if (style.italic) cls.push("sgr-italic");
    if (style.underline) cls.push("sgr-underline");
    if (style.strike) cls.push("sgr-strike");
    if (style.hidden) cls.push("sgr-hidden");
    if (style.inverse) cls.push("sgr-inverse");
    if (cls.length) span.className = cls.join(" ");
    let fg = style.fg && cssColor(style.fg);
    let bg = style.bg && cssColor(style.bg);
    if (style.inverse) [fg, bg] = [bg || "var(--term-bg)", fg || "var(--term-fg)"];
    if (fg) span.style.color = fg;
    if (bg) span.style.backgroundColor = bg;
    frag.appendChild(span);
  }
  return frag;
}
