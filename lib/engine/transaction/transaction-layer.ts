import { detach, type SipRequest, type SipResponse } from '../message/sip-message';
import { parseVia, type Via } from '../message/via';
import { getTag } from '../message/name-addr';
import { ClientInviteTransaction } from './client-invite-transaction';
import { ClientNonInviteTransaction } from './client-non-invite-transaction';
import { ServerInviteTransaction } from './server-invite-transaction';
import { ServerNonInviteTransaction } from './server-non-invite-transaction';
import type { Transaction } from './transaction';
import { realClock, type Clock, type TimerHandle } from './timers';

export type ServerTransaction = ServerInviteTransaction | ServerNonInviteTransaction;
export type ClientTransaction = ClientInviteTransaction | ClientNonInviteTransaction;

const MAGIC = 'z9hG4bK';

function cseqMethod(m: SipRequest | SipResponse): string {
  const v = m.get('cseq') ?? '';
  const i = v.lastIndexOf(' ');
  return (i < 0 ? v : v.slice(i + 1)).trim().toUpperCase();
}

function cseqNumber(m: SipRequest | SipResponse): string {
  return (m.get('cseq') ?? '').trim().split(/\s+/)[0] ?? '';
}

/** The top Via of a message, parsed; undefined when absent or malformed. */
export function topVia(m: SipRequest | SipResponse): Via | undefined {
  const top = m.first('via');
  return top !== undefined ? parseVia(top) : undefined;
}

/**
 * Server transaction key, RFC 3261 section 17.2.3: branch + sent-by + method, with ACK matching
 * its INVITE. Requests from RFC 2543 elements (no magic cookie) fall back to Call-ID, CSeq number,
 * From tag, the top Via and the method. `via` is the request's top Via when the caller has it.
 */
export function serverKey(req: SipRequest, methodOverride?: string, via: Via | undefined = topVia(req)): string | undefined {
  if (!via) return undefined;
  const method = methodOverride ?? (req.method === 'ACK' ? 'INVITE' : req.method);
  const branch = via.params.get('branch');
  const sentBy = via.port !== undefined ? `${via.host}:${via.port}` : `${via.host}:`;
  if (branch && branch.startsWith(MAGIC)) return `${branch}|${sentBy}|${method}`;
  return `2543|${req.callId}|${cseqNumber(req)}|${getTag(req.get('from') ?? '') ?? ''}|${sentBy}|${method}`;
}

/** Client transaction key, RFC 3261 section 17.1.3: top Via branch + CSeq method. */
export function clientKey(m: SipRequest | SipResponse, via: Via | undefined = topVia(m)): string | undefined {
  const branch = via?.params.get('branch');
  if (!branch) return undefined;
  return `${branch}|${cseqMethod(m)}`;
}

/**
 * The key of merged-request detection (section 8.2.2.2): From tag, Call-ID and CSeq of a request
 * without a To tag; undefined for any other request.
 */
export function mergeKeyOf(req: SipRequest, fromTag: string | undefined, toTag: string | undefined): string | undefined {
  if (req.method === 'ACK' || req.method === 'CANCEL' || toTag !== undefined || fromTag === undefined) return undefined;
  return `${fromTag}|${req.callId}|${req.get('cseq') ?? ''}`;
}

/**
 * What is left of a transaction once it has its final response and nothing more to do but
 * absorb or repeat: an INVITE server transaction in RFC 6026's Accepted state only absorbs
 * retransmitted INVITEs until Timer L; a non-INVITE one in Completed only repeats its final
 * response until Timer J (RFC 3261 17.2.2); an INVITE client transaction in Accepted only hands
 * retransmitted 2xx to its user until Timer M. For those 32 seconds the whole transaction (its
 * request, timers, callbacks) would stay in memory for every call; a remnant is one small
 * object. The transaction user subclasses it with what it needs (e.g. the response's bytes).
 */
export abstract class Remnant {
  /** the transaction it replaces: 'ist' or 'ict' in Accepted, 'nist' in Completed */
  abstract readonly of: 'ist' | 'nist' | 'ict';
  /** when it ends (set by the transaction layer) */
  until = 0;

  constructor(
    readonly id: string,
    readonly key: string,
    /** server remnants: the merged-request key of the request */
    readonly mergeKey: string | undefined,
  ) {}

  /** Called when the remnant's time is up and it is dropped. */
  expired(): void {
    // nothing by default
  }
}

/** Remnants are dropped at most this often (so up to this much after their time). */
const REMNANT_SWEEP_MS = 1000;

/** The registry of live transactions, by matching key and by wire-protocol id. */
export class TransactionLayer {
  readonly #servers = new Map<string, ServerTransaction | Remnant>();
  readonly #clients = new Map<string, ClientTransaction | Remnant>();
  readonly #byId = new Map<string, Transaction | Remnant>();
  /** merged-request detection (section 8.2.2.2): From tag + Call-ID + CSeq -> server key */
  readonly #merge = new Map<string, string>();
  /** remnants in the order they were made (and, all lingering 64*T1, the order they end) */
  #remnants: Array<Remnant | undefined> = [];
  #remnantsHead = 0;
  #sweep: TimerHandle | undefined;
  created = 0;

