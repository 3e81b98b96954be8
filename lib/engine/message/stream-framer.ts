/**
 * Cuts a byte stream (TCP, TLS) into SIP messages (RFC 3261 section 18.3): the header block ends
 * at the first CRLFCRLF and Content-Length, mandatory on streams, gives the body size.
 *
 * Between messages a CRLFCRLF is an RFC 5626 section 4.4.1 keep-alive ping (reported through
 * `onKeepAlive` so the transport can answer with a single CRLF "pong") and any other CR/LF is
 * skipped (RFC 3261 section 7.5). Any framing error is reported once through `onError`, after
 * which the framer ignores all further data: the transport should close the connection.
 */

export interface StreamFramerOptions {
  /** largest message (header block plus body) accepted, in bytes */
  maxSize: number;
  /** receives each message's exact bytes; the buffer is the receiver's to keep */
  onMessage: (buf: Buffer) => void;
  /** called once on a framing error; nothing is delivered afterwards */
  onError: (reason: string) => void;
  /** called for each CRLFCRLF keep-alive ping */
  onKeepAlive?: () => void;
}

const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');
const CR = 0x0d;
const LF = 0x0a;

/**
 * Content-Length of a header block (bytes of the block without its final CRLFCRLF), also in its
 * compact form `l` (RFC 3261 section 7.3.3), folded lines unfolded first. Returns -1 when
 * absent, -2 when malformed or when two values disagree.
 */
export function headerContentLength(head: Buffer): number {
  // latin1 maps each byte to one char: cheap, and enough to find an ASCII header
  const text = head.toString('latin1').replace(/\r\n[ \t]+/g, ' ');
  let found = -1;
  let pos = 0;
  while (pos < text.length) {
    let end = text.indexOf('\r\n', pos);
    if (end < 0) end = text.length;
    const c = text.charCodeAt(pos) | 0x20;
    if (c === 0x63 /* c */ || c === 0x6c /* l */) {
      const colon = text.indexOf(':', pos);
      if (colon > pos && colon < end) {
        const name = text.slice(pos, colon).trimEnd().toLowerCase();
        if (name === 'content-length' || name === 'l') {
          const v = text.slice(colon + 1, end).trim();
          if (!/^[0-9]{1,10}$/.test(v)) return -2;
          const n = Number(v);
          if (found >= 0 && n !== found) return -2;
          found = n;
        }
      }
    }
    pos = end + 2;
  }
  return found;
}

export class StreamFramer {
  private readonly maxSize: number;
  private readonly onMessage: (buf: Buffer) => void;
  private readonly onError: (reason: string) => void;
  private readonly onKeepAlive: (() => void) | undefined;
  /** bytes held back between pushes: store[0, held) */
  private store: Buffer = Buffer.alloc(0);
  private held = 0;
  /** where the CRLFCRLF search resumes in the held bytes (avoids rescanning a growing header) */
  private scanFrom = 0;
  private failed = false;

  constructor(opts: StreamFramerOptions) {
    this.maxSize = opts.maxSize;
    this.onMessage = opts.onMessage;
    this.onError = opts.onError;
    this.onKeepAlive = opts.onKeepAlive;
  }

  /**
   * Bytes of a partial message held back, waiting for the rest (0 when idle). A held CR/LF
   * prefix that may still become a keep-alive ping does not count: it is not a message.
   */
  get buffered(): number {
    if (this.held <= 3) {
      for (let i = 0; i < this.held; i++) {
        const b = this.store[i];
        if (b !== CR && b !== LF) return this.held;
      }
      return 0;
    }
    return this.held;
  }

  /** True once a framing error has been reported. */
  get closed(): boolean {
    return this.failed;
  }

