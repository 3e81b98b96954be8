import * as net from 'node:net';
import * as tls from 'node:tls';
import type { StoredSipMessage } from '../call-log/call-record';

/** A call's SIP messages as the engine captured them (its /capture/<Call-ID> endpoint). */
export interface CaptureSource {
  messages(callId: string, leg: 'a' | 'b'): Promise<{ messages: StoredSipMessage[]; truncated: boolean } | undefined>;
}

interface CapturedJson {
  messages?: Array<{ t?: unknown; dir?: unknown; transport?: unknown; peer?: unknown; local?: unknown; text?: unknown }>;
  truncated?: unknown;
}

/** The largest response read (the engine bounds each call's capture far below this). */
const MAX_RESPONSE_BYTES = 32 * 1024 * 1024;

/** Times a read is sent before it fails (a second time on a new connection when the first broke). */
const MAX_ATTEMPTS = 2;

/**
 * Reads written together at most. The engine answers pipelined reads one after the other, each
 * a JSON encoding and a write, while SIP waits: eight (four calls) keep that burst to a
 * millisecond or two. More wait until those are answered.
 */
const MAX_PIPELINED = 8;

const CRLF = Buffer.from('\r\n');
const HEAD_END = Buffer.from('\r\n\r\n');

interface Read {
  readonly path: string;
  readonly resolve: (res: { status: number; body: string }) => void;
  readonly reject: (err: Error) => void;
  readonly timer: NodeJS.Timeout;
  attempts: number;
  done: boolean;
}

/** The response being received on a connection. */
interface Incoming {
  status: number;
  /** How the body ends: after `length` bytes, with the last chunk, or when the connection closes. */
  framing: 'length' | 'chunked' | 'close';
  length: number;
  close: boolean;
  chunks: Buffer[];
  size: number;
}

/** One connection to the engine and the reads written on it, answered in order. */
interface Connection {
  readonly socket: net.Socket;
  readonly inFlight: Read[];
  buffer: Buffer;
  incoming: Incoming | undefined;
  closed: boolean;
}

/** An error that says which read failed and why. */
function captureError(message: string): Error {
  return new Error(`engine capture: ${message}`);
}

/**
 * Reads the engine's per-call SIP capture over its loopback status endpoint. A real
 * drachtio-server has no such endpoint: leave ENGINE_CAPTURE_URL unset there (no ladders).
 *
 * It speaks HTTP/1.1 itself, on one kept-alive connection, and pipelines: the reads asked for in
 * one turn of the event loop (both legs of a call, the calls whose grace ended together) go out
 * in one write, up to MAX_PIPELINED, and the engine (a Node HTTP server) answers them in order. On loopback each
 * write wakes the engine, which costs far more than the few bytes of a GET: Node's own client,
 * one request per round trip, cost about three times as much CPU per read
 * (bench/call-log-writer.ts). A read is sent again, once, on a new connection when the one it
 * was written on breaks (the engine closed an idle connection as the read went out); a read not
 * answered within `timeoutMs` fails, and its connection is dropped (later answers on it would be
 * out of step).
 */
export class EngineCapture implements CaptureSource {
  readonly #url: URL;
  readonly #basePath: string;
  /** Reads not yet written. */
  #queue: Read[] = [];
  #sendScheduled = false;
  #connection: Connection | undefined;

  constructor(
    readonly baseUrl: string,
    readonly timeoutMs = 2000,
  ) {
    let url: URL;
    try {
      url = new URL(baseUrl);
    } catch {
      throw new Error(`engine capture URL ${JSON.stringify(baseUrl)} is not a URL: expected http://host:port`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`engine capture URL ${baseUrl}: expected http:// or https://`);
    this.#url = url;
    this.#basePath = url.pathname.replace(/\/+$/, '');
  }

  async messages(callId: string, leg: 'a' | 'b'): Promise<{ messages: StoredSipMessage[]; truncated: boolean } | undefined> {
    const res = await this.#get(`${this.#basePath}/capture/${encodeURIComponent(callId)}`);
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw captureError(`the engine answered ${res.status} for Call-ID ${callId}`);
    let body: CapturedJson;
    try {
      body = JSON.parse(res.body) as CapturedJson;
    } catch {
      throw captureError(`the engine answered something other than JSON for Call-ID ${callId}`);
    }
    const messages: StoredSipMessage[] = [];
    for (const m of Array.isArray(body?.messages) ? body.messages : []) {
      if (typeof m?.t !== 'number' || typeof m.text !== 'string') continue;
      messages.push({
        leg,
        at: new Date(m.t),
        dir: m.dir === 'out' ? 'out' : 'in',
        transport: String(m.transport ?? ''),
        peer: String(m.peer ?? ''),
        local: String(m.local ?? ''),
        text: m.text,
      });
    }
    return { messages, truncated: body?.truncated === true };
  }

  /** Closes the connection; reads not answered yet fail. */
  close(): void {
    const reads = [...this.#queue, ...(this.#connection?.inFlight ?? [])];
    this.#queue = [];
    if (this.#connection) this.#drop(this.#connection);
    for (const read of reads) this.#fail(read, captureError('closed'));
  }

  #get(path: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const read: Read = {
        path,
        resolve,
        reject,
        attempts: 0,
        done: false,
        timer: setTimeout(() => this.#timedOut(read), this.timeoutMs),
      };
      this.#enqueue(read);
    });
  }

