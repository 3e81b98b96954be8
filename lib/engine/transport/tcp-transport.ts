import * as net from 'node:net';
import { StreamFramer } from '../message/stream-framer';
import { type Peer, type Transport, type TransportDelegate, listenError, peerKey } from './transport';

export interface TcpOptions {
  maxSize: number;
  /** a connection that holds a partial message this long is cut off (a stalled peer) */
  stallTimeoutMs: number;
  /** a connection with no traffic this long is closed */
  idleTimeoutMs: number;
}

interface Connection {
  readonly id: string;
  readonly socket: net.Socket;
  readonly peer: Peer;
  readonly framer: StreamFramer;
  stallTimer: NodeJS.Timeout | undefined;
  /** writes queued while an outbound connection is still being set up */
  pending: Buffer[] | undefined;
}

/**
 * SIP over TCP (RFC 3261 section 18.3): messages framed by Content-Length. Connections are
 * reused in both directions, keyed by the peer's address and port; a peer that sends garbage
 * or stalls in the middle of a message is disconnected without touching other connections.
 */
export class TcpTransport implements Transport {
  readonly name = 'tcp' as const;
  readonly reliable = true;
  readonly #server: net.Server;
  readonly #byId = new Map<string, Connection>();
  readonly #byPeer = new Map<string, Connection>();
  #nextId = 1;
  #closed = false;

  constructor(
    readonly address: string,
    readonly port: number,
    readonly delegate: TransportDelegate,
    readonly opts: TcpOptions,
  ) {
    this.#server = net.createServer((socket) => this.#adopt(socket));
  }

  get connections(): number {
    return this.#byId.size;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => reject(listenError(this, err));
      this.#server.once('error', onError);
      this.#server.listen({ port: this.port, host: this.address, backlog: 1024 }, () => {
        this.#server.off('error', onError);
        resolve();
      });
    });
  }

  send(data: Buffer, to: Peer, connectionId?: string): void {
    if (this.#closed) return;
    let conn = connectionId !== undefined ? this.#byId.get(connectionId) : undefined;
    conn ??= this.#byPeer.get(peerKey(to));
    conn ??= this.#connect(to);
    if (conn.pending) conn.pending.push(data);
    else conn.socket.write(data);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const c of this.#byId.values()) c.socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #connect(to: Peer): Connection {
    const socket = net.connect({ host: to.address, port: to.port, localAddress: this.address });
    const conn = this.#register(socket, to);
    conn.pending = [];
    socket.once('connect', () => {
      const queued = conn.pending ?? [];
      conn.pending = undefined;
      for (const b of queued) socket.write(b);
    });
    return conn;
  }

  #adopt(socket: net.Socket): void {
    if (socket.remoteAddress === undefined || socket.remotePort === undefined) {
      socket.destroy();
      return;
    }
    const address = socket.remoteAddress.startsWith('::ffff:') ? socket.remoteAddress.slice(7) : socket.remoteAddress;
    this.#register(socket, { transport: 'tcp', address, port: socket.remotePort });
  }

  #register(socket: net.Socket, peer: Peer): Connection {
    const id = `tcp-${this.#nextId++}`;
    socket.setNoDelay(true);
    const conn: Connection = {
      id,
      socket,
      peer,
      stallTimer: undefined,
      pending: undefined,
      framer: new StreamFramer({
        maxSize: this.opts.maxSize,
        onMessage: (data) => {
          this.delegate.onMessage({
            data,
            source: peer,
            localAddress: this.address,
            localPort: this.port,
            connectionId: id,
            receivedAt: Date.now(),
          });
        },
        onError: (reason) => {
          this.delegate.onReject(peer, `tcp stream error: ${reason}; connection closed`);
          socket.destroy();
        },
        onKeepAlive: () => {
          // RFC 5626 section 3.5.1: answer a CRLFCRLF ping with a single CRLF pong
          socket.write('\r\n');
        },
      }),
    };
    this.#byId.set(id, conn);
    this.#byPeer.set(peerKey(peer), conn);
    socket.setTimeout(this.opts.idleTimeoutMs, () => socket.destroy());
    socket.on('data', (chunk: Buffer) => {
      conn.framer.push(chunk);
      this.#watchStall(conn);
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => {
      if (conn.stallTimer) clearTimeout(conn.stallTimer);
      this.#byId.delete(id);
      if (this.#byPeer.get(peerKey(peer)) === conn) this.#byPeer.delete(peerKey(peer));
    });
    return conn;
  }

  /** A partial message must complete within the stall timeout, or the peer is cut off. */
  #watchStall(conn: Connection): void {
    if (conn.framer.buffered === 0) {
      if (conn.stallTimer) clearTimeout(conn.stallTimer);
      conn.stallTimer = undefined;
      return;
    }
    if (conn.stallTimer) return;
    conn.stallTimer = setTimeout(() => {
      this.delegate.onReject(conn.peer, `tcp peer stalled with ${conn.framer.buffered} bytes of a partial message; connection closed`);
      conn.socket.destroy();
    }, this.opts.stallTimeoutMs);
  }
}
