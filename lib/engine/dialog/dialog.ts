import { ownString, type SipResponse } from '../message/sip-message';
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
  #routeSet: readonly string[] = [];
  #remoteTarget: string;
  localSeq: number;
  remoteSeq: number | undefined;
  /** UAS side: the 2xx being retransmitted until the ACK comes */
  pendingAck: PendingAck | undefined;
  /** UAC side: CSeq of the INVITE whose 2xx still needs the application's ACK */
  pendingInviteSeq: number | undefined;
  /**
   * UAC side: the last ACK sent, its bytes one per character (latin1), re-sent when the 2xx is
   * retransmitted; kept while the INVITE's client transaction can still see 2xx retransmissions
   */
  #ack: string | undefined;
  #ackSeq = -1;
  /** RFC 3262: the next RSeq for reliable provisional responses we send */
  nextRSeq = 1 + Math.floor(Math.random() * 1000);
  /** transport the dialog's requests use */
  transport: TransportName;
  readonly createdAt = Date.now();
  readonly id: string;
  readonly callId: string;
  readonly localTag: string;
  readonly remoteTag: string;
  /** local and remote URIs with their display names, without tags (From/To of requests) */
  readonly localUri: string;
  readonly remoteUri: string;

  /**
   * The strings a dialog keeps are copied: they come from messages (slices of their text), and a
   * dialog lives as long as the call, far longer than those messages should.
   */
  constructor(
    id: string,
    readonly role: DialogRole,
    callId: string,
    localTag: string,
    remoteTag: string,
    localUri: string,
    remoteUri: string,
    remoteTarget: string,
    localSeq: number,
    /** the wire connection of the application that owns the dialog */
    readonly owner: string,
    transport: TransportName,
    /** the dialog was created by this method (INVITE or SUBSCRIBE) */
    readonly method: string,
  ) {
    this.id = ownString(id);
    // the id starts with the Call-ID: a slice of it costs no copy
    this.callId = this.id.startsWith(callId) ? this.id.slice(0, callId.length) : ownString(callId);
    this.localTag = ownString(localTag);
    this.remoteTag = ownString(remoteTag);
    this.localUri = ownString(localUri);
    this.remoteUri = ownString(remoteUri);
    this.#remoteTarget = ownString(remoteTarget);
    this.localSeq = localSeq;
    this.transport = transport;
  }

  /** RFC 3261 section 12.1: the route set, in the order requests use it */
  get routeSet(): readonly string[] {
    return this.#routeSet;
  }

  set routeSet(routes: readonly string[]) {
    this.#routeSet = routes.length === 0 ? [] : routes.map(ownString);
  }

  /** The remote target (12.1.1, 12.1.2), refreshed by target-refresh requests (12.2). */
  get remoteTarget(): string {
    return this.#remoteTarget;
  }

  set remoteTarget(uri: string) {
    this.#remoteTarget = ownString(uri);
  }

  /** UAC side: remembers the ACK just sent for the INVITE with CSeq `cseq` (13.2.2.4). */
  setAck(cseq: number, data: Buffer): void {
    this.#ack = data.toString('latin1');
    this.#ackSeq = cseq;
  }

  /** The bytes of the ACK sent for the INVITE with CSeq `cseq`, if it is the last one sent. */
  ackFor(cseq: number): Buffer | undefined {
    return this.#ack !== undefined && this.#ackSeq === cseq ? Buffer.from(this.#ack, 'latin1') : undefined;
  }

  /** CSeq of the last ACK sent, if one is kept. */
  get lastAckSeq(): number | undefined {
    return this.#ack !== undefined ? this.#ackSeq : undefined;
  }

  /** Forgets the ACK of the INVITE with CSeq `cseq` (its 2xx can no longer come again). */
  forgetAck(cseq: number): void {
    if (this.#ackSeq === cseq) this.#ack = undefined;
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
