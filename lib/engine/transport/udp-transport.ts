import * as dgram from 'node:dgram';
import { lookup as dnsLookup, type LookupOneOptions } from 'node:dns';
import { isIP, isIPv6 } from 'node:net';
import { type Peer, type Transport, type TransportDelegate, listenError } from './transport';

/** SIP over UDP (RFC 3261 section 18): one datagram is one message. */
export class UdpTransport implements Transport {
  readonly name = 'udp' as const;
  readonly reliable = false;
  readonly #socket: dgram.Socket;
  #closed = false;

  constructor(
    readonly address: string,
    readonly port: number,
    readonly delegate: TransportDelegate,
    readonly maxSize: number,
  ) {
    this.#socket = dgram.createSocket({ type: isIPv6(address) ? 'udp6' : 'udp4', reuseAddr: false, lookup: addressLookup });
    this.#socket.on('message', (data, rinfo) => {
      const source: Peer = { transport: 'udp', address: rinfo.address, port: rinfo.port };
      // an oversized datagram still goes up: the parser answers it 513 (RFC 3261 section 18.1.1)
      this.delegate.onMessage({
        data,
        source,
        localAddress: this.address,
        localPort: this.port,
        receivedAt: Date.now(),
      });
    });
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => reject(listenError(this, err));
      this.#socket.once('error', onError);
      this.#socket.bind(this.port, this.address, () => {
        this.#socket.off('error', onError);
        this.#socket.on('error', () => undefined);
        try {
          this.#socket.setRecvBufferSize(4 * 1024 * 1024);
          this.#socket.setSendBufferSize(4 * 1024 * 1024);
        } catch {
          // the kernel caps buffer sizes; the defaults still work
        }
        resolve();
      });
    });
  }

  send(data: Buffer, to: Peer): void {
    if (this.#closed) return;
    this.#socket.send(data, to.port, to.address);
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    return new Promise((resolve) => this.#socket.close(() => resolve()));
  }
}

/**
 * The socket's name lookup: the engine sends to addresses (resolved beforehand), which the
 * default lookup hands back on the next tick; this hands them back at once, so a datagram
 * leaves within the call to send(). Names still go through DNS.
 */
function addressLookup(host: string, options: LookupOneOptions, callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void): void {
  const family = isIP(host);
  if (family !== 0) callback(null, host, family);
  else dnsLookup(host, options, callback);
}
