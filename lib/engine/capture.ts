/**
 * Optional per-call SIP capture: every message in and out, with a timestamp and the peer, kept
 * per Call-ID in memory (bounded in calls and bytes per call) for operators' ladder diagrams.
 */
export interface CapturedMessage {
  readonly t: number;
  readonly dir: 'in' | 'out';
  readonly transport: string;
  readonly peer: string;
  readonly local: string;
  readonly text: string;
}

export class CallCapture {
  readonly #calls = new Map<string, { bytes: number; messages: CapturedMessage[]; truncated: boolean }>();

  constructor(
    readonly maxCalls: number,
    readonly maxBytesPerCall: number,
  ) {}

  record(callId: string, m: CapturedMessage): void {
    let c = this.#calls.get(callId);
    if (!c) {
      if (this.#calls.size >= this.maxCalls) {
        const oldest = this.#calls.keys().next().value;
        if (oldest !== undefined) this.#calls.delete(oldest);
      }
      c = { bytes: 0, messages: [], truncated: false };
      this.#calls.set(callId, c);
    }
    if (c.bytes + m.text.length > this.maxBytesPerCall) {
      c.truncated = true;
      return;
    }
    c.bytes += m.text.length;
    c.messages.push(m);
  }

  get(callId: string): { messages: CapturedMessage[]; truncated: boolean } | undefined {
    const c = this.#calls.get(callId);
    return c ? { messages: c.messages, truncated: c.truncated } : undefined;
  }

  get size(): number {
    return this.#calls.size;
  }
}
