import type { SipRequest, SipResponse } from '../message/sip-message';
import { parseVia } from '../message/via';
import { getTag } from '../message/name-addr';
import { ClientInviteTransaction } from './client-invite-transaction';
import { ClientNonInviteTransaction } from './client-non-invite-transaction';
import { ServerInviteTransaction } from './server-invite-transaction';
import { ServerNonInviteTransaction } from './server-non-invite-transaction';
import type { Transaction } from './transaction';

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

/**
 * Server transaction key, RFC 3261 section 17.2.3: branch + sent-by + method, with ACK matching
 * its INVITE. Requests from RFC 2543 elements (no magic cookie) fall back to Call-ID, CSeq number,
 * From tag, the top Via and the method.
 */
export function serverKey(req: SipRequest, methodOverride?: string): string | undefined {
  const top = req.getAll('via')[0];
  const via = top !== undefined ? parseVia(top) : undefined;
  if (!via) return undefined;
  const method = methodOverride ?? (req.method === 'ACK' ? 'INVITE' : req.method);
  const branch = via.params.get('branch');
  const sentBy = `${via.host}:${via.port ?? ''}`;
  if (branch && branch.startsWith(MAGIC)) return `${branch}|${sentBy}|${method}`;
  return `2543|${req.callId}|${cseqNumber(req)}|${getTag(req.get('from') ?? '') ?? ''}|${sentBy}|${method}`;
}

/** Client transaction key, RFC 3261 section 17.1.3: top Via branch + CSeq method. */
export function clientKey(m: SipRequest | SipResponse): string | undefined {
  const top = m.getAll('via')[0];
  const via = top !== undefined ? parseVia(top) : undefined;
  const branch = via?.params.get('branch');
  if (!branch) return undefined;
  return `${branch}|${cseqMethod(m)}`;
}

/** The registry of live transactions, by matching key and by wire-protocol id. */
export class TransactionLayer {
  readonly #servers = new Map<string, ServerTransaction>();
  readonly #clients = new Map<string, ClientTransaction>();
  readonly #byId = new Map<string, Transaction>();
  /** merged-request detection (section 8.2.2.2): From tag + Call-ID + CSeq -> server key */
  readonly #merge = new Map<string, string>();
  created = 0;

  get size(): number {
    return this.#byId.size;
  }

  get serverCount(): number {
    return this.#servers.size;
  }

  get clientCount(): number {
    return this.#clients.size;
  }

  addServer(tx: ServerTransaction): void {
    this.#servers.set(tx.key, tx);
    this.#byId.set(tx.id, tx);
    this.created++;
    const mk = mergeKey(tx.request);
    if (mk !== undefined) this.#merge.set(mk, tx.key);
  }

  addClient(tx: ClientTransaction): void {
    this.#clients.set(tx.key, tx);
    this.#byId.set(tx.id, tx);
    this.created++;
  }

  /** Called from every transaction's onTerminated. */
  remove(tx: Transaction): void {
    this.#byId.delete(tx.id);
    if (tx.kind === 'ist' || tx.kind === 'nist') {
      if (this.#servers.get(tx.key) === tx) this.#servers.delete(tx.key);
      const mk = mergeKey(tx.request);
      if (mk !== undefined && this.#merge.get(mk) === tx.key) this.#merge.delete(mk);
    } else if (this.#clients.get(tx.key) === tx) this.#clients.delete(tx.key);
  }

  findServer(key: string): ServerTransaction | undefined {
    return this.#servers.get(key);
  }

  findClient(key: string): ClientTransaction | undefined {
    return this.#clients.get(key);
  }

  byId(id: string): Transaction | undefined {
    return this.#byId.get(id);
  }

  /**
   * A request with no To tag that matches no transaction but has the From tag, Call-ID and CSeq
   * of a live server transaction arrived by another path: a merged request (section 8.2.2.2).
   */
  isMerged(req: SipRequest, key: string): boolean {
    const mk = mergeKey(req);
    if (mk === undefined) return false;
    const existing = this.#merge.get(mk);
    return existing !== undefined && existing !== key;
  }

  /** Ends every transaction (engine shutdown). */
  destroyAll(): void {
    for (const tx of [...this.#byId.values()]) tx.destroy();
  }
}

function mergeKey(req: SipRequest): string | undefined {
  if (req.method === 'ACK' || req.method === 'CANCEL') return undefined;
  if (getTag(req.get('to') ?? '') !== undefined) return undefined;
  const fromTag = getTag(req.get('from') ?? '');
  if (fromTag === undefined) return undefined;
  return `${fromTag}|${req.callId}|${req.get('cseq') ?? ''}`;
}
