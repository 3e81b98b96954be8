import type { SipRequest, SipResponse } from '../message/sip-message';
import type { TimerHandle } from '../transaction/timers';
import type { TransportName } from '../transport/transport';

export type DialogRole = 'uas' | 'uac';
export type DialogState = 'early' | 'confirmed' | 'terminated';

/** What the UAS side keeps while it waits for the ACK of a 2xx (RFC 3261 section 13.3.1.4). */
export interface PendingAck {
  readonly cseq: number;
  readonly response: SipResponse;
  /** the transaction id the INVITE had, given to the application with the ACK */
  readonly txnId: string;
  retransmit: TimerHandle | undefined;
  giveUp: TimerHandle | undefined;
}

/**
 * Dialog state, RFC 3261 section 12. The id is drachtio's: `<Call-ID>;from-tag=<tag>` where the
 * tag is the From tag of the request that created the dialog (ours for a UAC dialog, the peer's
 * for a UAS dialog); drachtio-srf relies on that format.
 */
export class Dialog {
  state: DialogState = 'early';
  /** RFC 3261 section 12.1: the route set, in the order requests use it */
  routeSet: string[] = [];
  remoteTarget: string;
  localSeq: number;
  remoteSeq: number | undefined;
  /** UAS side: the 2xx being retransmitted until the ACK comes */
  pendingAck: PendingAck | undefined;
  /** UAC side: CSeq of the INVITE whose 2xx still needs the application's ACK */
  pendingInviteSeq: number | undefined;
  /** UAC side: the last ACK sent, re-sent when the 2xx is retransmitted */
  lastAck: { cseq: number; data: SipRequest } | undefined;
  /** RFC 3262: the next RSeq for reliable provisional responses we send */
  nextRSeq = 1 + Math.floor(Math.random() * 1000);
  /** transport the dialog's requests use */
  transport: TransportName;
  readonly createdAt = Date.now();

  constructor(
    readonly id: string,
    readonly role: DialogRole,
    readonly callId: string,
    readonly localTag: string,
    readonly remoteTag: string,
    /** local and remote URIs with their display names, without tags (From/To of requests) */
    readonly localUri: string,
    readonly remoteUri: string,
    remoteTarget: string,
    localSeq: number,
    /** the wire connection of the application that owns the dialog */
    readonly owner: string,
    transport: TransportName,
    /** the dialog was created by this method (INVITE or SUBSCRIBE) */
    readonly method: string,
  ) {
    this.remoteTarget = remoteTarget;
    this.localSeq = localSeq;
    this.transport = transport;
  }

  /** Clears the ACK wait (timers) and returns what was pending. */
  clearPendingAck(): PendingAck | undefined {
    const p = this.pendingAck;
    if (!p) return undefined;
    p.retransmit?.cancel();
    p.giveUp?.cancel();
    this.pendingAck = undefined;
    return p;
  }

  terminate(): void {
    this.state = 'terminated';
    this.clearPendingAck();
  }
}

export function dialogId(callId: string, fromTag: string): string {
  return `${callId};from-tag=${fromTag}`;
}

/** A request's From-tag and To-tag decide which dialog it belongs to (section 12.2.2). */
export class DialogRegistry {
  readonly #byId = new Map<string, Dialog>();
  created = 0;

  get size(): number {
    return this.#byId.size;
  }

  add(d: Dialog): void {
    this.#byId.set(d.id, d);
    this.created++;
  }

  get(id: string): Dialog | undefined {
    return this.#byId.get(id);
  }

  /** Finds the dialog of an incoming request by Call-ID and tags. */
  match(callId: string, fromTag: string | undefined, toTag: string | undefined): Dialog | undefined {
    if (fromTag === undefined || toTag === undefined) return undefined;
    const uas = this.#byId.get(dialogId(callId, fromTag));
    if (uas && uas.role === 'uas' && uas.localTag === toTag) return uas;
    const uac = this.#byId.get(dialogId(callId, toTag));
    if (uac && uac.role === 'uac' && uac.remoteTag === fromTag) return uac;
    return undefined;
  }

  remove(d: Dialog): void {
    d.terminate();
    if (this.#byId.get(d.id) === d) this.#byId.delete(d.id);
  }

  ownedBy(owner: string): Dialog[] {
    return [...this.#byId.values()].filter((d) => d.owner === owner);
  }

  all(): IterableIterator<Dialog> {
    return this.#byId.values();
  }
}
