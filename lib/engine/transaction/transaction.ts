import { detach, type SipRequest, type SipResponse } from '../message/sip-message';
import { type Clock, NamedTimer, type TimerValues } from './timers';

/** What every transaction is given by the layer that creates it. */
export interface TransactionContext {
  readonly clock: Clock;
  readonly timers: TimerValues;
  /** true for TCP: no retransmissions, zero-length wait timers (RFC 3261 section 17) */
  readonly reliable: boolean;
  /** called once when the transaction reaches `terminated` */
  readonly onTerminated: (tx: Transaction) => void;
}

export type TransactionKind = 'ict' | 'nict' | 'ist' | 'nist';

/** Common lifecycle: one `setState`, idempotent termination, timers cleared on the way out. */
export abstract class Transaction {
  abstract readonly kind: TransactionKind;
  abstract get state(): string;
  readonly createdAt: number;
  /** the RFC 3261 section 17.1.3 / 17.2.3 matching key */
  readonly key: string;
  /** server transactions: the merged-request key (section 8.2.2.2), set by the transaction layer */
  mergeKey: string | undefined;
  protected readonly timers: NamedTimer[] = [];
  #terminated = false;

  constructor(
    /** the id given to applications in the wire protocol */
    readonly id: string,
    key: string,
    readonly request: SipRequest,
    protected readonly ctx: TransactionContext,
  ) {
    this.createdAt = ctx.clock.now();
    // the key is made of slices of the request's text: a copy lets that text go once answered
    this.key = detach(key);
  }

  protected timer(name: string): NamedTimer {
    const t = new NamedTimer(name, this.ctx.clock);
    this.timers.push(t);
    return t;
  }

  get terminated(): boolean {
    return this.#terminated;
  }

  /** Moves to `terminated` once: clears every timer and tells the layer. */
  protected terminate(): void {
    if (this.#terminated) return;
    this.#terminated = true;
    for (const t of this.timers) t.cancel();
    this.ctx.onTerminated(this);
  }

  /** Ends the transaction from outside (engine shutdown, transport failure). */
  destroy(): void {
    this.terminate();
  }
}

/** A client transaction's upward interface (the transaction user). */
export interface ClientTransactionUser {
  onResponse(res: SipResponse): void;
  /** Timer B/F fired or the transport failed: the TU behaves as if it got 408 / 503 */
  onTimeout(): void;
}
