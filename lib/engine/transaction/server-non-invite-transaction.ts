import type { SipRequest, SipResponse } from '../message/sip-message';
import { Transaction, type TransactionContext } from './transaction';

export type ServerNonInviteState = 'trying' | 'proceeding' | 'completed' | 'terminated';

/** Non-INVITE server transaction, RFC 3261 section 17.2.2 (Timer J). */
export class ServerNonInviteTransaction extends Transaction {
  readonly kind = 'nist' as const;
  #state: ServerNonInviteState = 'trying';
  readonly #timerJ = this.timer('J');
  #last: SipResponse | undefined;
  finalStatus = 0;

  constructor(
    id: string,
    key: string,
    request: SipRequest,
    ctx: TransactionContext,
    readonly send: (m: SipResponse) => void,
  ) {
    super(id, key, request, ctx);
  }

  get state(): ServerNonInviteState {
    return this.#state;
  }

  get lastResponse(): SipResponse | undefined {
    return this.#last;
  }

  /** A retransmitted request: absorbed while trying, answered with the last response after. */
  receiveRequest(): void {
    if ((this.#state === 'proceeding' || this.#state === 'completed') && this.#last) this.send(this.#last);
  }

  respond(res: SipResponse): boolean {
    switch (this.#state) {
      case 'trying':
      case 'proceeding':
        this.#last = res;
        this.send(res);
        if (res.status < 200) {
          this.#state = 'proceeding';
          return true;
        }
        this.finalStatus = res.status;
        this.#state = 'completed';
        this.#timerJ.start(this.ctx.reliable ? 0 : 64 * this.ctx.timers.T1, () => {
          this.#state = 'terminated';
          this.terminate();
        });
        return true;
      case 'completed':
      case 'terminated':
        return false;
      default: {
        const never: never = this.#state;
        throw new Error(`unknown state ${String(never)}`);
      }
    }
  }
}
