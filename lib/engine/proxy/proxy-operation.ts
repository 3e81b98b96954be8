import type { Logger } from 'pino';
import type { SipRequest, SipResponse } from '../message/sip-message';
import { serialize } from '../message/serializer';
import type { ClientTransactionUser } from '../transaction/transaction';
import { ClientInviteTransaction } from '../transaction/client-invite-transaction';
import type { ClientTransaction, ServerTransaction } from '../transaction/transaction-layer';
import type { Inbound, Peer } from '../transport/transport';
import type { AppConnection } from '../wire/wire-server';
import { meta6 } from '../wire/wire-format';
import type { Listener } from '../engine';

/** What a proxy operation needs from the engine. */
export interface ProxyHost {
  readonly log: Logger;
  isLocalUri(uri: string): boolean;
  relayUpstream(tx: ServerTransaction, res: SipResponse): void;
  forward(
    req: SipRequest,
    target: string,
    l: Listener,
    tu: ClientTransactionUser,
    recordRoute: boolean,
    replaceUri: boolean,
    extra: SipRequest | undefined,
  ): Promise<ClientTransaction | undefined>;
  cancelClient(tx: ClientInviteTransaction): void;
  respondLocally(tx: ServerTransaction, status: number, reason: string): void;
  replyToApp(app: AppConnection, msgId: string, rest: string): void;
}

export interface ProxyRequest {
  readonly app: AppConnection;
  readonly msgId: string;
  readonly tx: ServerTransaction;
  readonly inbound: Inbound;
  readonly listener: Listener;
  readonly remainInDialog: boolean;
  readonly fullResponse: boolean;
  readonly followRedirects: boolean;
  readonly simultaneous: boolean;
  readonly provisionalTimeoutMs: number | undefined;
  readonly destinations: string[];
  /** extra headers the application asked to put on the forwarded request */
  readonly headers: SipMessage | undefined;
}

type SipMessage = SipRequest | SipResponse;

interface Branch {
  readonly target: string;
  tx: ClientTransaction | undefined;
  done: boolean;
  provisional: boolean;
  timer: NodeJS.Timeout | undefined;
}

/**
 * One `srf.proxyRequest`: a stateful proxy (RFC 3261 section 16) of one server transaction to
 * one or more targets, serially or in parallel, relaying provisional responses, the first 2xx or
 * the best final response (16.7), and reporting each final response to the application.
 */
export class ProxyOperation {
  readonly #queue: string[];
  readonly #branches: Branch[] = [];
  #best: SipResponse | undefined;
  #finished = false;
  #cancelled = false;
  #redirects = 0;
  onDone: () => void = () => undefined;

  constructor(
    readonly host: ProxyHost,
    readonly r: ProxyRequest,
  ) {
    this.#queue = [...r.destinations];
  }

