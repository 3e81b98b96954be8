import * as net from 'node:net';
import { timingSafeEqual } from 'node:crypto';
import { newMsgId } from '../ids';
import type { Logger } from 'pino';
import { WireFramer } from './wire-framer';

/** One connected drachtio application. */
export class AppConnection {
  authenticated = false;
  tags: string[] = [];
  readonly routes = new Set<string>();
  readonly remote: string;
  /** frames written in this event-loop turn, not yet on the socket: text and SIP bytes */
  #out: Array<string | Buffer> = [];
  #outBytes = 0;
  #flushScheduled = false;

  constructor(
    readonly id: string,
    readonly socket: net.Socket,
  ) {
    this.remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
  }

  /**
   * Sends one framed payload: `head` (text) followed by `sip` (a SIP message's bytes, sent as
   * they are). Frames written in the same event-loop turn go out in one write, after the I/O
   * callbacks of the turn: on loopback each write is a syscall that also pays for the delivery.
   */
  sendFrame(head: string, sip?: Buffer): void {
    if (this.socket.destroyed) return;
    const headBytes = Buffer.byteLength(head, 'utf8');
    const prefix = `${headBytes + (sip?.length ?? 0)}#`;
    this.#out.push(prefix + head);
    this.#outBytes += prefix.length + headBytes;
    if (sip !== undefined && sip.length > 0) {
      this.#out.push(sip);
      this.#outBytes += sip.length;
    }
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.#flush());
    }
  }

  /** Sends one framed text payload. */
  send(payload: string): void {
    this.sendFrame(payload);
  }

  /** `<uuid>|response|<msgId>|<rest>`, then `sip` when the answer carries a SIP message. */
  reply(msgId: string, rest: string, sip?: Buffer): void {
    this.sendFrame(`${newMsgId()}|response|${msgId}|${rest}`, sip);
  }

  #flush(): void {
    this.#flushScheduled = false;
    const out = this.#out;
    const total = this.#outBytes;
    this.#out = [];
    this.#outBytes = 0;
    if (out.length === 0 || this.socket.destroyed) return;
    // one contiguous buffer, one write: the stream then makes a single syscall for the turn
    const buf = Buffer.allocUnsafe(total);
    let at = 0;
    for (const part of out) {
      if (typeof part === 'string') at += buf.write(part, at, 'utf8');
      else at += part.copy(buf, at);
    }
    this.socket.write(at === total ? buf : buf.subarray(0, at));
  }
}

export interface WireDelegate {
  /** `sip|<txnId>|<dialogId>[|<routeUrl>]` followed by CRLF and a SIP message */
  onSip(app: AppConnection, msgId: string, args: string[], sip: string): void;
  /** `proxy|...` followed by CRLF and the request line and headers */
  onProxy(app: AppConnection, msgId: string, args: string[], sip: string): void;
  onAppGone(app: AppConnection): void;
  onAppReady(app: AppConnection): void;
}

export interface WireOptions {
  address: string;
  port: number;
  secret: string;
  /** hostports reported at authentication: `udp/1.2.3.4:5060,tcp/...` */
  hostports: string;
  localHostports: string;
  version: string;
}

const MAX_WIRE_MESSAGE = 1024 * 1024;

/**
 * The drachtio wire protocol server: authenticates applications with the shared secret, keeps
 * their routes (per SIP method and for cdr events) and picks one round-robin per request.
 */
export class WireServer {
  readonly #server: net.Server;
  readonly #apps = new Map<string, AppConnection>();
  /** method (lower case) or cdr event -> connections, in registration order */
  readonly #routes = new Map<string, AppConnection[]>();
  readonly #cursor = new Map<string, number>();
  #nextId = 1;

  constructor(
    readonly opts: WireOptions,
    readonly delegate: WireDelegate,
    readonly log: Logger,
  ) {
    this.#server = net.createServer((s) => this.#accept(s));
  }