  #enqueue(read: Read): void {
    this.#queue.push(read);
    if (this.#sendScheduled) return;
    this.#sendScheduled = true;
    setImmediate(() => {
      this.#sendScheduled = false;
      this.#send();
    });
  }

  /** Writes the queued reads in one go, up to MAX_PIPELINED; none while earlier ones wait for their answers. */
  #send(): void {
    const live = this.#connection && !this.#connection.closed ? this.#connection : undefined;
    if (live && live.inFlight.length > 0) return;
    this.#queue = this.#queue.filter((r) => !r.done);
    if (this.#queue.length === 0) return;
    const reads = this.#queue.splice(0, MAX_PIPELINED);
    const connection = live ?? this.#connect();
    let text = '';
    for (const read of reads) {
      read.attempts += 1;
      connection.inFlight.push(read);
      text += `GET ${read.path} HTTP/1.1\r\nHost: ${this.#url.host}\r\nAccept: application/json\r\n\r\n`;
    }
    connection.socket.write(text, 'latin1');
  }

  #connect(): Connection {
    const port = Number(this.#url.port) || (this.#url.protocol === 'https:' ? 443 : 80);
    const host = this.#url.hostname.replace(/^\[(.*)\]$/, '$1');
    const socket = this.#url.protocol === 'https:' ? tls.connect({ host, port, servername: net.isIP(host) ? undefined : host }) : net.connect({ host, port });
    socket.setNoDelay(true);
    const connection: Connection = { socket, inFlight: [], buffer: Buffer.alloc(0), incoming: undefined, closed: false };
    this.#connection = connection;
    socket.on('data', (data: Buffer) => this.#receive(connection, data));
    socket.on('end', () => {
      // A body that runs to the end of the connection is complete now.
      if (connection.incoming?.framing === 'close') this.#complete(connection);
      this.#broken(connection, captureError('the engine closed the connection'));
    });
    socket.on('error', (err: Error) => this.#broken(connection, captureError(err.message)));
    socket.on('close', () => this.#broken(connection, captureError('the connection closed')));
    return connection;
  }

  #receive(connection: Connection, data: Buffer): void {
    if (connection.closed) return;
    connection.buffer = connection.buffer.length === 0 ? data : Buffer.concat([connection.buffer, data]);
    try {
      while (!connection.closed && this.#parse(connection)) {
        // one response complete; look for the next
      }
    } catch (err) {
      this.#broken(connection, err as Error, false);
    }
  }

  /** Consumes what it can of the buffer; true when a response completed and more may follow. */
  #parse(connection: Connection): boolean {
    if (connection.incoming === undefined) {
      const end = connection.buffer.indexOf(HEAD_END);
      if (end < 0) {
        if (connection.buffer.length > 64 * 1024) throw captureError('the engine sent a response head over 64 KiB');
        return false;
      }
      connection.incoming = parseHead(connection.buffer.toString('latin1', 0, end));
      connection.buffer = connection.buffer.subarray(end + HEAD_END.length);
    }
    const incoming = connection.incoming;
    switch (incoming.framing) {
      case 'length': {
        if (connection.buffer.length < incoming.length) return false;
        incoming.chunks.push(connection.buffer.subarray(0, incoming.length));
        incoming.size += incoming.length;
        connection.buffer = connection.buffer.subarray(incoming.length);
        this.#complete(connection);
        return true;
      }
      case 'chunked': {
        for (;;) {
          const lineEnd = connection.buffer.indexOf(CRLF);
          if (lineEnd < 0) return false;
          const size = parseInt(connection.buffer.toString('latin1', 0, lineEnd), 16);
          if (!Number.isInteger(size) || size < 0) throw captureError('the engine sent a malformed chunk');
          if (size === 0) {
            // The last chunk, then trailers (none expected) up to an empty line.
            const trailerEnd = connection.buffer.indexOf(CRLF, lineEnd + 2);
            if (trailerEnd < 0) return false;
            if (trailerEnd !== lineEnd + 2) {
              const end = connection.buffer.indexOf(HEAD_END, lineEnd);
              if (end < 0) return false;
              connection.buffer = connection.buffer.subarray(end + HEAD_END.length);
            } else {
              connection.buffer = connection.buffer.subarray(trailerEnd + 2);
            }
            this.#complete(connection);
            return true;
          }
          if (connection.buffer.length < lineEnd + 2 + size + 2) return false;
          incoming.size += size;
          if (incoming.size > MAX_RESPONSE_BYTES) throw captureError(`the engine answered more than ${MAX_RESPONSE_BYTES} bytes`);
          incoming.chunks.push(connection.buffer.subarray(lineEnd + 2, lineEnd + 2 + size));
          connection.buffer = connection.buffer.subarray(lineEnd + 2 + size + 2);
        }
      }
      case 'close': {
        incoming.size += connection.buffer.length;
        if (incoming.size > MAX_RESPONSE_BYTES) throw captureError(`the engine answered more than ${MAX_RESPONSE_BYTES} bytes`);
        incoming.chunks.push(connection.buffer);
        connection.buffer = Buffer.alloc(0);
        return false;
      }
      default:
        throw new Error(`unknown framing ${String(incoming.framing satisfies never)}`);
    }
  }

  /** The response in `connection.incoming` is whole: it answers the oldest read in flight. */
  #complete(connection: Connection): void {
    const incoming = connection.incoming;
    if (incoming === undefined) return;
    connection.incoming = undefined;
    const read = connection.inFlight.shift();
    if (read && !read.done) {
      read.done = true;
      clearTimeout(read.timer);
      read.resolve({ status: incoming.status, body: Buffer.concat(incoming.chunks, incoming.size).toString('utf8') });
    }
    if (incoming.close || incoming.framing === 'close') this.#broken(connection, captureError('the engine closed the connection'));
    else if (connection.inFlight.length === 0 && this.#queue.length > 0) this.#send();
  }

  /**
   * The connection can carry no more: reads written on it and not answered are sent again on a
   * new one, or fail when they have had their attempts (or when `retry` is false).
   */
  #broken(connection: Connection, err: Error, retry = true): void {
    if (connection.closed) return;
    this.#drop(connection);
    for (const read of connection.inFlight.splice(0)) {
      if (read.done) continue;
      if (retry && read.attempts < MAX_ATTEMPTS) this.#enqueue(read);
      else this.#fail(read, err);
    }
  }