  start(): void {
    const mf = Number(this.r.tx.request.get('max-forwards') ?? '70');
    if (Number.isFinite(mf) && mf <= 0) {
      this.host.respondLocally(this.r.tx, 483, 'Too Many Hops');
      this.#finish(`NOK|Rejected with 483 Too Many Hops due to Max-Forwards value of ${mf}`);
      return;
    }
    if (this.#queue.length === 0) {
      this.host.respondLocally(this.r.tx, 500, 'Server Internal Error');
      this.#finish('NOK|error proxying request to ');
      return;
    }
    if (this.r.simultaneous) while (this.#queue.length > 0) this.#launch(this.#queue.shift()!);
    else this.#launch(this.#queue.shift()!);
  }

  /** The upstream CANCELled: cancel every branch still pending (16.10). */
  cancel(): void {
    this.#cancelled = true;
    this.#queue.length = 0;
    for (const b of this.#branches) this.#cancelBranch(b);
    if (this.#branches.every((b) => b.done)) this.#complete();
  }

  #launch(target: string): void {
    const b: Branch = { target, tx: undefined, done: false, provisional: false, timer: undefined };
    this.#branches.push(b);
    const req = this.r.tx.request;
    const tu: ClientTransactionUser = {
      onResponse: (res) => this.#onResponse(b, res),
      onTimeout: () => this.#onFinal(b, undefined),
    };
    const replaceUri = this.host.isLocalUri(req.uri);
    this.host
      .forward(req, target, this.r.listener, tu, this.r.remainInDialog, replaceUri, this.r.headers?.type === 'request' ? this.r.headers : undefined)
      .then((tx) => {
        b.tx = tx;
        if (!tx) return this.#onFinal(b, undefined);
        if (this.#cancelled) this.#cancelBranch(b);
        if (this.r.provisionalTimeoutMs !== undefined && req.method === 'INVITE') {
          b.timer = setTimeout(() => {
            if (b.provisional || b.done) return;
            this.host.log.info({ target }, 'proxy: no provisional response in time; trying the next target');
            this.#cancelBranch(b);
            this.#onFinal(b, undefined);
          }, this.r.provisionalTimeoutMs);
        }
      })
      .catch((err: Error) => {
        this.host.log.warn({ target, err: err.message }, 'proxy: cannot forward to target');
        this.#onFinal(b, undefined);
      });
  }

  #cancelBranch(b: Branch): void {
    if (b.done || !(b.tx instanceof ClientInviteTransaction)) return;
    if (b.tx.state === 'calling' || b.tx.state === 'proceeding') this.host.cancelClient(b.tx);
  }

  #onResponse(b: Branch, res: SipResponse): void {
    if (res.status === 100) return; // hop by hop
    if (res.status < 200) {
      b.provisional = true;
      if (!this.#finished) this.host.relayUpstream(this.r.tx, res);
      return;
    }
    if (res.status < 300) {
      // the first 2xx goes up at once, later ones too (16.7 step 5); other branches are cancelled
      this.host.relayUpstream(this.r.tx, res);
      if (b.done) return;
      this.#clear(b);
      this.#report(res);
      for (const other of this.#branches) if (other !== b) this.#cancelBranch(other);
      this.#best = res;
      this.#complete();
      return;
    }
    this.#onFinal(b, res);
  }

  /** A branch ended without a 2xx: keep the best answer, try the next target or finish. */
  #onFinal(b: Branch, res: SipResponse | undefined): void {
    if (b.done) return;
    this.#clear(b);
    if (res) {
      this.#report(res);
      if (this.r.followRedirects && res.status >= 300 && res.status < 400 && this.#redirects < 5) {
        this.#redirects++;
        for (const c of res.getAll('contact')) {
          const m = /<([^>]+)>/.exec(c);
          this.#queue.push(m ? m[1]! : c.split(';')[0]!.trim());
        }
      } else if (!this.#best || rank(res) < rank(this.#best)) this.#best = res;
    }
    if (this.#finished) return;
    if (!this.#cancelled && this.#queue.length > 0 && (!this.r.simultaneous || res === undefined)) {
      this.#launch(this.#queue.shift()!);
      return;
    }
    if (this.#branches.every((x) => x.done)) this.#complete();
  }

  #clear(b: Branch): void {
    b.done = true;
    if (b.timer) clearTimeout(b.timer);
  }

  #report(res: SipResponse): void {
    if (!this.r.fullResponse || this.#finished) return;
    const text = serialize(res);
    const src: Peer = this.r.inbound.source;
    this.host.replyToApp(this.r.app, this.r.msgId, `OK|${meta6('network', text.length, src.transport, src.address, src.port)}|||continue\r\n${text.toString('utf8')}`);
  }

  #complete(): void {
    if (this.#finished) return;
    const best = this.#best;
    if (best && (best.status < 200 || best.status >= 300)) this.host.relayUpstream(this.r.tx, best);
    else if (!best) this.host.respondLocally(this.r.tx, this.#cancelled ? 487 : 408, this.#cancelled ? 'Request Terminated' : 'Request Timeout');
    this.#finish('OK|done');
  }

  #finish(reply: string): void {
    if (this.#finished) return;
    this.#finished = true;
    for (const b of this.#branches) if (b.timer) clearTimeout(b.timer);
    this.host.replyToApp(this.r.app, this.r.msgId, reply);
    this.onDone();
  }
}

/** 16.7 step 6: 6xx first, then the lowest class; 503 ranks last (it becomes 500 upstream). */
function rank(res: SipResponse): number {
  if (res.status >= 600) return 0;
  if (res.status === 503) return 10000;
  return res.status;
}
