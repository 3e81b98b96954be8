import type { SipRequest, SipResponse } from '../message/sip-message';
import { deriveFromInvite } from './derived-request';
import { type ClientTransactionUser, Transaction, type TransactionContext } from './transaction';

export type ClientInviteState = 'calling' | 'proceeding' | 'completed' | 'accepted' | 'terminated';

/**
 * INVITE client transaction, RFC 3261 section 17.1.1 with the Accepted state of RFC 6026
 * section 7.2: a 2xx moves it to `accepted` so retransmitted 2xx still reach the TU (which
 * ACKs each one) until Timer M fires.
 */
export class ClientInviteTransaction extends Transaction {
  readonly kind = 'ict' as const;
  #state: ClientInviteState = 'calling';
  readonly #timerA = this.timer('A');
  readonly #timerB = this.timer('B');
  readonly #timerD = this.timer('D');
  readonly #timerM = this.timer('M');
  #ack: SipRequest | undefined;
  /** the first provisional has arrived: a CANCEL may now be sent (RFC 3261 section 9.1) */
  provisionalSeen = false;

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

  get state(): ClientInviteState {
    return this.#state;
  }

  #setState(s: ClientInviteState): void {
    this.#state = s;
    if (s === 'terminated') this.terminate();
  }

  /** Sends the INVITE and arms Timer A (unreliable transports) and Timer B. */
  start(): void {
    this.send(this.request);
    const { T1 } = this.ctx.timers;
    if (!this.ctx.reliable) this.#armA(T1);
    this.#timerB.start(64 * T1, () => {
      // Timer B: no final response (section 17.1.1.2)
      if (this.#state === 'calling' || this.#state === 'proceeding') {
        this.#setState('terminated');
        this.tu.onTimeout();
      }
    });
  }

  #armA(interval: number): void {
    this.#timerA.start(interval, () => {
      if (this.#state !== 'calling') return;
      this.send(this.request);
      this.#armA(interval * 2);
    });
  }

  receiveResponse(res: SipResponse): void {
    const s = res.status;
    switch (this.#state) {
      case 'calling':
      case 'proceeding':
        if (s < 200) {
          this.#timerA.cancel();
          this.provisionalSeen = true;
          this.#state = 'proceeding';
          this.tu.onResponse(res);
        } else if (s < 300) {
          this.#timerA.cancel();
          this.#timerB.cancel();
          this.#state = 'accepted';
          this.#timerM.start(64 * this.ctx.timers.T1, () => this.#setState('terminated'));
          this.tu.onResponse(res);
        } else {
          this.#timerA.cancel();
          this.#timerB.cancel();
          this.#state = 'completed';
          this.#sendAck(res);
          this.tu.onResponse(res);
          // Timer D: 32 s (64*T1 with the default T1) for unreliable transports, zero for reliable
          this.#timerD.start(this.ctx.reliable ? 0 : 64 * this.ctx.timers.T1, () =>
            this.#setState('terminated'),
          );
        }
        return;
      case 'completed':
        // a retransmitted final response is ACKed again and not passed up
        if (s >= 300 && this.#ack) this.send(this.#ack);
        return;
      case 'accepted':
        // RFC 6026: retransmitted 2xx go to the TU, which sends the ACK again
        if (s >= 200 && s < 300) this.tu.onResponse(res);
        return;
      case 'terminated':
        return;
      default: {
        const never: never = this.#state;
        throw new Error(`unknown state ${String(never)}`);
      }
    }
  }

  /** Builds the ACK for a non-2xx final response (section 17.1.1.3). */
  #sendAck(res: SipResponse): void {
    const ack = deriveFromInvite(this.request, 'ACK', res.get('to') ?? this.request.get('to') ?? '');
    ack.append('Content-Length', '0');
    this.#ack = ack;
    this.send(ack);
  }

  /** Transport failure while sending (section 17.1.4): behave as a 503. */
  transportError(): void {
    if (this.#state === 'calling' || this.#state === 'proceeding') {
      this.#setState('terminated');
      this.tu.onTimeout();
    }
  }
}