  /** Feeds the next chunk from the stream. The framer may keep views of `chunk`: do not reuse it. */
  push(chunk: Buffer): void {
    if (this.failed || chunk.length === 0) return;
    if (this.held === 0) {
      // Fast path: frame straight from the chunk, handing out views of it.
      this.scanFrom = 0;
      const used = this.drain(chunk, chunk.length, false);
      if (!this.failed && used < chunk.length) this.hold(chunk.subarray(used), used);
      return;
    }
    this.append(chunk);
    const used = this.drain(this.store, this.held, true);
    if (this.failed) return;
    if (used > 0) {
      this.store.copyWithin(0, used, this.held);
      this.held -= used;
      this.scanFrom = Math.max(0, this.scanFrom - used);
    }
  }

  /** Keeps the unconsumed tail of a chunk, `used` bytes into it. */
  private hold(rest: Buffer, used: number): void {
    if (this.store.length < rest.length) this.store = Buffer.allocUnsafe(Math.max(rest.length * 2, 1024));
    rest.copy(this.store, 0);
    this.held = rest.length;
    this.scanFrom = Math.max(0, this.scanFrom - used);
  }

  private append(chunk: Buffer): void {
    const need = this.held + chunk.length;
    if (need > this.store.length) {
      const bigger = Buffer.allocUnsafe(Math.max(need, this.store.length * 2));
      this.store.copy(bigger, 0, 0, this.held);
      this.store = bigger;
    }
    chunk.copy(this.store, this.held);
    this.held = need;
  }

  private fail(reason: string): void {
    this.failed = true;
    this.store = Buffer.alloc(0);
    this.held = 0;
    this.onError(reason);
  }

  /**
   * Delivers every complete message in buf[0, len). Returns how many bytes were consumed.
   * `copy` says whether delivered messages must be copied out (buf is the reusable store).
   */
  private drain(store: Buffer, len: number, copy: boolean): number {
    // searches must not see the stale bytes beyond `len`
    const buf = len === store.length ? store : store.subarray(0, len);
    let pos = 0;
    while (pos < len && !this.failed) {
      // Between messages: keep-alives and stray line ends.
      const b = buf[pos];
      if (b === CR || b === LF) {
        if (b === CR && pos + 3 < len && buf[pos + 1] === LF && buf[pos + 2] === CR && buf[pos + 3] === LF) {
          pos += 4;
          this.scanFrom = 0;
          this.onKeepAlive?.();
          continue;
        }
        if (b === CR) {
          if (pos + 1 >= len) break; // wait: could start a ping
          if (buf[pos + 1] !== LF) {
            pos += 1;
            continue;
          }
          // CRLF: a ping needs CRLFCRLF; wait while the rest may still be one
          if (pos + 2 >= len || (buf[pos + 2] === CR && pos + 3 >= len)) break;
          pos += 2;
          continue;
        }
        pos += 1;
        continue;
      }
      // Header block.
      const from = Math.max(pos, this.scanFrom);
      const sep = buf.indexOf(CRLFCRLF, from);
      if (sep < 0) {
        if (len - pos > this.maxSize) this.fail('SIP header block exceeds ' + this.maxSize + ' bytes');
        else this.scanFrom = Math.max(pos, len - 3);
        break;
      }
      const headEnd = sep + 4;
      if (headEnd - pos > this.maxSize) {
        this.fail('SIP header block exceeds ' + this.maxSize + ' bytes');
        break;
      }
      const cl = headerContentLength(buf.subarray(pos, sep));
      if (cl === -1) {
        this.fail('Content-Length missing on a stream transport');
        break;
      }
      if (cl < 0) {
        this.fail('Malformed Content-Length');
        break;
      }
      const total = headEnd - pos + cl;
      if (total > this.maxSize) {
        this.fail('SIP message of ' + total + ' bytes exceeds ' + this.maxSize);
        break;
      }
      this.scanFrom = sep; // the header end is known; keep it while the body arrives
      if (len - pos < total) break;
      const msg = buf.subarray(pos, pos + total);
      pos += total;
      this.scanFrom = 0;
      this.onMessage(copy ? Buffer.from(msg) : msg);
    }
    return pos;
  }
}
