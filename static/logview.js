// The terminal-like log viewer: a LineBuffer drawn into a scrolling element, once per frame.
//
// Follows the bottom until the user scrolls up, then holds still (the buffer keeps trimming
// old rows; Chromium's scroll anchoring keeps the visible lines in place) and offers a button
// to resume. Rows are built with DOM APIs from parsed runs: agent text never becomes markup.

import { renderRuns } from "./ansi.js";
import { DEFAULT_LIMIT, LineBuffer, rowMatches } from "./linebuffer.js";

const BOTTOM_SLACK_PX = 24; // this close to the bottom counts as "at the bottom"

export class LogView {
  /**
   * @param {object} els  `scroller` (the overflow element), `lines` (the row container),
   *   `placeholder`, `resume` (button), `status` (a text element for "n lines"), all required
   */
  constructor(els, { limit = DEFAULT_LIMIT } = {}) {
    this.els = els;
    this.buffer = new LineBuffer(limit);
    this.filter = "";
    this.follow = true;
    this.unseen = 0; // rows added while not following
    this.emptyText = "Select an agent to see its output.";
    this._frame = 0;
    this._autoTop = 0;
    this._digits = 4;
    this._matchedRuns = new Set(); // under a filter: the runs with a matching line
    els.scroller.addEventListener("scroll", () => this._onScroll(), { passive: true });
    els.resume.addEventListener("click", () => this.resumeFollow());
    this._renderPlaceholder();
  }

  /** Empty the view; `emptyText` is what the placeholder says until the first line. */
  clear(emptyText = "Waiting for output…") {
    this.buffer.clear();
    this._matchedRuns.clear();
    this.emptyText = emptyText;
    this.follow = true;
    this.unseen = 0;
    this._schedule();
  }

  /** Take one `log` event envelope. */
  addLog(event) {
    if (this.buffer.applyLog(event)) this._schedule();
  }

  setFilter(text) {
    const needle = text.trim().toLowerCase();
    if (needle === this.filter) return;
    this.filter = needle;
    // A run's separator stays while any of its lines match: line numbers start again with each
    // run, and the separator says which run a line is from.
    this._matchedRuns.clear();
    for (const row of this.buffer.rows.values()) {
      if (row.kind === "log" && rowMatches(row, needle)) this._matchedRuns.add(row.run);
    }
    for (const row of this.buffer.rows.values()) {
      if (row.el) row.el.hidden = !this._visible(row);
    }
    this._renderPlaceholder();
    this._renderStatus();
    if (this.follow) this._scrollToBottom();
  }

  /** Scroll to the newest line and follow again. */
  resumeFollow() {
    this.follow = true;
    this.unseen = 0;
    this._scrollToBottom();
    this._renderResume();
  }

  /** Is `row` shown under the current filter? A separator is while its run has a match. */
  _visible(row) {
    if (!this.filter) return !row.lead;
    return row.kind === "sep" ? this._matchedRuns.has(row.run) : rowMatches(row, this.filter);
  }

  /** Under a filter, a log row that matches (new or rewritten) brings its run's separator back. */
  _noteMatch(row) {
    if (!this.filter || row.kind !== "log" || !rowMatches(row, this.filter) || this._matchedRuns.has(row.run)) return;
    this._matchedRuns.add(row.run);
    const sep = this.buffer.rows.get(`sep:${row.run}`);
    if (sep && sep.el) sep.el.hidden = false;
  }

  _schedule() {
    if (!this._frame) this._frame = requestAnimationFrame(() => this._sync());
  }

