import * as net from 'node:net';
import * as tls from 'node:tls';
import type { StoredSipMessage } from '../call-log/call-record';

/** A call's SIP messages as the engine captured them (its /captures endpoint). */
export interface CaptureSource {
  messages(callId: string, leg: 'a' | 'b'): Promise<{ messages: StoredSipMessage[]; truncated: boolean } | undefined>;
}

/** The largest response read (the engine bounds each call's capture far below this). */
const MAX_RESPONSE_BYTES = 64 * 1024 * 1024;

/** Times a read is sent before it fails (a second time on a new connection when the first broke). */
const MAX_ATTEMPTS = 2;

/** Call-IDs named in one request at most (the engine takes up to 500), and the length of its path. */
const MAX_IDS_PER_REQUEST = 400;
const MAX_PATH_BYTES = 12 * 1024;

const CRLF = Buffer.from('\r\n');
const HEAD_END = Buffer.from('\r\n\r\n');
const NEWLINE = 0x0a;

type Captured = { messages: StoredSipMessage[]; truncated: boolean } | undefined;

interface Read {
  readonly callId: string;
  readonly leg: 'a' | 'b';
  readonly resolve: (captured: Captured) => void;
  readonly reject: (err: Error) => void;
  readonly timer: NodeJS.Timeout;
  attempts: number;
  done: boolean;
}

/** One request: the reads it names, by Call-ID, until their line comes back. */
interface Batch {
  readonly reads: Map<string, Read[]>;
}

/** The response being received on a connection. */
interface Incoming {
  status: number;
  /** How the body ends: after `length` bytes, with the last chunk, or when the connection closes. */
  framing: 'length' | 'chunked' | 'close';
  /** body bytes still to come ('length') */
  length: number;
  close: boolean;
  /** body bytes so far that do not yet end in a newline (a 200's lines), or the whole body (others) */
  partial: Buffer;
  size: number;
}

