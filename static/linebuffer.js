// The log viewer's model: one row per (run, line_num), at most `limit` rows, oldest leave first.
//
// DOM-free. Events are applied as they arrive (cheap, bounded); a view asks for what changed
// once per animation frame with `takeChanges()` and touches the DOM only for rows that are
// still in the buffer, so 20,000 lines that arrive between two frames cost 20,000 map
// operations and at most `limit` DOM nodes.

import { PLAIN, parseAnsi } from "./ansi.js";

export const DEFAULT_LIMIT = 5000;

/**
 * A bounded, ordered set of rows keyed by `run:line_num`.
 *
 * A `log` event whose key is already present replaces that row (a partial line being
 * completed or redrawn) unless the event is older than the one shown. Rows keep insertion
 * order; the rows of each run are preceded by a separator row (see `lead`). A row's `el`
 * slot belongs to the view.
 */
export class LineBuffer {
  constructor(limit = DEFAULT_LIMIT) {
    this.limit = limit;
    this.rows = new Map(); // key -> row, in display order
    this.lastRun = null;
    this.lastStyle = PLAIN; // SGR state at the end of the newest row of `lastRun`
    this.evictedTotal = 0;
    this._added = []; // rows added since the last takeChanges (some may be gone already)
    this._updated = new Set(); // rows replaced since the last takeChanges
    this._removed = []; // rows that left and had an element
    this._cleared = false;
  }

  get size() {
    return this.rows.size;
  }

  /** Forget everything (a `reset` from the server, or another agent). */
  clear() {
    for (const row of this.rows.values()) row.gone = true;
    this.rows.clear();
    this.lastRun = null;
    this.lastStyle = PLAIN;
    this._added = [];
    this._updated.clear();
    this._removed = [];
    this._cleared = true;
  }

  /**
   * Apply one `log` event envelope. Returns the row it created or replaced, or null when the
   * event was stale (an older version of a row already shown).
   */
  applyLog(event) {
    const d = event.data;
    const key = `${d.run}:${d.line_num}`;
    const existing = this.rows.get(key);
    if (existing) {
      if (event.id <= existing.id) return null;
      fill(existing, event, existing.startStyle);
      if (existing === this._newest()) this.lastStyle = existing.endStyle;
      if (existing.el) this._updated.add(existing);
      return existing;
    }
    if (d.run !== this.lastRun && !this.rows.has(`sep:${d.run}`)) {
      // The first run's separator is `lead`: the view shows it only under a filter, where the
      // lines of several runs (each numbered from 1) need saying which run they are from.
      const lead = this.lastRun === null;
      this._push({ key: `sep:${d.run}`, kind: "sep", lead, run: d.run, id: event.id, el: null });
    }
    if (d.run !== this.lastRun) this.lastStyle = PLAIN;
    this.lastRun = d.run;
    const row = { key, kind: "log", el: null };
    fill(row, event, this.lastStyle);
    this.lastStyle = row.endStyle;
    this._push(row);
    return row;
  }

  _newest() {
    let last = null;
    // Map has no O(1) "last"; rows added this frame are the common case, so look there first.
    if (this._added.length) return this._added[this._added.length - 1];
    for (const row of this.rows.values()) last = row;
    return last;
  }

  _push(row) {
    this.rows.set(row.key, row);
    this._added.push(row);
    while (this.rows.size > this.limit) {
      const oldest = this.rows.values().next().value;
      this.rows.delete(oldest.key);
      oldest.gone = true;
      if (oldest.kind === "log") this.evictedTotal++; // lines dropped; a separator is none
      if (oldest.el) this._removed.push(oldest);
    }
    // A tab in the background gets no animation frames: keep the pending list bounded too.
    if (this._added.length > 2 * this.limit) this._added = this._added.filter((r) => !r.gone);
  }

  /**
   * What changed since the last call: `{cleared, removed, added, updated}`. `added` holds only
   * rows still in the buffer, in display order; `updated` only rows that have an element and
   * were not just added.
   */
  takeChanges() {
    const added = this._added.filter((r) => !r.gone);
    const updated = [...this._updated].filter((r) => !r.gone && r.el);
    const changes = { cleared: this._cleared, removed: this._removed, added, updated };
    this._added = [];
    this._updated.clear();
    this._removed = [];
    this._cleared = false;
    return changes;
  }
}

function fill(row, event, startStyle) {
  const d = event.data;
  const { runs, end } = parseAnsi(d.line, startStyle);
  row.id = event.id;
  row.run = d.run;
  row.lineNum = d.line_num;
  row.timestamp = event.timestamp;
  row.partial = d.partial === true;
  row.continuation = d.continuation === true;
  row.startStyle = startStyle;
  row.endStyle = end;
  row.runs = runs;
  row.plain = runs.map((r) => r.text).join("");
}

/** Does `row` pass the filter `needle` (lower-cased substring; empty passes everything)? */
export function rowMatches(row, needle) {
  if (!needle) return true;
  if (row.kind !== "log") return false;
  return row.plain.toLowerCase().includes(needle);
}