  constructor(readonly clock: Clock = realClock) {}

  /** live transactions, remnants included */
  get size(): number {
    return this.#byId.size;
  }

  get serverCount(): number {
    return this.#servers.size;
  }

  get clientCount(): number {
    return this.#clients.size;
  }

  /** `mergeKey`: the request's `mergeKeyOf`, when the caller has computed it already. */
  addServer(tx: ServerTransaction, mergeKey: string | undefined = mergeKeyOf(tx.request, getTag(tx.request.get('from') ?? ''), getTag(tx.request.get('to') ?? ''))): void {
    this.#servers.set(tx.key, tx);
    this.#byId.set(tx.id, tx);
    this.created++;
    if (mergeKey !== undefined) {
      mergeKey = detach(mergeKey);
      tx.mergeKey = mergeKey;
      this.#merge.set(mergeKey, tx.key);
    }
  }

  addClient(tx: ClientTransaction): void {
    this.#clients.set(tx.key, tx);
    this.#byId.set(tx.id, tx);
    this.created++;
  }

  /** Called from every transaction's onTerminated. */
  remove(tx: Transaction): void {
    if (this.#byId.get(tx.id) === tx) this.#byId.delete(tx.id);
    if (tx.kind === 'ist' || tx.kind === 'nist') {
      if (this.#servers.get(tx.key) === tx) this.#servers.delete(tx.key);
      const mk = tx.mergeKey;
      if (mk !== undefined && this.#merge.get(mk) === tx.key) this.#merge.delete(mk);
    } else if (this.#clients.get(tx.key) === tx) this.#clients.delete(tx.key);
  }

  /** The server transaction (or its remnant) a request matches (17.2.3). */
  findServer(key: string): ServerTransaction | Remnant | undefined {
    return this.#servers.get(key);
  }

  /** The client transaction (or its remnant) a response matches (17.1.3). */
  findClient(key: string): ClientTransaction | Remnant | undefined {
    return this.#clients.get(key);
  }

  /**
   * Ends a transaction that has its final response and leaves `remnant` in its place for
   * `lingerMs` (its Timer L, J or M): messages matching it keep matching.
   */
  retire(tx: ServerTransaction | ClientTransaction, remnant: Remnant, lingerMs: number): void {
    tx.destroy();
    this.#byId.set(remnant.id, remnant);
    if (remnant.of === 'ict') this.#clients.set(remnant.key, remnant);
    else {
      this.#servers.set(remnant.key, remnant);
      if (remnant.mergeKey !== undefined) this.#merge.set(remnant.mergeKey, remnant.key);
    }
    remnant.until = this.clock.now() + lingerMs;
    this.#remnants.push(remnant);
    this.#sweep ??= this.clock.schedule(lingerMs, () => this.#expire());
  }

  #drop(r: Remnant): void {
    if (this.#byId.get(r.id) === r) this.#byId.delete(r.id);
    if (r.of === 'ict') {
      if (this.#clients.get(r.key) === r) this.#clients.delete(r.key);
    } else {
      if (this.#servers.get(r.key) === r) this.#servers.delete(r.key);
      if (r.mergeKey !== undefined && this.#merge.get(r.mergeKey) === r.key) this.#merge.delete(r.mergeKey);
    }
  }

  /** Drops the remnants whose time is up. */
  #expire(): void {
    this.#sweep = undefined;
    const now = this.clock.now();
    const list = this.#remnants;
    for (let r = list[this.#remnantsHead]; r !== undefined && r.until <= now; r = list[this.#remnantsHead]) {
      list[this.#remnantsHead++] = undefined;
      this.#drop(r);
      r.expired();
    }
    if (this.#remnantsHead === list.length) {
      this.#remnants = [];
      this.#remnantsHead = 0;
      return;
    }
    if (this.#remnantsHead > 4096) {
      this.#remnants = list.slice(this.#remnantsHead);
      this.#remnantsHead = 0;
    }
    // remnants end in batches: a wake-up for each one would cost more than a remnant kept a
    // little longer (it only absorbs retransmissions)
    const next = this.#remnants[this.#remnantsHead]!.until;
    this.#sweep = this.clock.schedule(Math.max(REMNANT_SWEEP_MS, next - now), () => this.#expire());
  }

  /** A transaction (or its remnant) by the id applications know it by. */
  byId(id: string): Transaction | Remnant | undefined {
    return this.#byId.get(id);
  }

  /**
   * A request with no To tag that matches no transaction but has the From tag, Call-ID and CSeq
   * of a live server transaction arrived by another path: a merged request (section 8.2.2.2).
   */
  isMerged(mergeKey: string | undefined, key: string): boolean {
    if (mergeKey === undefined) return false;
    const existing = this.#merge.get(mergeKey);
    return existing !== undefined && existing !== key;
  }

  /** Ends every transaction (engine shutdown). */
  destroyAll(): void {
    for (const tx of [...this.#byId.values()]) if (!(tx instanceof Remnant)) tx.destroy();
    this.#sweep?.cancel();
    this.#sweep = undefined;
    for (const r of this.#remnants) if (r) this.#drop(r);
    this.#remnants = [];
    this.#remnantsHead = 0;
    this.#merge.clear();
  }
}