/** One connection to the engine and the request in flight on it. */
interface Connection {
  readonly socket: net.Socket;
  batch: Batch | undefined;
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
 * Reads are batched: every read asked for while no request is in flight (both legs of a call,
 * all the calls whose grace ended in the same window) goes in one `GET /captures?id=...`
 * on one kept-alive HTTP/1.1 connection, and the engine answers with one JSON line per call,
 * which is handed over as it arrives. At most one request is in flight; reads asked for
 * meanwhile go in the next one, so under load the batches grow instead of the queue. On
 * loopback every request wakes both processes, which costs far more CPU than its bytes: one
 * request per leg was the call log's largest cost in the engine, and at ~400 calls/s it could
 * not keep up.
 *
 * With `take` (the call log's reads, once a call is over) the engine forgets a capture once it
 * has sent it: the call log keeps it from then on. The operator API's reads of live calls leave
 * it where it is. A read is sent again, once, on a new connection when the one it was written on breaks; a
 * read not answered within `timeoutMs` fails, and the connection it is in flight on is dropped.
 */
export class EngineCapture implements CaptureSource {
  readonly #url: URL;
  readonly #basePath: string;
  readonly #timeoutMs: number;
  readonly #take: boolean;
  /** Reads not yet sent. */
  #queue: Read[] = [];
  #sendScheduled = false;
  #connection: Connection | undefined;

  constructor(
    readonly baseUrl: string,
    readonly options: {
      /** Fail a read not answered within this long (default 2,000 ms). */
      readonly timeoutMs?: number;
      /** Have the engine forget each capture it sends (the call log's reads, once a call is over); default false. */
      readonly take?: boolean;
    } = {},
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
    this.#timeoutMs = options.timeoutMs ?? 2000;
    this.#take = options.take ?? false;
  }

  messages(callId: string, leg: 'a' | 'b'): Promise<Captured> {
    return new Promise((resolve, reject) => {
      const read: Read = {
        callId,
        leg,
        resolve,
        reject,
        attempts: 0,
        done: false,
        // The check waits one more turn of the event loop: after a stall longer than the timeout,
        // an answer already in the socket is read (I/O runs before setImmediate) before the read fails.
        timer: setTimeout(() => setImmediate(() => this.#timedOut(read)), this.#timeoutMs),
      };
      this.#enqueue(read);
    });
  }

  /** Closes the connection; reads not answered yet fail. */
  close(): void {
    const reads = [...this.#queue];
    for (const list of this.#connection?.batch?.reads.values() ?? []) reads.push(...list);
    this.#queue = [];
    if (this.#connection) this.#drop(this.#connection);
    for (const read of reads) this.#fail(read, captureError('closed'));
  }

  #enqueue(read: Read): void {
    this.#queue.push(read);
    this.#scheduleSend();
  }

  #scheduleSend(): void {
    if (this.#sendScheduled) return;
    this.#sendScheduled = true;
    // the reads asked for in this turn of the event loop go out together
    setImmediate(() => {
      this.#sendScheduled = false;
      this.#send();
    });
  }

  /** Sends the queued reads in one request, unless one is in flight already. */
  #send(): void {
    const live = this.#connection && !this.#connection.closed ? this.#connection : undefined;
    if (live?.batch) return;
    const batch: Batch = { reads: new Map() };
    let path = `${this.#basePath}/captures?take=${this.#take ? 1 : 0}`;
    let i = 0;
    for (; i < this.#queue.length; i++) {
      const read = this.#queue[i]!;
      if (read.done) continue;
      const list = batch.reads.get(read.callId);
      if (list) {
        list.push(read);
        continue;
      }
      const param = `&id=${encodeURIComponent(read.callId)}`;
      if (batch.reads.size > 0 && (batch.reads.size >= MAX_IDS_PER_REQUEST || path.length + param.length > MAX_PATH_BYTES)) break;
      path += param;
      batch.reads.set(read.callId, [read]);
    }
    this.#queue = this.#queue.slice(i);
    if (batch.reads.size === 0) return;
    for (const list of batch.reads.values()) for (const read of list) read.attempts += 1;
    const connection = live ?? this.#connect();
    connection.batch = batch;
    connection.socket.write(`GET ${path} HTTP/1.1\r\nHost: ${this.#url.host}\r\nAccept: application/x-ndjson\r\n\r\n`, 'latin1');
  }

  #connect(): Connection {
    const port = Number(this.#url.port) || (this.#url.protocol === 'https:' ? 443 : 80);
    const host = this.#url.hostname.replace(/^\[(.*)\]$/, '$1');
    const socket = this.#url.protocol === 'https:' ? tls.connect({ host, port, servername: net.isIP(host) ? undefined : host }) : net.connect({ host, port });
    socket.setNoDelay(true);
    const connection: Connection = { socket, batch: undefined, buffer: Buffer.alloc(0), incoming: undefined, closed: false };
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
        // the response is complete; a next one would be out of step (none was asked for)
      }
    } catch (err) {
      this.#broken(connection, err as Error, false);
    }
  }

  /** Consumes what it can of the buffer; true when a response completed. */
  #parse(connection: Connection): boolean {
    if (connection.incoming === undefined) {
      if (connection.buffer.length === 0) return false;
      const end = connection.buffer.indexOf(HEAD_END);
      if (end < 0) {
        if (connection.buffer.length > 64 * 1024) throw captureError('the engine sent a response head over 64 KiB');
        return false;
      }
      if (!connection.batch) throw captureError('the engine sent a response nobody asked for');
      connection.incoming = parseHead(connection.buffer.toString('latin1', 0, end));
      connection.buffer = connection.buffer.subarray(end + HEAD_END.length);
    }
    const incoming = connection.incoming;
    switch (incoming.framing) {
      case 'length': {
        const n = Math.min(incoming.length, connection.buffer.length);
        this.#body(connection, connection.buffer.subarray(0, n));
        connection.buffer = connection.buffer.subarray(n);
        incoming.length -= n;
        if (incoming.length > 0) return false;
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
          this.#body(connection, connection.buffer.subarray(lineEnd + 2, lineEnd + 2 + size));
          connection.buffer = connection.buffer.subarray(lineEnd + 2 + size + 2);
        }
      }
      case 'close': {
        this.#body(connection, connection.buffer);
        connection.buffer = Buffer.alloc(0);
        return false;
      }
      default:
        throw new Error(`unknown framing ${String(incoming.framing satisfies never)}`);
    }
  }

  /** Body bytes: each whole line of a 200 answers its call's reads at once. */
  #body(connection: Connection, bytes: Buffer): void {
    const incoming = connection.incoming!;
    incoming.size += bytes.length;
    if (incoming.size > MAX_RESPONSE_BYTES) throw captureError(`the engine answered more than ${MAX_RESPONSE_BYTES} bytes`);
    incoming.partial = incoming.partial.length === 0 ? bytes : Buffer.concat([incoming.partial, bytes]);
    if (incoming.status !== 200) return;
    let start = 0;
    for (let eol = incoming.partial.indexOf(NEWLINE); eol >= 0; eol = incoming.partial.indexOf(NEWLINE, start)) {
      this.#line(connection.batch!, incoming.partial.toString('utf8', start, eol));
      start = eol + 1;
    }
    incoming.partial = incoming.partial.subarray(start);
  }

