import { isIP } from 'node:net';
import { lookup } from 'node:dns/promises';
import type { Logger } from 'pino';
import { parseMessage } from './message/parser';
import { serialize } from './message/serializer';
import { SipRequest, SipResponse, compactRequest, detach, displayName, firstListComma, type SipHeader, type SipMessage } from './message/sip-message';
import { parseVia, formatVia, type Via } from './message/via';
import { parseUri } from './message/uri';
import { getTag } from './message/name-addr';
import { parseCSeq } from './message/cseq';
import { TOKEN, scanRun } from './message/lex';
import type { Inbound, Peer, Transport, TransportDelegate, TransportName } from './transport/transport';
import { UdpTransport } from './transport/udp-transport';
import { TcpTransport } from './transport/tcp-transport';
import { realClock, type Clock } from './transaction/timers';
import type { Transaction, TransactionContext, ClientTransactionUser } from './transaction/transaction';
import { ClientInviteTransaction } from './transaction/client-invite-transaction';
import { ClientNonInviteTransaction } from './transaction/client-non-invite-transaction';
import { ServerInviteTransaction } from './transaction/server-invite-transaction';
import { ServerNonInviteTransaction } from './transaction/server-non-invite-transaction';
import { deriveFromInvite } from './transaction/derived-request';
import { Remnant, TransactionLayer, clientKey, mergeKeyOf, serverKey, topVia, type ServerTransaction, type ClientTransaction } from './transaction/transaction-layer';
import { Dialog, DialogRegistry, dialogId, type PendingAck } from './dialog/dialog';
import { WireServer, type AppConnection, type WireDelegate } from './wire/wire-server';
import { parseAppMessage, ENGINE_OWNED } from './wire/app-message';
import { meta6, wireTime } from './wire/wire-format';
import { newBranch, newCallId, newCSeq, newMsgId, newTag, newTxnId } from './ids';
import { EngineStats, statusJson, prometheusText, type EngineGauges } from './stats';
import { CallCapture } from './capture';
import type { EngineOptions, SipListen } from './engine-options';
import { ProxyOperation, type ProxyHost } from './proxy/proxy-operation';

/** A local SIP listener: one transport on one address. */
interface Listener {
  readonly transport: Transport;
  readonly listen: SipListen;
  /** host written into Via/Contact/Record-Route */
  readonly advertised: string;
  /** `host:port` as the capture reports it */
  readonly local: string;
}

/** What the engine keeps beside a server transaction. */
interface ServerContext {
  /** the request as it arrived; its bytes are let go once the request is answered */
  inbound: Inbound;
  readonly listener: Listener;
  /** where responses go (RFC 3261 section 18.2.2, RFC 3581), from the request's top Via */
  readonly target: Peer;
  /** owning application (absent for requests answered by the engine itself) */
  appId: string | undefined;
  /** our To tag, chosen at the first response that needs one */
  toTag: string | undefined;
  dialog: Dialog | undefined;
  proxy: ProxyOperation | undefined;
  /** reliable provisional being retransmitted (RFC 3262 section 3) */
  reliable: { rseq: number; stop: () => void } | undefined;
  /** the pending 100 Trying, cancelled by the first response */
  trying: { cancel(): void } | undefined;
}

/** What the engine keeps beside a client transaction started for an application. */
interface ClientContext {
  readonly appId: string;
  /** dialog id reported with every response (INVITE/SUBSCRIBE and in-dialog requests) */
  readonly dialogId: string;
  readonly inDialog: boolean;
  readonly listener: Listener;
  readonly target: Peer;
  /** CANCEL requested before any provisional arrived: sent when one does (section 9.1) */
  cancelWaiting: (() => void) | undefined;
}

const SIP_DEFAULT_PORT = 5060;
const TRYING_DELAY_MS = 200;

function uriOf(nameAddr: string): string {
  const lt = nameAddr.indexOf('<');
  if (lt >= 0) {
    const gt = nameAddr.indexOf('>', lt);
    return nameAddr.slice(lt + 1, gt < 0 ? undefined : gt);
  }
  const semi = nameAddr.indexOf(';');
  return (semi < 0 ? nameAddr : nameAddr.slice(0, semi)).trim();
}

function stripTag(nameAddr: string): string {
  return nameAddr.replace(/;\s*tag=[^;>\s]*/i, '');
}

/** The CSeq number of a message, 0 when its CSeq is malformed (section 20.16). */
function cseqNumberOf(m: SipMessage): number {
  const v = m.get('cseq');
  if (v === undefined) return 0;
  // the common shape (digits, one space, method) without building a parsed CSeq
  let i = 0;
  let n = 0;
  for (; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c < 0x30 || c > 0x39) break;
    n = n * 10 + (c - 0x30);
  }
  if (i > 0 && i < 11 && n <= 0x7fffffff && v.charCodeAt(i) === 0x20 && i + 1 < v.length && scanRun(v, i + 1, TOKEN) === v.length) return n;
  return parseCSeq(v)?.seq ?? 0;
}

/** RFC 3261 section 21 reason phrases for the responses the engine writes itself. */
const REASONS: Readonly<Record<number, string>> = {
  100: 'Trying',
  200: 'OK',
  400: 'Bad Request',
  408: 'Request Timeout',
  416: 'Unsupported URI Scheme',
  481: 'Call/Transaction Does Not Exist',
  482: 'Loop Detected',
  483: 'Too Many Hops',
  487: 'Request Terminated',
  491: 'Request Pending',
  500: 'Server Internal Error',
  503: 'Service Unavailable',
  505: 'Version Not Supported',
  513: 'Message Too Large',
};

/** An INVITE server transaction in RFC 6026's Accepted state, reduced to what it still does. */
class AcceptedInvite extends Remnant {
  readonly of = 'ist' as const;
  constructor(
    id: string,
    key: string,
    mergeKey: string | undefined,
    /** our To tag, for the 200 to a CANCEL that crossed the 2xx */
    readonly toTag: string | undefined,
  ) {
    super(id, key, mergeKey);
  }
}

/** A non-INVITE server transaction in Completed (RFC 3261 17.2.2): it repeats its final response. */
class CompletedRequest extends Remnant {
  readonly of = 'nist' as const;
  constructor(
    id: string,
    key: string,
    mergeKey: string | undefined,
    /** the final response's bytes, one per character (latin1): a string costs less to keep than a Buffer */
    readonly response: string,
    readonly target: Peer,
    readonly listener: Listener,
    readonly connectionId: string | undefined,
    readonly status: number,
  ) {
    super(id, key, mergeKey);
  }
}

/**
 * An INVITE client transaction of an application in RFC 6026's Accepted state: a retransmitted
 * 2xx is ACKed again from the dialog, or handed to the application when it has not ACKed yet.
 */
class AcceptedClientInvite extends Remnant {
  readonly of = 'ict' as const;
  constructor(
    id: string,
    key: string,
    readonly appId: string,
    readonly dialogId: string,
    /** where the INVITE went (reported with a 2xx handed to the application) */
    readonly peer: Peer,
    readonly cseq: number,
    readonly dialogs: DialogRegistry,
  ) {
    super(id, key, undefined);
  }

  /** Timer M: no 2xx can come again, so the ACK kept to answer one can go. */
  override expired(): void {
    this.dialogs.get(this.dialogId)?.forgetAck(this.cseq);
  }
}

/**
 * The SIP engine: a drachtio server. It owns transports, transactions and dialogs and speaks
 * the drachtio wire protocol to applications, which see requests, answer them, and send
 * requests of their own, in and out of dialogs.
 */
export class SipEngine implements TransportDelegate, WireDelegate, ProxyHost {
  readonly log: Logger;
  readonly stats = new EngineStats();
  readonly transactions: TransactionLayer;
  readonly dialogs = new DialogRegistry();
  readonly capture: CallCapture | undefined;
  readonly #listeners: Listener[] = [];
  readonly #wire: WireServer;
  readonly #server = new Map<string, ServerContext>();
  readonly #client = new Map<string, ClientContext>();
  readonly #proxies = new Set<ProxyOperation>();
  /** where each client transaction sends, so a CANCEL can follow its INVITE (9.1) */
  readonly #targets = new WeakMap<ClientTransaction, { peer: Peer; listener: Listener }>();
  readonly #clock: Clock;
  readonly #debug: boolean;
  /** transaction contexts, one per kind of transport: every transaction shares them */
  readonly #reliableCtx: TransactionContext;
  readonly #unreliableCtx: TransactionContext;
  #closed = false;
  /** the bytes of the response sent last, so the application's copy is not serialized twice */
  #lastSent: { res: SipResponse; data: Buffer } | undefined;
  /** the same for requests */
  #lastSentRequest: { req: SipRequest; data: Buffer } | undefined;

