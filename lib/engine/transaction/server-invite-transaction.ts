import type { SipRequest, SipResponse } from '../message/sip-message';
import { Transaction, type TransactionContext } from './transaction';

export type ServerInviteState = 'proceeding' | 'completed' | 'confirmed' | 'accepted' | 'terminated';

export interface ServerInviteUser {
  /** Timer H fired: the ACK for a non-2xx final response never came (section 17.2.1) */
  onAckTimeout?(tx: ServerInviteTransaction): void;
}

/**
 * INVITE server transaction, RFC 3261 section 17.2.1 with RFC 6026's Accepted state: after a
 * 2xx the transaction absorbs retransmitted INVITEs for Timer L while the UA core retransmits
 * the 2xx itself (section 13.3.1.4).
 */
export class ServerInviteTransaction extends Transaction {
  readonly kind = 'ist' as const;
  #state: ServerInviteState = 'proceeding';
  readonly #timerG = this.timer('G');
  readonly #timerH = this.timer('H');
  readonly #timerI = this.timer('I');
  readonly #timerL = this.timer('L');
  #last: SipResponse | undefined;
  /** the first final response sent, for the wire protocol and CANCEL handling */
  finalStatus = 0;
  cancelled = false;

  constructor(
    id: string,
    key: string,
    request: SipRequest,
    ctx: TransactionContext,
    readonly send: (m: SipResponse) => void,
    readonly user: ServerInviteUser = {},
  ) {
    super(id, key, request, ctx);
  }

  get state(): ServerInviteState {
    return this.#state;
  }

  get lastResponse(): SipResponse | undefined {
    return this.#last;
  }

  /** A retransmitted INVITE (section 17.2.1): resend the last response in proceeding/completed. */
  receiveInvite(): void {
    if ((this.#state === 'proceeding' || this.#state === 'completed') && this.#last) this.send(this.#last);
  }

  /** The ACK for a non-2xx final response matched this transaction. */
  receiveAck(): void {
    if (this.#state !== 'completed') return;
    this.#state = 'confirmed';
    this.#timerG.cancel();
    this.#timerH.cancel();
    this.#timerI.start(this.ctx.reliable ? 0 : this.ctx.timers.T4, () => this.#end());
  }

  /** The TU responds. Returns false when the state no longer allows a response. */
  respond(res: SipResponse): boolean {
    const s = res.status;
    switch (this.#state) {
      case 'proceeding':
        this.#last = res;
        this.send(res);
        if (s < 200) return true;
        this.finalStatus = s;
        if (s < 300) {
          this.#state = 'accepted';
          // the core retransmits a 2xx itself (13.3.1.4): the transaction no longer needs it
          this.#last = undefined;
          this.#timerL.start(64 * this.ctx.timers.T1, () => this.#end());
          return true;
        }
        this.#state = 'completed';
        if (!this.ctx.reliable) this.#armG(this.ctx.timers.T1);
        this.#timerH.start(64 * this.ctx.timers.T1, () => {
          if (this.#state !== 'completed') return;
          this.#end();
          this.user.onAckTimeout?.(this);
        });
        return true;
      case 'accepted':
        // further 2xx (retransmissions by the core, or other forks) pass through
        if (s >= 200 && s < 300) {
          this.send(res);
          return true;
        }
        return false;
      case 'completed':
      case 'confirmed':
      case 'terminated':
        return false;
      default: {
        const never: never = this.#state;
        throw new Error(`unknown state ${String(never)}`);
      }
    }
  }

  #armG(interval: number): void {
    this.#timerG.start(interval, () => {
      if (this.#state !== 'completed' || !this.#last) return;
      this.send(this.#last);
      this.#armG(Math.min(interval * 2, this.ctx.timers.T2));
    });
  }

  #end(): void {
    this.#state = 'terminated';
    this.terminate();
  }
}
