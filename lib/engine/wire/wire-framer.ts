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
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    for (;;) {
      const hash = this.#buf.indexOf(HASH);
      if (hash < 0) {
        if (this.#buf.length > MAX_PREFIX) return this.#fail('no length prefix');
        return;
      }
      if (hash === 0 || hash > MAX_PREFIX) return this.#fail('bad length prefix');
      let len = 0;
      for (let i = 0; i < hash; i++) {
        const d = this.#buf[i]! - 0x30;
        if (d < 0 || d > 9) return this.#fail('non-numeric length prefix');
        len = len * 10 + d;
      }
      if (len === 0 || len > this.maxMessage) return this.#fail(`message length ${len} out of range`);
      const end = hash + 1 + len;
      if (this.#buf.length < end) return;
      const payload = this.#buf.toString('utf8', hash + 1, end);
      this.#buf = this.#buf.subarray(end);
      this.onMessage(payload);
      if (this.#failed) return;
    }
  }

  #fail(reason: string): void {
    this.#failed = true;
    this.#buf = Buffer.alloc(0);
    this.onError(reason);
  }
}

export function frame(payload: string): string {
  return `${Buffer.byteLength(payload, 'utf8')}#${payload}`;
}