  // Bring the DOM in line with the buffer: one pass per frame, whatever arrived meanwhile.
  _sync() {
    this._frame = 0;
    const { cleared, removed, added, updated } = this.buffer.takeChanges();
    const lines = this.els.lines;
    if (cleared) lines.replaceChildren();
    for (const row of removed) {
      row.el.remove();
      row.el = null;
    }
    for (const row of updated) {
      fillRow(row.el, row);
      if (this.filter) {
        this._noteMatch(row);
        row.el.hidden = !this._visible(row); // a partial line completed may match now, or not
      }
    }
    if (added.length) {
      // Widen the line-number gutter for every row at once when the numbers get longer.
      const last = added[added.length - 1];
      const digits = Math.max(cleared ? 4 : this._digits, String(last.lineNum ?? 0).length);
      if (digits !== this._digits) {
        this._digits = digits;
        lines.style.setProperty("--ln-digits", String(digits));
      }
      const frag = document.createDocumentFragment();
      for (const row of added) {
        row.el = makeRow(row);
        this._noteMatch(row);
        row.el.hidden = !this._visible(row);
        frag.appendChild(row.el);
      }
      lines.appendChild(frag);
      if (!this.follow) this.unseen += added.length;
    }
    this._renderPlaceholder();
    this._renderStatus();
    this._renderResume();
    if (this.follow) this._scrollToBottom();
  }

  _scrollToBottom() {
    const s = this.els.scroller;
    s.scrollTop = s.scrollHeight;
    this._autoTop = s.scrollTop;
  }

  _onScroll() {
    const s = this.els.scroller;
    const atBottom = s.scrollHeight - s.scrollTop - s.clientHeight <= BOTTOM_SLACK_PX;
    if (this.follow) {
      // Only a move up from where we put it is the user's: our own scrolls and the browser's
      // anchoring adjustments while trimming never move up from the bottom.
      if (!atBottom && s.scrollTop < this._autoTop - 2) {
        this.follow = false;
        this._renderResume();
      }
    } else if (atBottom) {
      this.resumeFollow();
    }
  }

  _renderPlaceholder() {
    const p = this.els.placeholder;
    let text = "";
    if (this.buffer.size === 0) text = this.emptyText;
    else if (this.filter && !this._anyVisible()) text = "No lines match the filter.";
    p.textContent = text;
    p.hidden = text === "";
  }

  _anyVisible() {
    for (const row of this.buffer.rows.values()) if (row.kind === "log" && rowMatches(row, this.filter)) return true;
    return false;
  }

  _renderStatus() {
    let n = 0;
    let shown = 0;
    for (const row of this.buffer.rows.values()) {
      if (row.kind !== "log") continue; // run separators are not lines
      n++;
      if (this.filter && rowMatches(row, this.filter)) shown++;
    }
    let text = `${n.toLocaleString("en-US")} line${n === 1 ? "" : "s"}`;
    if (this.filter) {
      text = `${shown.toLocaleString("en-US")} of ${text} match${shown === 1 ? "es" : ""}`;
    }
    if (this.buffer.evictedTotal) {
      text += ` (oldest ${this.buffer.evictedTotal.toLocaleString("en-US")} dropped)`;
    }
    this.els.status.textContent = text;
  }

  _renderResume() {
    const b = this.els.resume;
    b.hidden = this.follow;
    b.textContent = this.unseen
      ? `↓ ${this.unseen.toLocaleString("en-US")} new — resume auto-scroll`
      : "↓ Resume auto-scroll";
  }
}

function makeRow(row) {
  const el = document.createElement("div");
  if (row.kind === "sep") {
    el.className = "row sep";
    el.textContent = `run ${row.run}`;
    return el;
  }
  const ln = document.createElement("span");
  ln.className = "ln";
  const tx = document.createElement("span");
  tx.className = "tx";
  el.append(ln, tx);
  fillRow(el, row);
  return el;
}

function fillRow(el, row) {
  el.className = "row log" + (row.partial ? " partial" : "") + (row.continuation ? " cont" : "");
  el.dataset.key = row.key;
  el.dataset.line = String(row.lineNum);
  el.dataset.id = String(row.id);
  const [ln, tx] = el.children;
  ln.textContent = String(row.lineNum);
  tx.replaceChildren(renderRuns(row.runs));
}