  constructor(
    readonly opts: EngineOptions,
    clock: Clock = realClock,
  ) {
    this.log = opts.log;
    this.#clock = clock;
    this.transactions = new TransactionLayer(clock);
    this.#debug = this.log.isLevelEnabled('debug');
    const onTerminated = (tx: Transaction): void => this.#onTerminated(tx);
    this.#reliableCtx = { clock, timers: opts.timers, reliable: true, onTerminated };
    this.#unreliableCtx = { clock, timers: opts.timers, reliable: false, onTerminated };
    this.capture = opts.capture ? new CallCapture(opts.capture.maxCalls, opts.capture.maxBytesPerCall, clock) : undefined;
    for (const l of opts.sip) {
      const advertised = l.externalIp ?? l.host;
      for (const t of l.transports) {
        const transport =
          t === 'udp'
            ? new UdpTransport(l.host, l.port, this, opts.maxMessageSize)
            : new TcpTransport(l.host, l.port, this, { maxSize: opts.maxMessageSize, ...opts.tcp });
        this.#listeners.push({ transport, listen: l, advertised, local: `${l.host}:${l.port}` });
      }
    }
    const hostports = this.#listeners.map((l) => `${l.transport.name}/${l.advertised}:${l.listen.port}`).join(',');
    const localHostports = this.#listeners.map((l) => `${l.transport.name}/${l.listen.host}:${l.listen.port}`).join(',');
    this.#wire = new WireServer(
      { ...opts.wire, hostports, localHostports, version: opts.version },
      this,
      this.log.child({ layer: 'wire' }),
    );
  }

  async start(): Promise<void> {
    for (const l of this.#listeners) await l.transport.listen();
    await this.#wire.listen();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.transactions.destroyAll();
    for (const d of [...this.dialogs.all()]) this.dialogs.remove(d);
    this.capture?.close();
    await this.#wire.close();
    for (const l of this.#listeners) await l.transport.close();
  }

  gauges(): EngineGauges {
    let tcp = 0;
    for (const l of this.#listeners) if (l.transport instanceof TcpTransport) tcp += l.transport.connections;
    return {
      transactions: this.transactions.size,
      serverTransactions: this.transactions.serverCount,
      clientTransactions: this.transactions.clientCount,
      transactionsCreated: this.transactions.created,
      dialogs: this.dialogs.size,
      dialogsCreated: this.dialogs.created,
      applications: this.#wire.connected,
      tcpConnections: tcp,
      proxyOperations: this.#proxies.size,
    };
  }

  status(): Record<string, unknown> {
    return statusJson(this.stats, this.gauges());
  }

  metrics(): string {
    return prometheusText(this.stats, this.gauges());
  }

  // ---------------------------------------------------------------- transport layer, inbound

  onReject(peer: Peer, reason: string): void {
    this.stats.rejected++;
    this.log.warn({ peer: `${peer.transport}:${peer.address}:${peer.port}`, reason }, 'input rejected');
  }

  onMessage(inb: Inbound): void {
    const listener = this.#listenerFor(inb.source.transport, inb.localAddress, inb.localPort);
    if (!listener) return;
    const parsed = parseMessage(inb.data, { maxSize: this.opts.maxMessageSize, stream: listener.transport.reliable });
    if (!parsed.ok) {
      this.stats.rejected++;
      this.log.warn(
        { peer: `${inb.source.transport}:${inb.source.address}:${inb.source.port}`, status: parsed.status, reason: parsed.reason },
        parsed.request ? 'malformed request answered' : 'malformed message dropped',
      );
      if (parsed.request && parsed.request.method !== 'ACK') {
        this.#statelessResponse(parsed.request, inb, listener, parsed.status, parsed.reason);
      }
      return;
    }
    const msg = parsed.message;
    this.#record('in', msg, inb.data, inb.source, listener);
    if (msg.type === 'response') this.#onResponse(msg, inb);
    else this.#onRequest(msg, inb, listener);
  }

  #listenerFor(transport: TransportName, address: string, port: number): Listener | undefined {
    for (const l of this.#listeners) {
      if (l.transport.name === transport && l.listen.port === port && l.listen.host === address) return l;
    }
    return this.#listeners.find((l) => l.transport.name === transport);
  }

  #listenerForTransport(t: TransportName): Listener | undefined {
    return this.#listeners.find((l) => l.transport.name === t);
  }

  #record(dir: 'in' | 'out', msg: SipMessage, data: Buffer, peer: Peer, l: Listener): void {
    if (msg.type === 'request') this.stats.count(dir === 'in' ? this.stats.requestsIn : this.stats.requestsOut, msg.method);
    else this.stats.count(dir === 'in' ? this.stats.responsesIn : this.stats.responsesOut, msg.status);
    this.capture?.record(msg.callId, this.#clock.now(), dir, peer.transport, peer.address, peer.port, l.local, data);
    if (this.#debug) {
      this.log.debug({ dir, peer: `${peer.transport}:${peer.address}:${peer.port}`, sip: data.toString('utf8') }, dir === 'in' ? 'sip in' : 'sip out');
    }
  }

  // ---------------------------------------------------------------- sending

  /** Serializes and sends a request to a resolved peer. */
  sendRequest(req: SipRequest, to: Peer, l: Listener): Buffer {
    const data = serialize(req);
    this.#lastSentRequest = { req, data };
    l.transport.send(data, to);
    this.#record('out', req, data, to, l);
    return data;
  }

  /** The bytes of a request just sent (serialized once), for the application's copy. */
  #sentBytes(req: SipRequest): Buffer {
    const last = this.#lastSentRequest;
    this.#lastSentRequest = undefined;
    return last?.req === req ? last.data : serialize(req);
  }

  /** Sends a response to `to` (where the request's top Via says, see `#responseTarget`). */
  #sendResponse(res: SipResponse, to: Peer, l: Listener, connectionId: string | undefined): Buffer {
    const data = serialize(res);
    this.#lastSent = { res, data };
    l.transport.send(data, to, connectionId);
    this.#record('out', res, data, to, l);
    return data;
  }

  /** A retransmitted request of a completed non-INVITE transaction gets its final response again. */
  #resendFinal(r: CompletedRequest): void {
    const data = Buffer.from(r.response, 'latin1');
    r.listener.transport.send(data, r.target, r.connectionId);
    this.stats.count(this.stats.responsesOut, r.status);
    if (this.capture) {
      const callId = /^(?:call-id|i)[ \t]*:[ \t]*([^\s]+)/im.exec(r.response)?.[1] ?? '';
      this.capture.record(callId, this.#clock.now(), 'out', r.target.transport, r.target.address, r.target.port, r.listener.local, data);
    }
  }

  /** Where responses to a request go: RFC 3261 section 18.2.2 and RFC 3581, from its top Via. */
  #responseTarget(via: Via | undefined, inb: Inbound): Peer {
    if (!via || inb.source.transport === 'tcp') return inb.source;
    const received = via.params.get('received') ?? via.host;
    const rport = via.params.get('rport');
    const port = rport ? Number(rport) : (via.port ?? SIP_DEFAULT_PORT);
    return { transport: inb.source.transport, address: received, port };
  }

  /** Answers a request outside any transaction (malformed, or rejected before one exists). */
  #statelessResponse(req: SipRequest, inb: Inbound, l: Listener, status: number, reason?: string, extra?: Record<string, string>): Buffer {
    const res = this.#makeResponse(req, status, reason, getTag(req.get('to') ?? '') === undefined && status > 100 ? newTag() : undefined);
    if (extra) for (const [k, v] of Object.entries(extra)) res.set(k, v);
    return this.#sendResponse(res, this.#responseTarget(topVia(res), inb), l, inb.connectionId);
  }

  /**
   * A response built from its request (section 8.2.6.2). It shares the request's header
   * objects, which nothing changes in place (changes replace a header object).
   */
  #makeResponse(req: SipRequest, status: number, reason?: string, toTag?: string): SipResponse {
    const res = new SipResponse(status, reason ?? REASONS[status] ?? 'Unknown');
    const out: SipHeader[] = [];
    for (const h of req.headers) {
      const k = h.key;
      if (k === 'via' || k === 'from' || k === 'call-id' || k === 'cseq') out.push(h);
      else if (k === 'to') {
        out.push(toTag !== undefined && getTag(h.value) === undefined ? { key: 'to', name: h.name, value: `${h.value};tag=${toTag}` } : h);
      }
    }
    res.headers = out;
    return res;
  }

  /**
   * Stamps `received` and `rport` on the top Via of an incoming request (18.2.1, RFC 3581).
   * `via` is that Via, parsed; it is updated too.
   */
  #stampVia(req: SipRequest, inb: Inbound, via: Via): void {
    const first = req.headers.findIndex((h) => h.key === 'via');
    if (first < 0) return;
    const h = req.headers[first]!;
    let changed = false;
    if (via.host !== inb.source.address) {
      via.params.set('received', inb.source.address);
      changed = true;
    }
    if (via.params.has('rport') && !via.params.get('rport')) {
      via.params.set('rport', String(inb.source.port));
      changed = true;
    }
    if (changed) {
      const comma = firstListComma(h.value);
      const rest = comma < 0 ? '' : h.value.slice(comma);
      req.headers[first] = { key: 'via', name: h.name, value: formatVia(via) + rest };
    }
  }

  #viaFor(l: Listener, branch: string): string {
    return `SIP/2.0/${l.transport.name.toUpperCase()} ${l.advertised}:${l.listen.port};rport;branch=${branch}`;
  }

  contactFor(l: Listener, user?: string): string {
    const t = l.transport.name === 'udp' ? '' : `;transport=${l.transport.name}`;
    return `<sip:${user ? `${user}@` : ''}${l.advertised}:${l.listen.port}${t}>`;
  }

  recordRouteFor(l: Listener): string {
    const t = l.transport.name === 'udp' ? '' : `;transport=${l.transport.name}`;
    return `<sip:${l.advertised}:${l.listen.port}${t};lr>`;
  }

  /** True when the URI names one of our own listeners. */
  isLocalUri(uri: string): boolean {
    const u = parseUri(uri);
    if (!u) return false;
    const port = u.port ?? SIP_DEFAULT_PORT;
    return this.#listeners.some((l) => l.listen.port === port && (u.host === l.advertised || u.host === l.listen.host));
  }

  #isLocalPeer(p: Peer): boolean {
    return this.#listeners.some((l) => l.listen.port === p.port && (p.address === l.listen.host || p.address === l.advertised));
  }

  /** Resolves the next hop for a URI: transport param, host (A record), port (RFC 3263 minus SRV). */
  async resolve(uri: string, preferred?: TransportName): Promise<{ peer: Peer; listener: Listener }> {
    const u = parseUri(uri);
    if (!u) throw new Error(`invalid request-uri: ${uri}`);
    const tp = u.params.get('transport');
    const transport: TransportName = tp ? (tp.toLowerCase() as TransportName) : (preferred ?? 'udp');
    const listener = this.#listenerForTransport(transport);
    if (!listener) throw new Error('requested protocol/transport not available');
    let host = u.host.startsWith('[') ? u.host.slice(1, -1) : u.host;
    if (isIP(host) === 0) host = (await lookup(host)).address;
    return { peer: { transport, address: host, port: u.port ?? SIP_DEFAULT_PORT }, listener };
  }

  // ---------------------------------------------------------------- transactions

  #ctx(reliable: boolean): TransactionContext {
    return reliable ? this.#reliableCtx : this.#unreliableCtx;
  }

  #onTerminated(tx: Transaction): void {
    this.transactions.remove(tx);
    if (tx.kind === 'ist' || tx.kind === 'nist') {
      const sc = this.#server.get(tx.id);
      if (sc) {
        sc.reliable?.stop();
        sc.trying?.cancel();
        this.#server.delete(tx.id);
      }
      return;
    }
    this.#client.delete(tx.id);
  }

  /** Starts a client transaction toward `to`; the TU gets responses and timeouts. */
  startClient(req: SipRequest, to: Peer, l: Listener, tu: ClientTransactionUser, id: string = newTxnId()): ClientTransaction | undefined {
    const key = clientKey(req);
    if (key === undefined) return undefined;
    const send = (m: SipRequest): void => {
      this.sendRequest(m, to, l);
    };
    const ctx = this.#ctx(l.transport.reliable);
    const tx =
      req.method === 'INVITE'
        ? new ClientInviteTransaction(id, key, req, ctx, send, tu)
        : new ClientNonInviteTransaction(id, key, req, ctx, send, tu);
    this.transactions.addClient(tx);
    this.#targets.set(tx, { peer: to, listener: l });
    tx.start();
    return tx;
  }

  // ---------------------------------------------------------------- inbound responses

  #onResponse(res: SipResponse, inb: Inbound): void {
    const via = topVia(res);
    const key = clientKey(res, via);
    const tx = key !== undefined ? this.transactions.findClient(key) : undefined;
    if (tx instanceof AcceptedClientInvite) {
      if (res.status >= 200 && res.status < 300) this.#retransmitted2xx(tx, res);
      return;
    }
    if (tx instanceof ClientInviteTransaction || tx instanceof ClientNonInviteTransaction) {
      tx.receiveResponse(res);
      return;
    }
    // A 2xx retransmitted after the INVITE client transaction ended: ACK it again (13.2.2.4).
    if (res.status >= 200 && res.status < 300 && (parseCSeq(res.get('cseq') ?? '')?.method ?? '') === 'INVITE') {
      const d = this.dialogs.get(dialogId(res.callId, getTag(res.get('from') ?? '') ?? ''));
      const ack = d?.ackFor(cseqNumberOf(res));
      if (d && ack) {
        void this.#resendAck(d, ack);
        return;
      }
    }
    // Responses to requests forwarded statelessly: pop our Via and pass it on (16.11).
    if (via?.params.get('branch')?.startsWith('z9hG4bKsl') && res.getAll('via').length > 1) {
      this.#forwardStatelessResponse(res, inb);
      return;
    }
    if (this.#debug) this.log.debug({ callId: res.callId, status: res.status }, 'stray response dropped');
  }

  /**
   * A 2xx retransmitted to an INVITE of an application, once its transaction is Accepted
   * (RFC 6026 7.2): the ACK is sent again (13.2.2.4); before the application has sent one, the
   * 2xx goes to the application again.
   */
  #retransmitted2xx(r: AcceptedClientInvite, res: SipResponse): void {
    const d = this.dialogs.get(r.dialogId);
    const ack = d?.ackFor(cseqNumberOf(res));
    if (d && ack) {
      void this.#resendAck(d, ack);
      return;
    }
    const app = this.#wire.get(r.appId);
    if (!app) return;
    const text = serialize(res);
    this.#toApp(app, `sip|${meta6('network', text.length, r.peer.transport, r.peer.address, r.peer.port)}|${r.id}|${r.dialogId}|`, text);
  }

  // ---------------------------------------------------------------- inbound requests

  #onRequest(req: SipRequest, inb: Inbound, l: Listener): void {
    // the top Via is parsed once: it gives the transaction key and where responses go
    const via = topVia(req);
    if (via) this.#stampVia(req, inb, via);
    const method = req.method;

    if (method === 'ACK') return this.#onAck(req, inb, l, via);

    const key = serverKey(req, undefined, via);
    if (key === undefined) {
      this.#statelessResponse(req, inb, l, 400, 'Bad Request - Malformed Via');
      return;
    }
    const existing = this.transactions.findServer(key);
    if (existing) {
      // a retransmission (17.2.1, 17.2.2; RFC 6026 7.1: absorbed in Accepted)
      if (existing instanceof ServerInviteTransaction) existing.receiveInvite();
      else if (existing instanceof ServerNonInviteTransaction) existing.receiveRequest();
      else if (existing instanceof CompletedRequest) this.#resendFinal(existing);
      return;
    }

    if (method === 'CANCEL') return this.#onCancel(req, inb, l, via);

    const toTag = getTag(req.get('to') ?? '');
    const fromTag = getTag(req.get('from') ?? '');

    if (toTag !== undefined) return this.#onInDialog(req, inb, l, key, fromTag, toTag, via);

    // out of dialog: merged requests (8.2.2.2), Max-Forwards, routing to an application
    const mergeKey = mergeKeyOf(req, fromTag, toTag);
    if (this.transactions.isMerged(mergeKey, key)) {
      this.#statelessResponse(req, inb, l, 482, 'Loop Detected');
      return;
    }
    const mf = req.get('max-forwards');
    if (mf !== undefined && Number(mf) <= 0) {
      this.#statelessResponse(req, inb, l, 483, 'Too Many Hops');
      return;
    }
    // a Route naming us is ours to remove (loose routing, 16.4); a further hop means proxying
    if (req.has('route')) {
      this.#popOwnRoute(req);
      if (req.has('route') && !this.isLocalUri(req.uri)) {
        this.#forwardStatelessRequest(req, inb, l);
        return;
      }
    }
    if (method === 'BYE' || method === 'UPDATE' || method === 'PRACK') {
      this.#statelessResponse(req, inb, l, 481);
      return;
    }

    const tx = this.#newServerTx(req, inb, l, key, via, mergeKey);
    const app = this.#wire.pick(routeName(method));
    if (method === 'INVITE') {
      this.#trying(tx as ServerInviteTransaction);
      this.#cdr('attempt', 'network', undefined, inb.data);
    }
    if (!app) {
      const res = this.#makeResponse(req, 503, 'Service Unavailable', newTag());
      tx.respond(res);
      if (method === 'INVITE') this.#cdr('stop', 'application', 'call-rejected', res);
      this.#answered(tx);
      return;
    }
    const sc = this.#server.get(tx.id)!;
    sc.appId = app.id;
    this.#toApp(app, `sip|${meta6('network', inb.data.length, inb.source.transport, inb.source.address, inb.source.port, inb.receivedAt)}|${tx.id}||${l.listen.host}|${l.listen.port}|`, inb.data);
  }

  #newServerTx(req: SipRequest, inb: Inbound, l: Listener, key: string, via: Via | undefined, mergeKey?: string): ServerTransaction {
    const id = newTxnId();
    const sc: ServerContext = {
      inbound: inb,
      listener: l,
      target: this.#responseTarget(via, inb),
      appId: undefined,
      toTag: undefined,
      dialog: undefined,
      proxy: undefined,
      reliable: undefined,
      trying: undefined,
    };
    const send = (m: SipResponse): void => {
      this.#sendResponse(m, sc.target, sc.listener, sc.inbound.connectionId);
    };
    const ctx = this.#ctx(l.transport.reliable);
    const tx: ServerTransaction =
      req.method === 'INVITE' ? new ServerInviteTransaction(id, key, req, ctx, send) : new ServerNonInviteTransaction(id, key, req, ctx, send);
    this.transactions.addServer(tx, mergeKey);
    this.#server.set(id, sc);
    return tx;
  }

  /**
   * A server transaction has its final response: what it keeps for its remaining timers (up to
   * 32 s over UDP) shrinks to what building a response and matching a retransmission need. The
   * request's bytes and most of its headers go (RFC 3261 17.2, RFC 6026 Accepted state).
   */
  #answered(tx: ServerTransaction, sent?: Buffer): void {
    if (tx.terminated) return;
    const sc = this.#server.get(tx.id);
    if (!sc || sc.proxy) return;
    const linger = 64 * this.opts.timers.T1;
    if (tx instanceof ServerInviteTransaction && tx.state === 'accepted') {
      this.transactions.retire(tx, new AcceptedInvite(tx.id, tx.key, tx.mergeKey, sc.toTag), linger);
      return;
    }
    if (tx instanceof ServerNonInviteTransaction && tx.state === 'completed' && !sc.listener.transport.reliable) {
      const last = tx.lastResponse;
      const bytes = sent ?? (last ? serialize(last) : undefined);
      if (bytes) {
        const status = last?.status ?? 200;
        const remnant = new CompletedRequest(tx.id, tx.key, tx.mergeKey, bytes.toString('latin1'), sc.target, sc.listener, sc.inbound.connectionId, status);
        this.transactions.retire(tx, remnant, linger);
        return;
      }
    }
    // a non-2xx to an INVITE keeps its transaction (Timers G, H, I): it only gets lighter
    compactRequest(tx.request);
    if (sc.inbound.data.length > 0) sc.inbound = { ...sc.inbound, data: EMPTY };
  }

  /**
   * 100 Trying (17.2.1): sent when the application has not answered within 200 ms, so a quick
   * answer saves a message; over UDP the caller's Timer A (T1 = 500 ms) is still well covered.
   */
  #trying(tx: ServerInviteTransaction): void {
    const sc = this.#server.get(tx.id);
    if (!sc) return;
    sc.trying = this.#clock.schedule(TRYING_DELAY_MS, () => {
      sc.trying = undefined;
      if (tx.state === 'proceeding' && !tx.lastResponse) tx.respond(this.#makeResponse(tx.request, 100, 'Trying'));
    });
  }

  #popOwnRoute(req: SipRequest): void {
    for (;;) {
      const first = req.first('route');
      if (first === undefined || !this.isLocalUri(uriOf(first))) return;
      req.shift('route');
    }
  }

  #onAck(req: SipRequest, inb: Inbound, l: Listener, via: Via | undefined): void {
    const key = serverKey(req, undefined, via);
    const ist = key !== undefined ? this.transactions.findServer(key) : undefined;
    if (ist instanceof ServerInviteTransaction && ist.state === 'completed') {
      ist.receiveAck(); // ACK for a non-2xx final response: absorbed by the transaction (17.2.1)
      return;
    }
    if (ist instanceof ServerInviteTransaction && ist.state === 'confirmed') return;
    const d = this.dialogs.match(req.callId, getTag(req.get('from') ?? ''), getTag(req.get('to') ?? ''));
    if (d) {
      const pending = d.pendingAck && d.pendingAck.cseq === cseqNumberOf(req) ? d.clearPendingAck() : undefined;
      const app = this.#wire.get(d.owner);
      if (d.state === 'early') d.state = 'confirmed';
      if (app) {
        const txn = pending?.txnId ?? newTxnId();
        this.#toApp(app, `sip|${meta6('network', inb.data.length, inb.source.transport, inb.source.address, inb.source.port, inb.receivedAt)}|${txn}|${d.id}|`, inb.data);
      }
      return;
    }
    // an ACK for a dialog we Record-Routed as a proxy
    this.#popOwnRoute(req);
    if (req.getAll('route').length > 0 || !this.isLocalUri(req.uri)) this.#forwardStatelessRequest(req, inb, l);
  }

  #onCancel(req: SipRequest, inb: Inbound, l: Listener, via: Via | undefined): void {
    const inviteKey = serverKey(req, 'INVITE', via);
    const ist = inviteKey !== undefined ? this.transactions.findServer(inviteKey) : undefined;
    if (ist instanceof AcceptedInvite) {
      // the INVITE was answered 2xx: the CANCEL is answered and changes nothing (9.2)
      const cancelTx = this.#newServerTx(req, inb, l, serverKey(req, undefined, via)!, via);
      cancelTx.respond(this.#makeResponse(req, 200, 'OK', ist.toTag ?? newTag()));
      this.#answered(cancelTx);
      return;
    }
    if (!(ist instanceof ServerInviteTransaction)) {
      this.#statelessResponse(req, inb, l, 481);
      return;
    }
    const ctx = this.#server.get(ist.id);
    const key = serverKey(req, undefined, via)!;
    const cancelTx = this.#newServerTx(req, inb, l, key, via);
    cancelTx.respond(this.#makeResponse(req, 200, 'OK', ctx?.toTag ?? newTag()));
    this.#answered(cancelTx);
    if (ist.state !== 'proceeding' || !ctx) return;
    ist.cancelled = true;
    if (ctx.proxy) {
      ctx.proxy.cancel();
      return;
    }
    const toTag = ctx.toTag ?? newTag();
    ctx.toTag = toTag;
    const res487 = this.#makeResponse(ist.request, 487, 'Request Terminated', toTag);
    ist.respond(res487);
    this.#answered(ist);
    ctx.reliable?.stop();
    const d = ctx.dialog;
    if (d) this.dialogs.remove(d);
    const app = ctx.appId !== undefined ? this.#wire.get(ctx.appId) : undefined;
    if (app) {
      this.#toApp(app, `sip|${meta6('network', inb.data.length, inb.source.transport, inb.source.address, inb.source.port, inb.receivedAt)}|${ist.id}|${d?.id ?? ''}|`, inb.data);
    }
    this.#cdr('stop', 'network', 'call-canceled', inb.data);
  }

  #onInDialog(req: SipRequest, inb: Inbound, l: Listener, key: string, fromTag: string | undefined, toTag: string, via: Via | undefined): void {
    const d = this.dialogs.match(req.callId, fromTag, toTag);
    if (!d) {
      this.#popOwnRoute(req);
      if (req.getAll('route').length > 0 || !this.isLocalUri(req.uri)) {
        // in-dialog request of a dialog we Record-Routed as a proxy (16.4 loose routing)
        this.#forwardStatelessRequest(req, inb, l);
        return;
      }
      this.#statelessResponse(req, inb, l, 481);
      return;
    }
    const seq = cseqNumberOf(req);
    if (req.method !== 'CANCEL' && d.remoteSeq !== undefined && seq < d.remoteSeq) {
      this.#statelessResponse(req, inb, l, 500, 'Server Internal Error - CSeq out of order');
      return;
    }
    if (req.method === 'INVITE' && d.pendingAck) {
      this.#statelessResponse(req, inb, l, 491, 'Request Pending', { 'Retry-After': '1' });
      return;
    }
    d.remoteSeq = seq;
    const tx = this.#newServerTx(req, inb, l, key, via);
    const sc = this.#server.get(tx.id)!;
    sc.dialog = d;
    sc.toTag = d.localTag;
    sc.appId = d.owner;
    if (req.method === 'INVITE') this.#trying(tx as ServerInviteTransaction);
    if (req.method === 'PRACK') this.#onPrack(req, d);
    if (req.method === 'INVITE' || req.method === 'UPDATE') {
      const contact = req.first('contact');
      if (contact !== undefined) d.remoteTarget = uriOf(contact); // target refresh (12.2.2)
    }
    const app = this.#wire.get(d.owner);
    if (!app) {
      tx.respond(this.#makeResponse(req, 503, 'Service Unavailable'));
      this.#answered(tx);
      return;
    }
    this.#toApp(app, `sip|${meta6('network', inb.data.length, inb.source.transport, inb.source.address, inb.source.port, inb.receivedAt)}|${tx.id}|${d.id}|`, inb.data);
  }

  /** A PRACK stops the retransmission of the reliable provisional it acknowledges (RFC 3262). */
  #onPrack(req: SipRequest, d: Dialog): void {
    const rack = (req.get('rack') ?? '').trim().split(/\s+/);
    const rseq = Number(rack[0]);
    for (const sc of this.#server.values()) {
      if (sc.dialog === d && sc.reliable && sc.reliable.rseq === rseq) sc.reliable.stop();
    }
  }

  // ---------------------------------------------------------------- wire protocol, inbound

  onAppReady(_app: AppConnection): void {
    // nothing to do until the application routes methods
  }

  onAppGone(app: AppConnection): void {
    // Transactions waiting on this application get an answer; its dialogs are ended.
    for (const [id, sc] of this.#server) {
      if (sc.appId !== app.id || sc.proxy) continue;
      const tx = this.transactions.byId(id);
      if (tx instanceof ServerInviteTransaction && tx.state === 'proceeding') {
        tx.respond(this.#makeResponse(tx.request, 480, 'Temporarily Unavailable', sc.toTag ?? newTag()));
      } else if (tx instanceof ServerNonInviteTransaction && (tx.state === 'trying' || tx.state === 'proceeding')) {
        tx.respond(this.#makeResponse(tx.request, 503, 'Service Unavailable', sc.toTag ?? newTag()));
      }
    }
    for (const d of this.dialogs.ownedBy(app.id)) {
      if (d.state === 'confirmed') void this.#engineBye(d, 'application gone', false);
      else this.dialogs.remove(d);
    }
  }

  /** `<msgId>|<leader>` CRLF and a SIP message's bytes, to an application. */
  #toApp(app: AppConnection, leader: string, sip: Buffer): void {
    this.stats.wireOut++;
    app.sendFrame(`${newMsgId()}|${leader}\r\n`, sip);
  }

  #nok(app: AppConnection, msgId: string, reason: string): void {
    this.stats.wireOut++;
    app.reply(msgId, `NOK|${reason}`);
  }

  onSip(app: AppConnection, msgId: string, args: string[], text: string): void {
    this.stats.wireIn++;
    const parsed = parseAppMessage(text);
    if (typeof parsed === 'string') {
      this.#nok(app, msgId, parsed);
      return;
    }
    const txnId = args[0] ?? '';
    const dlgId = args[1] ?? '';
    const routeUrl = args[2] ?? '';
    try {
      if (parsed.type === 'response') {
        if (txnId === '') return this.#nok(app, msgId, 'transaction id missing');
        this.#appResponse(app, msgId, txnId, parsed);
        return;
      }
      if (dlgId !== '') {
        const d = this.dialogs.get(dlgId);
        if (!d) return this.#nok(app, msgId, 'Server error: unable to find dialog for dialog id provided');
        void this.#appInDialog(app, msgId, d, parsed).catch((err: Error) => this.#nok(app, msgId, err.message));
        return;
      }
      if (txnId !== '') {
        if (parsed.method !== 'CANCEL') return this.#nok(app, msgId, `a ${parsed.method} with a transaction id must be a CANCEL`);
        this.#appCancel(app, msgId, txnId, parsed);
        return;
      }
      if (parsed.method === 'ACK') return this.#nok(app, msgId, 'Server error: ACK for non-success final response is automatically generated by server');
      void this.#appNewRequest(app, msgId, parsed, routeUrl).catch((err: Error) => this.#nok(app, msgId, err.message));
    } catch (err) {
      this.log.error({ err, app: app.id }, 'error handling application message');
      this.#nok(app, msgId, `Server error: ${(err as Error).message}`);
    }
  }

  /**
   * Copies the application's headers, except those the engine owns and `skip`, and its body:
   * each header the application gives replaces every line of it the target had.
   */
  #applyAppHeaders(target: SipMessage, from: SipMessage, skip: ReadonlySet<string>, l: Listener): void {
    const given: SipHeader[] = [];
    for (const h of from.headers) {
      if (ENGINE_OWNED.has(h.key) || skip.has(h.key)) continue;
      // drachtio-srf writes header names in lower case; on the wire they get their usual form
      const name = h.name === h.key ? wireName(h.key) : h.name;
      given.push({ key: h.key, name, value: this.#localize(h.key, h.value, l) });
    }
    if (given.length > 0) {
      const kept: SipHeader[] = [];
      for (const h of target.headers) if (!given.some((g) => g.key === h.key)) kept.push(h);
      for (const g of given) kept.push(g);
      target.headers = kept;
    }
    if (from.body.length > 0) {
      target.body = from.body;
      if (!target.has('content-type')) {
        if (from.body.subarray(0, 3).toString() === 'v=0') target.set('Content-Type', 'application/sdp');
        else throw new Error('missing content-type');
      }
    }
  }

  /** `@localhost` in From/To/Contact/P-Asserted-Identity becomes our address (as drachtio does). */
  #localize(key: string, value: string, l: Listener): string {
    if ((key === 'from' || key === 'to' || key === 'contact' || key === 'p-asserted-identity') && value.includes('@localhost')) {
      return value.replace(/@localhost(:\d+)?/g, `@${l.advertised}:${l.listen.port}`);
    }
    return value;
  }

  #appResponse(app: AppConnection, msgId: string, txnId: string, appRes: SipResponse): void {
    const tx = this.transactions.byId(txnId);
    const sc = this.#server.get(txnId);
    if (!sc || !(tx instanceof ServerInviteTransaction || tx instanceof ServerNonInviteTransaction)) {
      return this.#nok(app, msgId, 'Response not sent due to unknown transaction');
    }
    const req = tx.request;
    if (req.method === 'CANCEL') return this.#nok(app, msgId, '200 OK to incoming CANCEL is automatically generated by the stack');
    const status0 = appRes.status;
    const open = tx instanceof ServerInviteTransaction
      ? tx.state === 'proceeding' || (tx.state === 'accepted' && status0 >= 200 && status0 < 300)
      : tx.state === 'trying' || tx.state === 'proceeding';
    // a response the transaction would refuse (e.g. a 200 crossing our 487 to a CANCEL) must not
    // create a dialog first
    if (!open) return this.#nok(app, msgId, 'Response not sent due to unknown transaction');
    sc.trying?.cancel();
    sc.trying = undefined;
    const status = appRes.status;
    const l = sc.listener;
    // our To tag: the application's, the one already chosen, or a new one
    if (status > 100 && sc.toTag === undefined) sc.toTag = getTag(appRes.get('to') ?? '') ?? newTag();
    const res = this.#makeResponse(req, status, appRes.reason || REASONS[status], status > 100 ? sc.toTag : undefined);
    // a request without a To tag starts a dialog (12.1.1); one with a tag runs inside one
    const initial = getTag(req.get('to') ?? '') === undefined;
    const dialogCreating = (req.method === 'INVITE' || req.method === 'SUBSCRIBE') && initial;
    if (dialogCreating && status > 100 && status < 300) {
      for (const rr of req.getAll('record-route')) res.append('Record-Route', rr);
    }
    try {
      this.#applyAppHeaders(res, appRes, RESPONSE_SKIP, l);
    } catch (err) {
      return this.#nok(app, msgId, (err as Error).message);
    }
    const reliable = status > 100 && status < 200 && req.method === 'INVITE' && /\b100rel\b/i.test(appRes.get('require') ?? '');
    if (reliable && !/\b100rel\b/i.test(`${req.get('supported') ?? ''},${req.get('require') ?? ''}`)) {
      return this.#nok(app, msgId, 'Remote endpoint does not support 100rel');
    }
    const needsContact = (req.method === 'INVITE' || req.method === 'SUBSCRIBE' || req.method === 'REFER') && status > 100 && status < 300;
    if (needsContact && !res.has('contact')) res.set('Contact', this.contactFor(l));

    // dialog state (12.1.1): early on a provisional with a tag, confirmed on 2xx
    let d = sc.dialog;
    if (dialogCreating && status > 100 && status < 300 && !d) {
      const fromTag = getTag(req.get('from') ?? '') ?? '';
      const contact = req.first('contact');
      d = new Dialog(
        dialogId(req.callId, fromTag),
        'uas',
        req.callId,
        sc.toTag!,
        fromTag,
        stripTag(req.get('to') ?? ''),
        stripTag(req.get('from') ?? ''),
        contact !== undefined ? uriOf(contact) : req.uri,
        newCSeq(),
        app.id,
        l.transport.name,
        req.method,
      );
      d.routeSet = req.getAll('record-route');
      d.remoteSeq = cseqNumberOf(req);
      this.dialogs.add(d);
      sc.dialog = d;
    }
    if (reliable && d) {
      res.set('RSeq', String(d.nextRSeq++));
      if (!res.has('require')) res.set('Require', '100rel');
    }
    if (!tx.respond(res)) return this.#nok(app, msgId, 'Response not sent due to unknown transaction');
    const sent = this.#lastSent?.res === res ? this.#lastSent.data : serialize(res);
    this.#lastSent = undefined;
    const peer = sc.target;

    if (reliable && d) this.#retransmitReliable(tx as ServerInviteTransaction, sc, res, Number(res.get('rseq')));
    if (d && req.method === 'INVITE') {
      if (status >= 200 && status < 300) {
        d.state = 'confirmed';
        this.#awaitAck(d, tx as ServerInviteTransaction, res, sc);
        if (initial) this.#cdr('start', 'application', 'uas', sent);
      } else if (status >= 300 && (dialogCreating || d.state === 'early')) {
        // a failed initial INVITE ends the early dialog
        if (d.state === 'early') this.dialogs.remove(d);
        this.#cdr('stop', 'application', status === 487 ? 'call-canceled' : 'call-rejected', sent);
      }
    } else if (req.method === 'INVITE' && status >= 300 && !sc.dialog) {
      this.#cdr('stop', 'application', status === 487 ? 'call-canceled' : 'call-rejected', sent);
    }
    if (d && req.method === 'BYE' && status >= 200) {
      this.dialogs.remove(d);
      if (d.method === 'INVITE') this.#cdr('stop', 'network', 'normal-release', req);
    }
    const reportedDialog = d && (!initial || req.method === 'INVITE' || req.method === 'SUBSCRIBE') ? d.id : '';
    if (status >= 200) this.#answered(tx, sent);
    this.stats.wireOut++;
    app.reply(msgId, `OK|${meta6('application', sent.length, peer.transport, peer.address, peer.port)}|${txnId}|${reportedDialog}||Msg sent:|\r\n`, sent);
  }

  /** 2xx retransmission until the ACK comes (13.3.1.4), then the unsolicited BYE. */
  #awaitAck(d: Dialog, tx: ServerInviteTransaction, res: SipResponse, sc: ServerContext): void {
    d.clearPendingAck();
    const { T1, T2 } = this.opts.timers;
    const pending: PendingAck = { cseq: cseqNumberOf(tx.request), response: res, txnId: tx.id, retransmit: undefined, giveUp: undefined };
    d.pendingAck = pending;
    if (!sc.listener.transport.reliable) {
      const again = (interval: number): void => {
        pending.retransmit = this.#clock.schedule(interval, () => {
          if (d.pendingAck !== pending) return;
          this.#sendResponse(res, sc.target, sc.listener, sc.inbound.connectionId);
          again(Math.min(interval * 2, T2));
        });
      };
      again(T1);
    }
    pending.giveUp = this.#clock.schedule(64 * T1, () => {
      if (d.pendingAck !== pending) return;
      d.clearPendingAck();
      this.log.warn({ callId: d.callId, dialog: d.id }, 'no ACK for 2xx; ending the dialog with BYE');
      void this.#engineBye(d, 'ACK timeout', true);
    });
  }

  #retransmitReliable(tx: ServerInviteTransaction, sc: ServerContext, res: SipResponse, rseq: number): void {
    sc.reliable?.stop();
    let handle: { cancel(): void } | undefined;
    const started = this.#clock.now();
    const { T1 } = this.opts.timers;
    const stop = (): void => {
      handle?.cancel();
      if (sc.reliable?.rseq === rseq) sc.reliable = undefined;
    };
    sc.reliable = { rseq, stop };
    if (sc.listener.transport.reliable) return;
    const again = (interval: number): void => {
      handle = this.#clock.schedule(interval, () => {
        if (sc.reliable?.rseq !== rseq || tx.state !== 'proceeding') return;
        if (this.#clock.now() - started >= 64 * T1) {
          stop();
          return;
        }
        this.#sendResponse(res, sc.target, sc.listener, sc.inbound.connectionId);
        again(interval * 2);
      });
    };
    again(T1);
  }

  /** The engine ends a dialog itself: BYE to the peer, and to the application as `unsolicited`. */
  async #engineBye(d: Dialog, why: string, tellApp: boolean): Promise<void> {
    if (d.state === 'terminated') return;
    const bye = this.#buildInDialog(d, 'BYE');
    bye.set('Reason', `SIP ;cause=200 ;text="${why}"`);
    this.dialogs.remove(d);
    try {
      const { peer, listener } = await this.#dialogNextHop(d);
      const noop: ClientTransactionUser = { onResponse: () => undefined, onTimeout: () => undefined };
      this.startClient(bye, peer, listener, noop);
      const app = this.#wire.get(d.owner);
      if (tellApp && app) {
        const text = serialize(bye);
        this.#toApp(app, `sip|${meta6('application', text.length, peer.transport, listener.listen.host, listener.listen.port)}|unsolicited|${d.id}|`, text);
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message, dialog: d.id }, 'could not send BYE');
    }
  }

  /** A request inside a dialog, built from the dialog state (12.2.1.1). */
  #buildInDialog(d: Dialog, method: string, cseq?: number): SipRequest {
    const l = this.#listenerForTransport(d.transport) ?? this.#listeners[0]!;
    let uri = d.remoteTarget;
    const routes = [...d.routeSet];
    const first = routes[0];
    if (first !== undefined && !/;\s*lr\b/i.test(uriOf(first))) {
      // strict router (12.2.1.1): it gets the Request-URI, the remote target goes last
      uri = uriOf(first);
      routes.shift();
      routes.push(`<${d.remoteTarget}>`);
    }
    const req = new SipRequest(method, uri);
    req.append('Via', this.#viaFor(l, newBranch()));
    for (const r of routes) req.append('Route', r);
    req.append('Max-Forwards', '70');
    req.append('From', `${d.localUri};tag=${d.localTag}`);
    req.append('To', `${d.remoteUri};tag=${d.remoteTag}`);
    req.append('Call-ID', d.callId);
    if (cseq === undefined) {
      d.localSeq++;
      cseq = d.localSeq;
    }
    req.append('CSeq', `${cseq} ${method}`);
    return req;
  }

  async #dialogNextHop(d: Dialog): Promise<{ peer: Peer; listener: Listener }> {
    const first = d.routeSet[0];
    return this.resolve(first !== undefined ? uriOf(first) : d.remoteTarget, d.transport);
  }

  /** Sends the ACK of a dialog's INVITE again, as it was sent (a 2xx came again, 13.2.2.4). */
  async #resendAck(d: Dialog, data: Buffer): Promise<void> {
    const { peer, listener } = await this.#dialogNextHop(d);
    listener.transport.send(data, peer);
    this.stats.count(this.stats.requestsOut, 'ACK');
    this.capture?.record(d.callId, this.#clock.now(), 'out', peer.transport, peer.address, peer.port, listener.local, data);
  }

  async #appInDialog(app: AppConnection, msgId: string, d: Dialog, appReq: SipRequest): Promise<void> {
    const method = appReq.method;
    const l = this.#listenerForTransport(d.transport) ?? this.#listeners[0]!;
    let req: SipRequest;
    if (method === 'ACK') {
      const ackSeq = d.lastAckSeq ?? d.localSeq;
      req = this.#buildInDialog(d, 'ACK', d.pendingInviteSeq ?? ackSeq);
    } else if (method === 'CANCEL') {
      throw new Error('CANCEL goes with the INVITE transaction id, not a dialog id');
    } else {
      req = this.#buildInDialog(d, method);
    }
    this.#applyAppHeaders(req, appReq, REQUEST_SKIP, l);
    if ((method === 'INVITE' || method === 'UPDATE' || method === 'SUBSCRIBE' || method === 'REFER' || method === 'NOTIFY') && !req.has('contact')) {
      req.set('Contact', this.contactFor(l));
    }
    const { peer, listener } = await this.#dialogNextHop(d);
    if (method === 'ACK') {
      const seq = cseqNumberOf(req);
      const sent = this.sendRequest(req, peer, listener);
      d.setAck(seq, sent);
      d.pendingInviteSeq = undefined;
      if (d.state === 'early') d.state = 'confirmed';
      this.stats.wireOut++;
      app.reply(msgId, `OK|${meta6('application', sent.length, peer.transport, listener.listen.host, listener.listen.port)}|${newTxnId()}|Msg sent:|\r\n`, sent);
      return;
    }
    if (method === 'INVITE') d.pendingInviteSeq = cseqNumberOf(req);
    if (method === 'BYE') {
      this.dialogs.remove(d);
      if (d.method === 'INVITE') this.#cdr('stop', 'application', 'normal-release', req);
    }
    const txnId = newTxnId();
    this.#client.set(txnId, { appId: app.id, dialogId: d.id, inDialog: true, listener, target: peer, cancelWaiting: undefined });
    const tx = this.startClient(req, peer, listener, this.#appTu(txnId, req, peer, listener, d), txnId);
    if (!tx) throw new Error('could not start transaction');
    const sent = this.#sentBytes(req);
    this.stats.wireOut++;
    app.reply(msgId, `OK|${meta6('application', sent.length, peer.transport, listener.listen.host, listener.listen.port)}|${txnId}|Msg sent:|\r\n`, sent);
  }

  /** The TU of a client transaction started for an application: responses go to the app. */
  #appTu(txnId: string, req: SipRequest, peer: Peer, l: Listener, inDialog: Dialog | undefined): ClientTransactionUser {
    return {
      onResponse: (res: SipResponse) => this.#appClientResponse(txnId, req, res, peer, l, inDialog),
      onTimeout: () => {
        const res = this.#makeResponse(req, 408, 'Request Timeout');
        this.#appClientResponse(txnId, req, res, peer, l, inDialog, true);
      },
    };
  }

  #appClientResponse(txnId: string, req: SipRequest, res: SipResponse, peer: Peer, l: Listener, inDialog: Dialog | undefined, synthetic = false): void {
    const cc = this.#client.get(txnId);
    const appId = cc?.appId ?? inDialog?.owner;
    const app = appId !== undefined ? this.#wire.get(appId) : undefined;
    const status = res.status;
    const isInvite = req.method === 'INVITE';
    if (status === 100) return; // drachtio does not pass 100 Trying up
    if (cc?.cancelWaiting && status < 200) {
      const go = cc.cancelWaiting;
      cc.cancelWaiting = undefined;
      go();
    } else if (cc?.cancelWaiting && status >= 200) cc.cancelWaiting = undefined;

    let d = inDialog;
    const fromTag = getTag(req.get('from') ?? '') ?? '';
    const dlgId = cc?.dialogId ?? '';
    if (!inDialog && (isInvite || req.method === 'SUBSCRIBE')) {
      const toTag = getTag(res.get('to') ?? '');
      d = this.dialogs.get(dlgId);
      if (!d && toTag !== undefined && status > 100 && status < 300 && !synthetic) {
        const contact = res.first('contact');
        if (contact !== undefined || status >= 200) {
          d = new Dialog(dlgId, 'uac', req.callId, fromTag, toTag, stripTag(req.get('from') ?? ''), stripTag(req.get('to') ?? ''),
            contact !== undefined ? uriOf(contact) : req.uri, cseqNumberOf(req), appId ?? '', l.transport.name, req.method);
          d.routeSet = res.getAll('record-route').reverse();
          d.pendingInviteSeq = isInvite ? cseqNumberOf(req) : undefined;
          this.dialogs.add(d);
        }
      }
      if (d && status >= 200 && status < 300) {
        if (d.state === 'early') {
          d.state = 'confirmed';
          d.routeSet = res.getAll('record-route').reverse();
          const contact = res.first('contact');
          if (contact !== undefined) d.remoteTarget = uriOf(contact);
          if (isInvite) this.#cdr('start', 'network', 'uac', res);
        } else {
          // a retransmitted 2xx: the ACK is sent again and the application is not told twice
          const ack = d.ackFor(cseqNumberOf(res));
          if (ack) {
            void this.#resendAck(d, ack);
            return;
          }
        }
      } else if (d && status >= 300 && d.state === 'early') {
        this.dialogs.remove(d);
        d = undefined;
      }
      if (isInvite && status >= 300) this.#cdr('stop', 'network', status === 487 ? 'call-canceled' : 'call-rejected', res);
    } else if (inDialog && isInvite && status >= 200 && status < 300) {
      const ack = inDialog.ackFor(cseqNumberOf(res));
      if (ack) {
        void this.#resendAck(inDialog, ack);
        return;
      }
      const contact = res.first('contact');
      if (contact !== undefined) inDialog.remoteTarget = uriOf(contact);
    }
    if (status >= 200) {
      const tx = this.transactions.byId(txnId);
      if (isInvite && status < 300 && tx instanceof ClientInviteTransaction && tx.state === 'accepted' && appId !== undefined && dlgId !== '') {
        // Accepted until Timer M: only 2xx retransmissions are left to handle
        this.transactions.retire(tx, new AcceptedClientInvite(txnId, tx.key, appId, dlgId, peer, cseqNumberOf(req), this.dialogs), 64 * this.opts.timers.T1);
      } else {
        // the transaction is over for the request's text: keep what matching and the dialog need
        compactRequest(req);
      }
    }
    if (!app) return;
    const text = serialize(res);
    const reported = isInvite || req.method === 'SUBSCRIBE' || inDialog ? dlgId : '';
    this.#toApp(app, `sip|${meta6('network', text.length, peer.transport, peer.address, peer.port)}|${txnId}|${reported}|`, text);
  }

  async #appNewRequest(app: AppConnection, msgId: string, appReq: SipRequest, routeUrl: string): Promise<void> {
    const method = appReq.method;
    // next hop: the outbound proxy given by the app, else the first Route, else the Request-URI
    const firstRoute = appReq.getAll('route')[0];
    const hopUri = routeUrl !== '' ? routeUrl : firstRoute !== undefined ? uriOf(firstRoute) : appReq.uri;
    const reqTransport = parseUri(appReq.uri)?.params.get('transport')?.toLowerCase() as TransportName | undefined;
    const { peer, listener: l } = await this.resolve(hopUri, reqTransport);
    if (this.#isLocalPeer(peer)) throw new Error('can not send request to myself');

    const req = new SipRequest(method, appReq.uri);
    req.append('Via', this.#viaFor(l, newBranch()));
    if (routeUrl === '') for (const r of appReq.getAll('route')) req.append('Route', r);
    req.append('Max-Forwards', appReq.get('max-forwards') ?? '70');
    const contactGiven = appReq.get('contact');
    let from = appReq.get('from') ? this.#localize('from', appReq.get('from')!, l) : contactGiven ? this.#localize('contact', contactGiven, l) : this.contactFor(l);
    if (getTag(from) === undefined) from = `${from};tag=${newTag()}`;
    req.append('From', from);
    req.append('To', appReq.get('to') ? this.#localize('to', appReq.get('to')!, l) : `<${appReq.uri}>`);
    req.append('Call-ID', appReq.get('call-id') ?? newCallId());
    const cseq = parseCSeq(appReq.get('cseq') ?? '')?.seq ?? newCSeq();
    req.append('CSeq', `${cseq} ${method}`);
    this.#applyAppHeaders(req, appReq, REQUEST_SKIP, l);
    if ((method === 'INVITE' || method === 'SUBSCRIBE' || method === 'REFER') && !req.has('contact')) req.set('Contact', this.contactFor(l));

    const txnId = newTxnId();
    const fromTag = getTag(from) ?? '';
    const dlgId = method === 'INVITE' || method === 'SUBSCRIBE' ? dialogId(req.callId, fromTag) : '';
    this.#client.set(txnId, { appId: app.id, dialogId: dlgId, inDialog: false, listener: l, target: peer, cancelWaiting: undefined });
    const tx = this.startClient(req, peer, l, this.#appTu(txnId, req, peer, l, undefined), txnId);
    const sent = this.#sentBytes(req);
    this.stats.wireOut++;
    app.reply(msgId, `OK|${meta6('application', sent.length, peer.transport, l.listen.host, l.listen.port)}|${txnId}|Msg sent:|\r\n`, sent);
    if (method === 'INVITE') this.#cdr('attempt', 'application', undefined, sent);
    if (!tx) this.#client.delete(txnId);
  }

  /** CANCEL of an INVITE the application sent (section 9.1). */
  #appCancel(app: AppConnection, msgId: string, txnId: string, appReq: SipRequest): void {
    const tx = this.transactions.byId(txnId);
    const cc = this.#client.get(txnId);
    if (tx instanceof AcceptedClientInvite) return this.#nok(app, msgId, 'unable to cancel transaction in state accepted');
    if (!(tx instanceof ClientInviteTransaction) || !cc) return this.#nok(app, msgId, `unable to cancel unknown transaction id: ${txnId}`);
    if (tx.state !== 'calling' && tx.state !== 'proceeding') return this.#nok(app, msgId, `unable to cancel transaction in state ${tx.state}`);
    const cancel = deriveFromInvite(tx.request, 'CANCEL', tx.request.get('to') ?? '');
    for (const h of appReq.headers) {
      if (h.key === 'reason' || h.key.startsWith('x-')) cancel.append(h.name, h.value);
    }
    const cancelId = newTxnId();
    const noop: ClientTransactionUser = { onResponse: () => undefined, onTimeout: () => undefined };
    const go = (): void => {
      this.startClient(cancel, cc.target, cc.listener, noop, cancelId);
    };
    if (tx.provisionalSeen) go();
    else cc.cancelWaiting = go;
    const sent = serialize(cancel);
    this.stats.wireOut++;
    app.reply(msgId, `OK|${meta6('application', sent.length, cc.target.transport, cc.listener.listen.host, cc.listener.listen.port)}|${cancelId}|Msg sent:|\r\n`, sent);
  }

  // ---------------------------------------------------------------- proxy

  onProxy(app: AppConnection, msgId: string, args: string[], text: string): void {
    this.stats.wireIn++;
    if (args.length < 8) {
      app.reply(msgId, 'NO|Invalid proxy request: not enough information provided');
      return;
    }
    const txnId = args[0]!;
    const tx = this.transactions.byId(txnId);
    const sc = this.#server.get(txnId);
    if (!sc || !(tx instanceof ServerInviteTransaction || tx instanceof ServerNonInviteTransaction)) {
      return this.#nok(app, msgId, `Unknown transaction id: ${txnId}`);
    }
    const parsed = parseAppMessage(text);
    const headers = typeof parsed === 'string' ? undefined : parsed;
    const op = new ProxyOperation(this, {
      app,
      msgId,
      tx,
      inbound: sc.inbound,
      listener: sc.listener,
      remainInDialog: args[1] === 'remainInDialog',
      fullResponse: args[2] === 'fullResponse',
      followRedirects: args[3] === 'followRedirects',
      simultaneous: args[4] === 'simultaneous',
      provisionalTimeoutMs: parseDuration(args[5] ?? ''),
      destinations: args.slice(7).filter((d) => d.length > 0),
      headers,
    });
    sc.proxy = op;
    sc.appId = app.id;
    this.#proxies.add(op);
    op.onDone = () => this.#proxies.delete(op);
    op.start();
  }

  /** ProxyHost: relays a response upstream through the server transaction. */
  relayUpstream(tx: ServerTransaction, res: SipResponse): void {
    const fwd = new SipResponse(res.status, res.reason);
    fwd.headers = res.headers.map((h) => ({ ...h }));
    fwd.body = res.body;
    fwd.shift('via');
    tx.respond(fwd);
  }

  /** ProxyHost: a request forwarded to a target (16.6), through a client transaction. */
  forward(req: SipRequest, target: string, l: Listener, tu: ClientTransactionUser, recordRoute: boolean, replaceUri: boolean, extra: SipRequest | undefined): Promise<ClientTransaction | undefined> {
    return this.resolve(target, l.transport.name).then(({ peer, listener }) => {
      const fwd = new SipRequest(req.method, replaceUri ? target : req.uri);
      fwd.headers = req.headers.map((h) => ({ ...h }));
      fwd.body = req.body;
      fwd.remove('route');
      const mf = Number(req.get('max-forwards') ?? '70');
      fwd.set('Max-Forwards', String(Number.isFinite(mf) ? mf - 1 : 69));
      if (recordRoute) fwd.prepend('Record-Route', this.recordRouteFor(listener));
      if (extra) {
        for (const h of extra.headers) {
          if (ENGINE_OWNED.has(h.key) || h.key === 'from' || h.key === 'to' || h.key === 'call-id' || h.key === 'cseq') continue;
          fwd.set(h.name === h.key ? displayName(h.key) : h.name, h.value);
        }
      }
      fwd.prepend('Via', this.#viaFor(listener, newBranch()));
      return this.startClient(fwd, peer, listener, tu);
    });
  }

  /** ProxyHost: CANCELs a pending INVITE branch, once it has had a provisional (9.1). */
  cancelClient(tx: ClientInviteTransaction): void {
    const t = this.#targets.get(tx);
    if (!t) return;
    const noop: ClientTransactionUser = { onResponse: () => undefined, onTimeout: () => undefined };
    this.startClient(deriveFromInvite(tx.request, 'CANCEL', tx.request.get('to') ?? ''), t.peer, t.listener, noop);
  }

  /** ProxyHost: answers the proxied request itself (483, 500, 408). */
  respondLocally(tx: ServerTransaction, status: number, reason: string): void {
    const sc = this.#server.get(tx.id);
    tx.respond(this.#makeResponse(tx.request, status, reason, sc?.toTag ?? newTag()));
  }

  replyToApp(app: AppConnection, msgId: string, rest: string): void {
    this.stats.wireOut++;
    app.reply(msgId, rest);
  }

  /** Stateless forwarding along Route (16.11), used for in-dialog requests of Record-Routed calls. */
  #forwardStatelessRequest(req: SipRequest, inb: Inbound, l: Listener): void {
    const mf = Number(req.get('max-forwards') ?? '70');
    if (mf <= 0) {
      if (req.method !== 'ACK') this.#statelessResponse(req, inb, l, 483);
      return;
    }
    const first = req.getAll('route')[0];
    const hop = first !== undefined ? uriOf(first) : req.uri;
    const topVia = req.getAll('via')[0] ?? '';
    const branch = `z9hG4bKsl${hashString(topVia + req.method)}`;
    void this.resolve(hop, parseUri(hop)?.params.get('transport') ? undefined : l.transport.name)
      .then(({ peer, listener }) => {
        if (this.#isLocalPeer(peer)) {
          if (req.method !== 'ACK') this.#statelessResponse(req, inb, l, 482, 'Loop Detected');
          return;
        }
        req.set('Max-Forwards', String(mf - 1));
        req.prepend('Via', this.#viaFor(listener, branch));
        this.sendRequest(req, peer, listener);
      })
      .catch((err: Error) => {
        if (req.method !== 'ACK') this.#statelessResponse(req, inb, l, 500, `Server Internal Error - ${err.message}`);
      });
  }

  #forwardStatelessResponse(res: SipResponse, inb: Inbound): void {
    res.shift('via');
    const next = res.getAll('via')[0];
    const via = next !== undefined ? parseVia(next) : undefined;
    if (!via) return;
    const transport = via.transport.toLowerCase() === 'tcp' ? 'tcp' : 'udp';
    const l = this.#listenerForTransport(transport) ?? this.#listenerFor(inb.source.transport, inb.localAddress, inb.localPort);
    if (!l) return;
    const rport = via.params.get('rport');
    const to: Peer = { transport, address: via.params.get('received') ?? via.host, port: rport ? Number(rport) : (via.port ?? SIP_DEFAULT_PORT) };
    const data = serialize(res);
    l.transport.send(data, to);
    this.#record('out', res, data, to, l);
  }

  // ---------------------------------------------------------------- cdr events

  /** A CDR event to the application routing it, if any; the message is serialized only then. */
  #cdr(type: 'attempt' | 'start' | 'stop', source: 'network' | 'application', extra: string | undefined, sip: Buffer | SipMessage): void {
    const route = type === 'attempt' ? 'cdr:attempt' : type === 'start' ? 'cdr:start' : 'cdr:stop';
    const app = this.#wire.pick(route);
    if (!app) return;
    this.#toApp(app, `${route}|${source}|${wireTime()}${extra !== undefined ? `|${extra}` : ''}`, Buffer.isBuffer(sip) ? sip : serialize(sip));
  }
}

/** Header sets an application's message may not override (the engine writes them). */
const RESPONSE_SKIP: ReadonlySet<string> = new Set(['from', 'to', 'call-id', 'cseq']);
const REQUEST_SKIP: ReadonlySet<string> = new Set(['from', 'to', 'call-id', 'cseq', 'max-forwards']);

const EMPTY = Buffer.alloc(0);

/** The wire-protocol route of a method: its name in lower case (common ones without allocating). */
function routeName(method: string): string {
  switch (method) {
    case 'INVITE': return 'invite';
    case 'BYE': return 'bye';
    case 'OPTIONS': return 'options';
    case 'REGISTER': return 'register';
    case 'INFO': return 'info';
    case 'MESSAGE': return 'message';
    case 'NOTIFY': return 'notify';
    case 'SUBSCRIBE': return 'subscribe';
    case 'UPDATE': return 'update';
    case 'REFER': return 'refer';
    case 'PRACK': return 'prack';
    case 'PUBLISH': return 'publish';
    default: return method.toLowerCase();
  }
}

const wireNames = new Map<string, string>();

/** `displayName` of a header key, remembered (applications send the same few headers). */
function wireName(key: string): string {
  let name = wireNames.get(key);
  if (name === undefined) {
    name = displayName(key);
    if (wireNames.size < 1024) wireNames.set(detach(key), name);
  }
  return name;
}

function hashString(s: string): string {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 16777619);
  }
  return (h >>> 0).toString(16);
}

/** drachtio's proxy timeouts: `^(\d+)(ms|s)$`; anything else means none. */
function parseDuration(s: string): number | undefined {
  const m = /^(\d+)(ms|s)$/.exec(s);
  if (!m) return undefined;
  return m[2] === 's' ? Number(m[1]) * 1000 : Number(m[1]);
}

export type { Listener };