  /** One call's line: `{"callId", "messages", "truncated"}` or `{"callId", "missing": true}`. */
  #line(batch: Batch, line: string): void {
    if (line.trim() === '') return;
    let body: CapturedLine;
    try {
      body = JSON.parse(line) as CapturedLine;
    } catch {
      throw captureError('the engine answered a line that is not JSON');
    }
    const callId = typeof body?.callId === 'string' ? body.callId : undefined;
    const reads = callId === undefined ? undefined : batch.reads.get(callId);
    if (!reads) throw captureError(`the engine answered for a Call-ID not asked for: ${JSON.stringify(callId)}`);
    batch.reads.delete(callId!);
    for (const read of reads) {
      if (read.done) continue;
      read.done = true;
      clearTimeout(read.timer);
      read.resolve(body.missing === true ? undefined : toStored(body, read.leg));
    }
  }

  /** The response in `connection.incoming` is whole: the reads it did not answer fail. */
  #complete(connection: Connection): void {
    const incoming = connection.incoming;
    const batch = connection.batch;
    if (incoming === undefined || batch === undefined) return;
    connection.incoming = undefined;
    connection.batch = undefined;
    let err: Error;
    if (incoming.status === 200) {
      if (incoming.partial.length > 0) this.#line(batch, incoming.partial.toString('utf8'));
      err = captureError('the engine did not answer for this Call-ID');
    } else {
      const reason = /"error":"([^"]*)"/.exec(incoming.partial.toString('utf8', 0, Math.min(incoming.partial.length, 300)))?.[1];
      err = captureError(`the engine answered ${incoming.status}${reason ? `: ${reason}` : ''}`);
    }
    for (const list of batch.reads.values()) for (const read of list) this.#fail(read, err);
    if (incoming.close || incoming.framing === 'close') this.#broken(connection, captureError('the engine closed the connection'));
    else if (this.#queue.length > 0) this.#send();
  }

  /**
   * The connection can carry no more: reads in flight on it and not answered are sent again on a
   * new one, or fail when they have had their attempts (or when `retry` is false).
   */
  #broken(connection: Connection, err: Error, retry = true): void {
    if (connection.closed) return;
    this.#drop(connection);
    const batch = connection.batch;
    connection.batch = undefined;
    let again = false;
    for (const list of batch?.reads.values() ?? []) {
      for (const read of list) {
        if (read.done) continue;
        if (retry && read.attempts < MAX_ATTEMPTS) {
          this.#queue.push(read);
          again = true;
        } else this.#fail(read, err);
      }
    }
    if (again || this.#queue.length > 0) this.#scheduleSend();
  }

  #drop(connection: Connection): void {
    connection.closed = true;
    connection.socket.destroy();
    if (this.#connection === connection) this.#connection = undefined;
  }

  #timedOut(read: Read): void {
    if (read.done) return;
    this.#fail(read, captureError(`the engine did not answer within ${this.#timeoutMs} ms`));
    // A request that does not complete holds up every read after it: start afresh.
    const connection = this.#connection;
    if (connection?.batch?.reads.get(read.callId)?.includes(read)) this.#broken(connection, captureError('a read timed out'));
  }

  #fail(read: Read, err: Error): void {
    if (read.done) return;
    read.done = true;
    clearTimeout(read.timer);
    read.reject(err);
  }
}

interface CapturedLine {
  callId?: unknown;
  missing?: unknown;
  messages?: Array<{ t?: unknown; dir?: unknown; transport?: unknown; peer?: unknown; local?: unknown; text?: unknown }>;
  truncated?: unknown;
}

/** One leg's messages as the call log stores them. */
function toStored(body: CapturedLine, leg: 'a' | 'b'): { messages: StoredSipMessage[]; truncated: boolean } {
  const messages: StoredSipMessage[] = [];
  for (const m of Array.isArray(body.messages) ? body.messages : []) {
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
  return { messages, truncated: body.truncated === true };
}

/** The status and framing of a response head (status line and header lines, without the blank line). */
function parseHead(head: string): Incoming {
  const lines = head.split('\r\n');
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
  if (!status) throw captureError(`the engine sent something other than an HTTP/1.1 response: ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`);
  const incoming: Incoming = { status: Number(status[1]), framing: 'close', length: 0, close: /^HTTP\/1\.0/.test(lines[0] ?? ''), partial: Buffer.alloc(0), size: 0 };
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