  get connected(): number {
    let n = 0;
    for (const a of this.#apps.values()) if (a.authenticated) n++;
    return n;
  }

  get(id: string): AppConnection | undefined {
    return this.#apps.get(id);
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        const why = err.code === 'EADDRINUSE' ? 'port already in use' : err.message;
        reject(new Error(`cannot listen for applications on ${this.opts.address}:${this.opts.port}: ${why} (--address/--port)`));
      };
      this.#server.once('error', onError);
      this.#server.listen(this.opts.port, this.opts.address, () => {
        this.#server.off('error', onError);
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    for (const a of this.#apps.values()) a.socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** Picks the next application routing this method or event, round-robin. */
  pick(route: string): AppConnection | undefined {
    const list = this.#routes.get(route);
    if (!list || list.length === 0) return undefined;
    const i = (this.#cursor.get(route) ?? 0) % list.length;
    this.#cursor.set(route, i + 1);
    return list[i];
  }

  hasRoute(route: string): boolean {
    return (this.#routes.get(route)?.length ?? 0) > 0;
  }

  #accept(socket: net.Socket): void {
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 45000);
    const app = new AppConnection(`app-${this.#nextId++}`, socket);
    this.#apps.set(app.id, app);
    this.log.info({ app: app.id, remote: app.remote }, 'application connected');
    const framer = new WireFramer(
      MAX_WIRE_MESSAGE,
      (payload) => this.#onPayload(app, payload),
      (reason) => {
        this.log.warn({ app: app.id, remote: app.remote, reason }, 'garbage on wire connection; disconnecting');
        socket.destroy();
      },
    );
    socket.on('data', (chunk: Buffer) => framer.push(chunk));
    socket.on('error', (err) => this.log.debug({ app: app.id, err: err.message }, 'wire socket error'));
    socket.on('close', () => {
      this.#apps.delete(app.id);
      for (const r of app.routes) this.#unroute(app, r);
      this.log.info({ app: app.id, remote: app.remote }, 'application disconnected');
      if (app.authenticated) this.delegate.onAppGone(app);
    });
  }

  #onPayload(app: AppConnection, payload: string): void {
    const crlf = payload.indexOf('\r\n');
    const leader = crlf < 0 ? payload : payload.slice(0, crlf);
    const body = crlf < 0 ? '' : payload.slice(crlf + 2);
    const tokens = leader.split('|');
    const msgId = tokens[0] ?? '';
    const command = tokens[1];
    if (tokens.length < 2 || msgId === '' || command === undefined) {
      this.log.warn({ app: app.id, leader: leader.slice(0, 80) }, 'invalid wire message; disconnecting');
      app.reply(msgId, 'NO|Invalid message format');
      app.socket.end();
      return;
    }
    if (command === 'authenticate') return this.#authenticate(app, msgId, tokens);
    if (!app.authenticated) {
      this.log.warn({ app: app.id, command }, 'command before authentication; disconnecting');
      app.reply(msgId, 'NO|not authenticated');
      app.socket.end();
      return;
    }
    const args = tokens.slice(2);
    switch (command) {
      case 'route': {
        const verb = (args[0] ?? '').toLowerCase();
        if (verb !== '' && !app.routes.has(verb)) {
          app.routes.add(verb);
          const list = this.#routes.get(verb) ?? [];
          list.push(app);
          this.#routes.set(verb, list);
        }
        app.reply(msgId, 'OK');
        return;
      }
      case 'remove_route': {
        const verb = (args[0] ?? '').toLowerCase();
        app.routes.delete(verb);
        this.#unroute(app, verb);
        app.reply(msgId, 'OK');
        return;
      }
      case 'ping':
        app.reply(msgId, 'OK|pong');
        return;
      case 'sip':
        this.delegate.onSip(app, msgId, args, body);
        return;
      case 'proxy':
        this.delegate.onProxy(app, msgId, args, body);
        return;
      default:
        this.log.warn({ app: app.id, command }, 'unknown wire command; disconnecting');
        app.reply(msgId, 'NO|Unknown message type');
        app.socket.end();
    }
  }

  #authenticate(app: AppConnection, msgId: string, tokens: string[]): void {
    const given = Buffer.from(tokens[2] ?? '', 'utf8');
    const want = Buffer.from(this.opts.secret, 'utf8');
    const ok = given.length === want.length && timingSafeEqual(given, want);
    if (!ok) {
      // the secret itself is never logged
      this.log.warn({ app: app.id, remote: app.remote }, 'application gave an incorrect secret; disconnecting');
      app.reply(msgId, 'NO|incorrect secret');
      app.socket.end();
      return;
    }
    app.authenticated = true;
    app.tags = (tokens[3] ?? '').split(',').filter((t) => t.length > 0);
    app.reply(msgId, `OK|${this.opts.hostports}|${this.opts.version}|${this.opts.localHostports}`);
    this.log.info({ app: app.id, tags: app.tags }, 'application authenticated');
    this.delegate.onAppReady(app);
  }

  #unroute(app: AppConnection, verb: string): void {
    const list = this.#routes.get(verb);
    if (!list) return;
    const left = list.filter((a) => a !== app);
    if (left.length === 0) this.#routes.delete(verb);
    else this.#routes.set(verb, left);
  }
}
