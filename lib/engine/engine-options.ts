import type { Logger } from 'pino';
import type { TimerValues } from './transaction/timers';
import type { TransportName } from './transport/transport';

/** One SIP listening address (drachtio's `--contact`), with its advertised address. */
export interface SipListen {
  readonly host: string;
  readonly port: number;
  readonly transports: readonly TransportName[];
  /** address written into Via, Contact and Record-Route instead of `host` (`--external-ip`) */
  readonly externalIp?: string;
}

export interface EngineOptions {
  readonly sip: readonly SipListen[];
  /** where applications connect (drachtio's `--address`/`--port`) and the shared secret */
  readonly wire: { readonly address: string; readonly port: number; readonly secret: string };
  readonly timers: TimerValues;
  /** largest SIP message accepted, bytes; larger requests get 513 */
  readonly maxMessageSize: number;
  readonly tcp: { readonly stallTimeoutMs: number; readonly idleTimeoutMs: number };
  /** keep a per-call capture of SIP messages for operators */
  readonly capture?: { readonly maxCalls: number; readonly maxBytesPerCall: number };
  readonly version: string;
  readonly log: Logger;
}
