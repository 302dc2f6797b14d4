// Server-Sent Events on the wire -> frames: the WHATWG parsing algorithm, incremental, for
// streams read with fetch() (the dashboard's and the SSE test page's). EventSource would parse
// them too, but it cannot send an Authorization header (the pages keep the token out of URLs:
// see session.js) and it hides the raw frames that the test page shows.

/**
 * An incremental SSE parser (the WHATWG algorithm): feed() text as it arrives; onFrame gets
 * {raw, event, data, id, retry, comment} for every frame (blank-line terminated block),
 * with `raw` the exact text received, line breaks included.
 */
export class SSEParser {
  constructor(onFrame) {
    this.onFrame = onFrame;
    this.buf = "";
    this.reset();
  }
  reset() {
    this.raw = "";
    this.data = [];
    this.event = "";
    this.id = null;
    this.retry = null;
    this.comment = false;
    this.fields = 0;
  }
  feed(text, final = false) {
    this.buf += text;
    let start = 0;
    for (;;) {
      const cr = this.buf.indexOf("\r", start);
      const lf = this.buf.indexOf("\n", start);
      if (cr < 0 && lf < 0) break;
      let end, next;
      if (cr >= 0 && (lf < 0 || cr < lf)) {
        // A CR at the very end may be the first half of CRLF: wait for more.
        if (cr === this.buf.length - 1 && !final) break;
        end = cr;
        next = this.buf[cr + 1] === "\n" ? cr + 2 : cr + 1;
      } else {
        end = lf;
        next = lf + 1;
      }
      this.line(this.buf.slice(start, end), this.buf.slice(start, next));
      start = next;
    }
    this.buf = this.buf.slice(start);
  }
  line(line, raw) {
    this.raw += raw;
    if (line === "") {
      if (this.fields || this.comment) {
        this.onFrame({
          raw: this.raw,
          event: this.event || "message",
          data: this.data.length ? this.data.join("\n") : null,
          id: this.id,
          retry: this.retry,
          comment: this.comment && !this.fields,
        });
      }
      this.reset();
      return;
    }
    if (line[0] === ":") {
      this.comment = true;
      return;
    }
    const colon = line.indexOf(":");
    const name = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value[0] === " ") value = value.slice(1);
    this.fields++;
    if (name === "data") this.data.push(value);
    else if (name === "event") this.event = value;
    else if (name === "id" && !value.includes("\0")) this.id = value;
    else if (name === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
  }
}