  #drop(connection: Connection): void {
    connection.closed = true;
    connection.socket.destroy();
    if (this.#connection === connection) this.#connection = undefined;
  }

  #timedOut(read: Read): void {
    if (read.done) return;
    this.#fail(read, captureError(`the engine did not answer within ${this.timeoutMs} ms`));
    // Answers on its connection come in order: one that never comes stalls the rest.
    const connection = this.#connection;
    if (connection?.inFlight.includes(read)) this.#broken(connection, captureError('a read timed out'));
  }

  #fail(read: Read, err: Error): void {
    if (read.done) return;
    read.done = true;
    clearTimeout(read.timer);
    read.reject(err);
  }
}

/** The status and framing of a response head (status line and header lines, without the blank line). */
function parseHead(head: string): Incoming {
  const lines = head.split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
  if (!status) throw captureError(`the engine sent something other than an HTTP/1.1 response: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`);
  const incoming: Incoming = { status: Number(status[1]), framing: 'close', length: 0, close: /^HTTP\/1\.0/.test(lines[0] ?? ''), chunks: [], size: 0 };
  // No body, whatever the headers say (RFC 9112 section 6.3).
  if (incoming.status === 204 || incoming.status === 304) {
    incoming.framing = 'length';
    return incoming;
  }
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim().toLowerCase();
    if (name === 'content-length' && incoming.framing !== 'chunked') {
      const length = Number(value);
      if (!Number.isSafeInteger(length) || length < 0) throw captureError(`the engine sent a bad Content-Length ${JSON.stringify(value)}`);
      if (length > MAX_RESPONSE_BYTES) throw captureError(`the engine answered more than ${MAX_RESPONSE_BYTES} bytes`);
      incoming.framing = 'length';
      incoming.length = length;
    } else if (name === 'transfer-encoding' && value.split(',').pop()?.trim() === 'chunked') {
      incoming.framing = 'chunked';
    } else if (name === 'connection') {
      if (value.split(',').some((v) => v.trim() === 'close')) incoming.close = true;
      else if (value.split(',').some((v) => v.trim() === 'keep-alive')) incoming.close = false;
    }
  }
  return incoming;
}

/** Both legs' messages (every B leg, after transfers) merged in time order. */
export async function callMessages(
  source: CaptureSource,
  aCallId: string,
  bCallIds: readonly string[],
): Promise<{ messages: StoredSipMessage[]; truncated: boolean }> {
  const parts = await Promise.all([source.messages(aCallId, 'a'), ...bCallIds.map((id) => source.messages(id, 'b'))]);
  const messages: StoredSipMessage[] = [];
  let truncated = false;
  for (const p of parts) {
    if (!p) continue;
    messages.push(...p.messages);
    truncated ||= p.truncated;
  }
  // Stable: messages with the same millisecond keep their capture order within a leg.
  messages.sort((x, y) => x.at.getTime() - y.at.getTime());
  return { messages, truncated };
}
