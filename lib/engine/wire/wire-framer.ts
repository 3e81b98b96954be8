/**
 * drachtio wire protocol framing: `<byte length>#<payload>`, where the payload is UTF-8 and the
 * length counts its bytes (not characters: SIP may carry UTF-8 display names). A payload is
 * `<msgId>|<command>|<args...>` and, for commands that carry a SIP message, CRLF then the message.
 */

const HASH = 0x23;
/** the longest length prefix accepted before a '#' must appear */
const MAX_PREFIX = 10;

export class WireFramer {
  #buf: Buffer = Buffer.alloc(0);
  #failed = false;

  constructor(
    readonly maxMessage: number,
    readonly onMessage: (payload: string) => void,
    readonly onError: (reason: string) => void,
  ) {}

  push(chunk: Buffer): void {
    if (this.#failed) return;
    // most chunks hold whole frames: only a partial frame's bytes are carried to the next chunk
    const buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    let at = 0;
    for (;;) {
      const hash = buf.indexOf(HASH, at);
      if (hash < 0) {
        if (buf.length - at > MAX_PREFIX) return this.#fail('no length prefix');
        break;
      }
      if (hash === at || hash - at > MAX_PREFIX) return this.#fail('bad length prefix');
      let len = 0;
      for (let i = at; i < hash; i++) {
        const d = buf[i]! - 0x30;
        if (d < 0 || d > 9) return this.#fail('non-numeric length prefix');
        len = len * 10 + d;
      }
      if (len === 0 || len > this.maxMessage) return this.#fail(`message length ${len} out of range`);
      const end = hash + 1 + len;
      if (buf.length < end) break;
      const payload = buf.toString('utf8', hash + 1, end);
      at = end;
      this.onMessage(payload);
      if (this.#failed) return;
    }
    // keep a copy of the partial frame, so the chunk it came in is not held
    this.#buf = at >= buf.length ? EMPTY : Buffer.from(buf.subarray(at));
  }

  #fail(reason: string): void {
    this.#failed = true;
    this.#buf = EMPTY;
    this.onError(reason);
  }
}

const EMPTY = Buffer.alloc(0);
