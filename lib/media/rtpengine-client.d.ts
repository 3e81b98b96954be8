// Types for the part of rtpengine-client 0.4 (no typings of its own) that this project uses: the
// UDP NG client. Written from its lib/Client.js and lib/BaseClient.js.

declare module 'rtpengine-client' {
  import type { EventEmitter } from 'node:events';
  import type { Socket } from 'node:dgram';

  /** Where an NG request goes. */
  export interface NgDestination {
    host: string;
    port: number;
  }

  /** A bencoded NG value as the client decodes it (byte strings become UTF-8 strings). */
  export type NgValue = string | number | NgValue[] | { [key: string]: NgValue };

  /** The parameters of an NG request ("command" is added by the client). */
  export type NgParams = Record<string, NgValue>;

  /** Any NG reply: `result` is "ok", "pong" or "error" (then `error-reason` says why). */
  export interface NgReply {
    result?: string;
    'error-reason'?: string;
    warning?: string;
    sdp?: string;
    [key: string]: NgValue | undefined;
  }

  export interface ClientOptions {
    /** Local UDP port of the control socket (0 or absent: any). */
    localPort?: number;
    /** Local address of the control socket (absent: all addresses). */
    localAddress?: string;
    /** Milliseconds before a request rejects with RtpEngineError "rtpengine timeout" (0: never). */
    timeout?: number;
    /** Reject (with the error-reason string) instead of resolving replies whose result is "error". */
    rejectOnError?: boolean;
  }

  /**
   * The UDP NG client: one socket, requests matched to replies by a random 36-character cookie.
   * Emits "listening" once bound and "error" for socket errors, undecodable replies and replies or
   * timeouts it cannot match to a request (an "error" without a listener throws).
   * On "listening" it applies UDP_RECV_BUFSIZE / UDP_SEND_BUFSIZE / UDP_BUFSIZE from process.env.
   */
  export class Client extends EventEmitter {
    constructor(options?: ClientOptions);
    /** The control socket (public in practice, not documented). */
    readonly socket: Socket;
    /** BaseClient: `<cookie> <bencoded dictionary>`, the NG datagram. */
    static encodeMessage(cookie: string, data: NgParams): Buffer;
    /** BaseClient: an NG datagram's cookie (36 characters) and dictionary; throws on anything else. */
    static decodeMessage(datagram: Buffer): { id: string; data: NgReply };
    ping(dest: NgDestination): Promise<NgReply>;
    offer(dest: NgDestination, params: NgParams): Promise<NgReply>;
    answer(dest: NgDestination, params: NgParams): Promise<NgReply>;
    delete(dest: NgDestination, params: NgParams): Promise<NgReply>;
    query(dest: NgDestination, params: NgParams): Promise<NgReply>;
    list(dest: NgDestination, params?: NgParams): Promise<NgReply>;
    statistics(dest: NgDestination): Promise<NgReply>;
    close(): void;
  }

  export class RtpEngineError extends Error {}
}
