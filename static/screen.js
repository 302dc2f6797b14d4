// The Screen view: an agent's virtual screen in xterm.js, live, and keys typed into it.
//
// The server keeps the screen (its emulator is the one the tests compare with tmux); this view
// only draws it. `/api/agents/<name>/screen/stream` gives a snapshot, then row diffs; each row
// comes as text with SGR colours, so drawing is "go to the row, erase it, write it" in xterm.js
// at the agent's own size, then the cursor and the modes that decide what keys send (cursor
// keys in application mode, bracketed paste). What xterm.js sends for a key (`onData`: the
// bytes a terminal sends) is posted to `/input`, one key per request, in order.

import { api } from "./api.js";
import { StreamClient } from "./sse.js";
import { Terminal } from "./vendor/xterm/xterm.mjs";
import { installConstructedStyles } from "./xterm-csp.js";

// What a screen stream sends (docs/API.md, "Screens").
const SCREEN_FRAMES = new Set(["snapshot", "diff", "no_screen"]);

// Font sizes the view picks from to show the whole screen in the space it has (px).
const FONT_MAX = 14;
const FONT_MIN = 9;
// A monospace cell, in units of the font size (close for the fonts in the stack below).
const CELL_WIDTH = 0.602;
const CELL_HEIGHT = 1.17;

const THEME = {
  background: "#0a0d12",
  foreground: "#d5dde6",
  cursor: "#d5dde6",
  cursorAccent: "#0a0d12",
  selectionBackground: "#264f78",
  black: "#2e3440",
  red: "#e5534b",
  green: "#57ab5a",
  yellow: "#c69026",
  blue: "#539bf5",
  magenta: "#b083f0",
  cyan: "#39c5cf",
  white: "#b9c3cd",
  brightBlack: "#636e7b",
  brightRed: "#ff7b72",
  brightGreen: "#7ee787",
  brightYellow: "#f2cc60",
  brightBlue: "#79c0ff",
  brightMagenta: "#d2a8ff",
  brightCyan: "#56d4dd",
  brightWhite: "#f0f6fc",
};

/** The screen as the stream describes it: a snapshot with every diff applied. */
export class ScreenMirror {
  constructor() {
    this.present = false;
    this.run = 0;
    this.seq = -1;
    this.cols = 0;
    this.rows = 0;
    this.text = [];
    this.ansi = [];
    this.cursor = { x: 0, y: 0, visible: true };
    this.alternate = false;
    this.modes = {};
  }

  /** Apply one event; returns the rows that changed, or null when all of them did. */
  apply(kind, d) {
    if (kind === "snapshot") {
      Object.assign(this, { present: true, run: d.run, seq: d.seq, cols: d.cols, rows: d.rows });
      this.text = [...d.text];
      this.ansi = [...d.ansi];
      this._common(d);
      return null;
    }
    if (kind === "no_screen") {
      Object.assign(this, { present: false, run: d.run, seq: -1 });
      return null;
    }
    if (kind !== "diff") return [];
    if (!this.present || d.since !== this.seq) throw new Error(`diff since ${d.since} for a screen at ${this.seq}`);
    const resized = d.cols !== this.cols || d.rows !== this.rows;
    if (resized) {
      this.cols = d.cols;
      this.rows = d.rows;
      for (const rows of [this.text, this.ansi]) {
        rows.length = Math.min(rows.length, d.rows);
        while (rows.length < d.rows) rows.push("");
      }
    }
    for (const change of d.changed) {
      this.text[change.row] = change.text;
      this.ansi[change.row] = change.ansi;
    }
    this.seq = d.seq;
    this._common(d);
    return resized ? null : d.changed.map((c) => c.row);
  }

  _common(d) {
    this.cursor = { ...d.cursor };
    this.alternate = d.alternate;
    this.modes = { ...(d.modes || {}) };
  }
}

export class ScreenView {
  /**
   * @param {object} els  `view` (the Screen view's element), `term` (where xterm.js draws),
   *   `status` (a text element)
   * @param {object} handlers  `onAvailable(available: boolean, alternate: boolean)`: the agent's
   *   run has (or no longer has) a screen; `onError(message)`: typing failed
   */
  constructor(els, handlers = {}) {
    this.els = els;
    this.handlers = handlers;
    this.mirror = new ScreenMirror();
    this.name = null;
    this.es = null;
    this.term = null;
    this.visible = false;
    this.sending = Promise.resolve();
    this.keysSent = 0;
    this.frames = 0; // events drawn: for the tests
    window.addEventListener("resize", () => this._fit());
  }

