/**
 * Transport layer types (RFC 3261 section 18). A transport moves whole SIP messages as bytes;
 * it neither parses nor validates them beyond framing (the stream framer for TCP).
 */

export type TransportName = 'udp' | 'tcp';

/** Where a message came from or goes to. */
export interface Peer {
  readonly transport: TransportName;
  readonly address: string;
  readonly port: number;
}

/** A message as the transport layer hands it up. */
export interface Inbound {
  readonly data: Buffer;
  readonly source: Peer;
  /** the local address and port it arrived on */
  readonly localAddress: string;
  readonly localPort: number;
  /** for streams: the connection it arrived on, so responses can go back on it */
  readonly connectionId?: string;
  readonly receivedAt: number;
}

export interface TransportDelegate {
  onMessage(msg: Inbound): void;
  /** a peer or datagram was refused (garbage, oversized, stalled); logged by the owner */
  onReject(peer: Peer, reason: string): void;
}

export interface Transport {
  readonly name: TransportName;
  readonly address: string;
  readonly port: number;
  listen(): Promise<void>;
  /** sends bytes; for streams, `connectionId` reuses an existing connection when still open */
  send(data: Buffer, to: Peer, connectionId?: string): void;
  close(): Promise<void>;
  readonly reliable: boolean;
}

/** A start-up error that names the setting at fault. */
export class TransportError extends Error {
  override readonly name = 'TransportError';
  constructor(readonly code: 'EADDRINUSE' | 'EADDRNOTAVAIL' | 'ELISTEN', message: string) {
    super(message);
  }
}

export function peerKey(p: Peer): string {
  return `${p.transport}:${p.address}:${p.port}`;
}

/** The start-up error for a listener that could not bind, naming the address and the setting. */
export function listenError(t: Pick<Transport, 'name' | 'address' | 'port'>, err: NodeJS.ErrnoException): TransportError {
  const inUse = err.code === 'EADDRINUSE';
  return new TransportError(
    inUse ? 'EADDRINUSE' : 'ELISTEN',
    `cannot listen for SIP on ${t.name} ${t.address}:${t.port}: ${inUse ? 'port already in use' : err.message} (--contact)`,
  );
}
