import type { SipRequest, SipResponse } from '../message/sip-message';
import { type ClientTransactionUser, Transaction, type TransactionContext } from './transaction';

export type ClientNonInviteState = 'trying' | 'proceeding' | 'completed' | 'terminated';

/** Non-INVITE client transaction, RFC 3261 section 17.1.2 (Timers E, F, K). */
export class ClientNonInviteTransaction extends Transaction {
  readonly kind = 'nict' as const;
  #state: ClientNonInviteState = 'trying';
  readonly #timerE = this.timer('E');
  readonly #timerF = this.timer('F');
  readonly #timerK = this.timer('K');

  constructor(
    id: string,
    key: string,
    request: SipRequest,
    ctx: TransactionContext,
    readonly send: (m: SipRequest) => void,
    readonly tu: ClientTransactionUser,
  ) {
    super(id, key, request, ctx);
  }

  get state(): ClientNonInviteState {
    return this.#state;
  }

  start(): void {
    this.send(this.request);
    const { T1 } = this.ctx.timers;
    if (!this.ctx.reliable) this.#armE(T1);
    this.#timerF.start(64 * T1, () => {
      // Timer F: no final response (section 17.1.2.2)
      if (this.#state === 'trying' || this.#state === 'proceeding') {
        this.#state = 'terminated';
        this.terminate();
        this.tu.onTimeout();
      }
    });
  }

  /** Timer E doubles up to T2 while trying, and stays at T2 once proceeding. */
  #armE(interval: number): void {
    this.#timerE.start(interval, () => {
      if (this.#state !== 'trying' && this.#state !== 'proceeding') return;
      this.send(this.request);
      const next = this.#state === 'proceeding' ? this.ctx.timers.T2 : Math.min(interval * 2, this.ctx.timers.T2);
      this.#armE(next);
    });
  }

  receiveResponse(res: SipResponse): void {
    switch (this.#state) {
      case 'trying':
      case 'proceeding':
        if (res.status < 200) {
          this.#state = 'proceeding';
          this.tu.onResponse(res);
          return;
        }
        this.#state = 'completed';
        this.#timerE.cancel();
        this.#timerF.cancel();
        this.tu.onResponse(res);
        this.#timerK.start(this.ctx.reliable ? 0 : this.ctx.timers.T4, () => {
          this.#state = 'terminated';
          this.terminate();
        });
        return;
      case 'completed':
      case 'terminated':
        return; // retransmitted responses are absorbed
      default: {
        const never: never = this.#state;
        throw new Error(`unknown state ${String(never)}`);
      }
    }
  }

  transportError(): void {
    if (this.#state === 'trying' || this.#state === 'proceeding') {
      this.#state = 'terminated';
      this.terminate();
      this.tu.onTimeout();
    }
  }
}