  /** Follow `name`'s screen (nothing for an agent whose screen setting is off). */
  open(name, mode) {
    this.close();
    this.name = name;
    this.mirror = new ScreenMirror();
    this._status("");
    if (mode === "off") return;
    // Read with fetch (the tab's token goes as a header); it reconnects by itself, and the
    // server starts every connection with a snapshot.
    const stream = new StreamClient(
      `/api/agents/${encodeURIComponent(name)}/screen/stream`,
      {
        onEvent: (data, kind) => {
          if (this.es === stream) this._event(kind, data);
        },
        onState: (state, detail) => {
          if (this.es !== stream) return;
          if (state === "reconnecting") this._status("reconnecting…");
          else if (state === "error") this._status(detail);
        },
      },
      { types: SCREEN_FRAMES },
    );
    this.es = stream;
    stream.open();
  }

  close() {
    if (this.es) this.es.close();
    this.es = null;
    this.name = null;
    const wasPresent = this.mirror.present;
    this.mirror = new ScreenMirror();
    if (wasPresent) this.handlers.onAvailable?.(false, false);
  }

  /** Show the view (draws the whole screen) or hide it. */
  setVisible(visible) {
    this.visible = visible;
    this.els.view.hidden = !visible;
    if (!visible) return;
    this._ensureTerminal();
    this._fit();
    this._draw(null);
    this.term.focus();
  }

  // The largest font (up to FONT_MAX) with which the whole screen fits the view; below
  // FONT_MIN the view scrolls instead. The terminal keeps the agent's cols and rows.
  _fit() {
    const term = this.term;
    if (!term || !this.visible) return;
    const box = this.els.view;
    const width = box.clientWidth - 24;
    const height = box.clientHeight - 40; // the padding and the hint below the screen
    const size = Math.floor(Math.min(width / (term.cols * CELL_WIDTH), height / (term.rows * CELL_HEIGHT)));
    const font = Math.max(FONT_MIN, Math.min(FONT_MAX, size));
    if (term.options.fontSize !== font) term.options.fontSize = font;
  }

  _event(kind, data) {
    const had = this.mirror.present;
    let changed;
    try {
      changed = this.mirror.apply(kind, data);
    } catch {
      // Out of step (cannot happen with this server): start over with a fresh snapshot.
      this.open(this.name, "on");
      return;
    }
    if (this.mirror.present !== had || kind === "snapshot") {
      this.handlers.onAvailable?.(this.mirror.present, this.mirror.alternate);
    }
    const m = this.mirror;
    this._status(m.present ? `${m.cols}×${m.rows} · run ${m.run}` : `no screen in run ${m.run} yet`);
    if (this.visible) this._draw(changed);
  }

  _ensureTerminal() {
    if (this.term) return;
    installConstructedStyles();
    const m = this.mirror;
    const term = new Terminal({
      cols: m.cols || 80,
      rows: m.rows || 24,
      scrollback: 0,
      cursorBlink: true,
      fontFamily: 'ui-monospace, "JetBrains Mono", "Cascadia Mono", "DejaVu Sans Mono", "Liberation Mono", Menlo, monospace',
      fontSize: FONT_MAX,
      theme: THEME,
      allowProposedApi: false,
    });
    term.open(this.els.term);
    term.onData((data) => this._send(data));
    this.term = term;
  }

  // Bring xterm.js in line with the mirror: every row (`rows` null) or only those given.
  _draw(rows) {
    const term = this.term;
    const m = this.mirror;
    if (!term) return;
    if (!m.present) {
      term.write("\x1b[?25l\x1b[0m\x1b[H\x1b[2J");
      return;
    }
    const parts = ["\x1b[?25l"];
    if (term.cols !== m.cols || term.rows !== m.rows) {
      term.resize(m.cols, m.rows);
      this._fit();
      rows = null;
    }
    if (rows === null) parts.push("\x1b[0m\x1b[H\x1b[2J");
    const which = rows === null ? m.ansi.keys() : rows;
    for (const row of which) {
      parts.push(`\x1b[${row + 1};1H\x1b[0m\x1b[2K${m.ansi[row] || ""}`);
    }
    parts.push(m.modes.app_cursor_keys ? "\x1b[?1h" : "\x1b[?1l");
    parts.push(m.modes.bracketed_paste ? "\x1b[?2004h" : "\x1b[?2004l");
    parts.push(`\x1b[0m\x1b[${m.cursor.y + 1};${m.cursor.x + 1}H`);
    if (m.cursor.visible) parts.push("\x1b[?25h");
    term.write(parts.join(""));
    this.frames++;
  }

  // One key (or a paste) as the terminal sends it, posted after the ones before it.
  _send(data) {
    const name = this.name;
    if (!name) return;
    this.sending = this.sending
      .then(() => api("POST", `/api/agents/${encodeURIComponent(name)}/input`, { data }))
      .then(() => {
        this.keysSent++;
      })
      .catch((err) => this.handlers.onError?.(err.message));
  }

  _status(text) {
    this.els.status.textContent = text;
  }
}
