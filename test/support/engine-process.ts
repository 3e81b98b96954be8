// Starting the project's SIP engine (dist/app/engine.js, a drachtio server) for integration
// tests, and connecting unmodified drachtio-srf applications to it.

import { spawn, type ChildProcess } from 'node:child_process';
import type { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import Srf from 'drachtio-srf';
import { freePorts, releasePorts } from './ports';
import type { SipTransport } from './sipp';
import { waitUntil } from './wait';

/** The compiled engine entry point (`npm run build` writes it). */
export const ENGINE_ENTRY = resolve(__dirname, '..', '..', 'dist', 'app', 'engine.js');

export interface EngineOptions {
  /** Shared secret applications authenticate with (default 'cymru'). */
  secret?: string;
  /** Transports in the --contact URI (default udp and tcp). */
  transports?: SipTransport[];
  /** More command-line arguments, appended last. */
  extraArgs?: string[];
  /** How long to wait for the `engine ready` log line (default 10 s). */
  readyTimeoutMs?: number;
}

/** One line of the engine's stdout: pino JSON, or `{ msg, unparsed: true }` for anything else. */
export type EngineLogLine = Record<string, unknown>;

/** The JSON served at GET /status. */
export type EngineStatus = Record<string, unknown>;

export interface EngineHandle {
  pid: number;
  sipPort: number;
  wirePort: number;
  statusPort: number;
  secret: string;
  args: string[];
  /** stdout lines so far, parsed when they are JSON. */
  logs: EngineLogLine[];
  /** stderr so far. */
  stderr(): string;
  /** The last `lines` log lines as text, for failure messages. */
  logTail(lines?: number): string;
  /** GET /status on the scrape port. */
  status(): Promise<EngineStatus>;
  /** GET /metrics on the scrape port (Prometheus text). */
  metrics(): Promise<string>;
  /** Resolves with the exit code (null when killed by a signal) once the process has exited. */
  exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL after 5 s; resolves with the exit code. Idempotent. */
  stop(): Promise<number | null>;
}

export class EngineStartError extends Error {
  override readonly name = 'EngineStartError';
  readonly code = 'E_ENGINE_START';
  readonly exitCode: number | null | undefined;
  readonly output: string;
  constructor(message: string, exitCode: number | null | undefined, output: string) {
    super(`${message}\n--- engine output ---\n${output}`);
    this.exitCode = exitCode;
    this.output = output;
  }
}

function parseLine(line: string): EngineLogLine {
  try {
    const value: unknown = JSON.parse(line);
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) return value as EngineLogLine;
  } catch {
    // Not JSON: keep the text.
  }
  return { msg: line, unparsed: true };
}

function httpGet(port: number, path: string, timeoutMs = 2000): Promise<{ status: number; body: string }> {
  return new Promise((resolveGet, rejectGet) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => { body += chunk; });
      res.on('end', () => resolveGet({ status: res.statusCode ?? 0, body }));
      res.on('error', rejectGet);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} on port ${port} timed out after ${timeoutMs} ms`)));
    req.on('error', rejectGet);
    req.end();
  });
}

function formatLog(line: EngineLogLine): string {
  return line.unparsed === true ? String(line.msg) : JSON.stringify(line);
}

/** Heuristic: did the engine die because one of its ports was taken (worth a retry with new ports)? */
function looksLikePortClash(output: string): boolean {
  return /EADDRINUSE|address already in use|port .*in use/i.test(output);
}

async function startOnce(options: EngineOptions): Promise<EngineHandle> {
  if (!existsSync(ENGINE_ENTRY)) {
    throw new EngineStartError(`${ENGINE_ENTRY} is missing: run \`npm run build\` first`, undefined, '');
  }
  const [sipPort, wirePort, statusPort] = await freePorts(3);
  if (sipPort === undefined || wirePort === undefined || statusPort === undefined) throw new Error('startEngine: no ports');
  const secret = options.secret ?? 'cymru';
  const transports = options.transports ?? ['udp', 'tcp'];
  const args = [
    ENGINE_ENTRY,
    '--contact', `sip:127.0.0.1:${sipPort};transport=${transports.join(',')}`,
    '--address', '127.0.0.1',
    '--port', String(wirePort),
    '--secret', secret,
    '--loglevel', 'debug',
    '--prometheus-scrape-port', `127.0.0.1:${statusPort}`,
    ...(options.extraArgs ?? []),
  ];
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const pid = child.pid;
  if (pid === undefined || !child.stdout || !child.stderr) throw new Error('startEngine: could not spawn node');

  const logs: EngineLogLine[] = [];
  let stderrText = '';
  let exitCode: number | null | undefined;
  let onReady: (() => void) | undefined;
  const lines = createInterface({ input: child.stdout });
  lines.on('line', (line) => {
    const entry = parseLine(line);
    logs.push(entry);
    if (entry.msg === 'engine ready') onReady?.();
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderrText += chunk; });

  const exited = new Promise<number | null>((resolveExit) => {
    child.once('close', (code) => {
      exitCode = code;
      releasePorts([sipPort, wirePort, statusPort]);
      resolveExit(code);
    });
  });

  const logTail = (count = 40): string => {
    const text = logs.slice(-count).map(formatLog).join('\n');
    return stderrText.trim() ? `${text}\n--- stderr ---\n${stderrText.trimEnd()}` : text;
  };

  let stopping: Promise<number | null> | undefined;
  const stop = (): Promise<number | null> => {
    if (stopping) return stopping;
    stopping = (async () => {
      if (exitCode !== undefined) return exitCode;
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // Already gone.
      }
      const killTimer = setTimeout(() => {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }, 5000);
      const code = await exited;
      clearTimeout(killTimer);
      return code;
    })();
    return stopping;
  };

  const handle: EngineHandle = {
    pid,
    sipPort,
    wirePort,
    statusPort,
    secret,
    args: [process.execPath, ...args],
    logs,
    stderr: () => stderrText,
    logTail,
    async status() {
      const { status, body } = await httpGet(statusPort, '/status');
      if (status !== 200) throw new Error(`GET /status answered ${status}: ${body}`);
      const value: unknown = JSON.parse(body);
      if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`GET /status is not a JSON object: ${body}`);
      return value as EngineStatus;
    },
    async metrics() {
      const { status, body } = await httpGet(statusPort, '/metrics');
      if (status !== 200) throw new Error(`GET /metrics answered ${status}: ${body}`);
      return body;
    },
    exited,
    stop,
  };

  const readyTimeoutMs = options.readyTimeoutMs ?? 10000;
  await new Promise<void>((resolveReady, rejectReady) => {
    const timer = setTimeout(() => {
      void stop().then(() => rejectReady(new EngineStartError(`engine not ready after ${readyTimeoutMs} ms`, exitCode, logTail(80))));
    }, readyTimeoutMs);
    onReady = () => {
      clearTimeout(timer);
      resolveReady();
    };
    if (logs.some((entry) => entry.msg === 'engine ready')) onReady();
    void exited.then((code) => {
      clearTimeout(timer);
      rejectReady(new EngineStartError(`engine exited with code ${code} before it was ready`, code, logTail(80)));
    });
  });
  return handle;
}

/**
 * Spawns `node dist/app/engine.js` on free loopback ports (SIP, wire protocol, status) and
 * resolves once it logs `engine ready`. Retries twice with new ports if it lost a port race.
 */
export async function startEngine(options: EngineOptions = {}): Promise<EngineHandle> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await startOnce(options);
    } catch (err) {
      if (attempt < 3 && err instanceof EngineStartError && looksLikePortClash(err.output)) continue;
      throw err;
    }
  }
}

/** Reads a numeric counter from /status, failing clearly when the engine does not report it. */
export function statusCount(status: EngineStatus, name: string): number {
  const value = status[name];
  if (typeof value !== 'number') throw new Error(`/status has no numeric "${name}": ${JSON.stringify(status)}`);
  return value;
}

/**
 * Polls GET /status until `accept` holds; rejects (with the last status and the engine's recent
 * log lines) after timeoutMs (default 5 s).
 */
export async function waitForEngineStatus(
  engine: EngineHandle,
  accept: (status: EngineStatus) => boolean,
  description: string,
  timeoutMs = 5000,
): Promise<EngineStatus> {
  try {
    return await waitUntil(() => engine.status(), (status) => {
      try {
        return accept(status);
      } catch {
        return false;
      }
    }, { timeoutMs, intervalMs: 50, description: `engine /status: ${description}` });
  } catch (err) {
    throw new Error(`${(err as Error).message}\n--- engine log tail ---\n${engine.logTail(40)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// drachtio-srf applications

/** drachtio-srf's connect options, plus the reconnect knobs its typings leave out. */
interface SrfConnectOptions extends Srf.SrfConfig {
  reconnect?: { maxAttempts?: number; retryMaxDelay?: number };
  tags?: string[];
}

export interface ConnectSrfOptions {
  /** Defaults to the engine's secret. */
  secret?: string;
  /** Tags passed to `new Srf(tags)`. */
  tags?: string[];
  /**
   * Called with the Srf before it connects: register handlers (srf.invite, srf.options, ...) here
   * so their routes reach the engine together with the authentication.
   */
  setup?: (srf: Srf) => void;
  /** Default 5 s. */
  timeoutMs?: number;
}

export interface ConnectedSrf {
  srf: Srf;
  /** The SIP host:port the engine reported on authentication. */
  hostport: string;
  /** Errors drachtio-srf emitted after connecting (kept so they cannot crash the test process). */
  errors: Error[];
  /** Disconnects and resolves once the socket has closed. Idempotent. */
  close(): Promise<void>;
}

export class SrfConnectError extends Error {
  override readonly name = 'SrfConnectError';
  readonly code = 'E_SRF_CONNECT';
}

/**
 * Connects a new drachtio-srf application to the engine and resolves once it has authenticated.
 * Rejects with SrfConnectError when authentication fails, the socket closes or errors first, or
 * nothing happens within timeoutMs. The Srf never tries to reconnect.
 */
export function connectSrf(engine: EngineHandle, options: ConnectSrfOptions = {}): Promise<ConnectedSrf> {
  const srf = options.tags ? new Srf(options.tags) : new Srf();
  // Srf's typings list only some events; 'close' is re-emitted from the socket at runtime.
  const emitter: EventEmitter = srf;
  const errors: Error[] = [];
  let closed = false;
  let onClosed: (() => void) | undefined;
  emitter.on('error', (err: Error) => { errors.push(err); });
  emitter.on('close', () => {
    closed = true;
    onClosed?.();
  });
  options.setup?.(srf);

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    if (closing) return closing;
    closing = new Promise<void>((resolveClose) => {
      if (closed) {
        resolveClose();
        return;
      }
      const timer = setTimeout(resolveClose, 2000);
      onClosed = () => {
        clearTimeout(timer);
        resolveClose();
      };
      try {
        srf.disconnect();
      } catch {
        // drachtio-srf throws when it has no socket left: nothing to close.
        clearTimeout(timer);
        resolveClose();
      }
    });
    return closing;
  };

  const connectOptions: SrfConnectOptions = {
    host: '127.0.0.1',
    port: engine.wirePort,
    secret: options.secret ?? engine.secret,
    // attempts start at 1, so a maximum of 1 means "never reconnect".
    reconnect: { maxAttempts: 1 },
  };
  const timeoutMs = options.timeoutMs ?? 5000;

  return new Promise<ConnectedSrf>((resolveConnect, rejectConnect) => {
    let settled = false;
    const fail = (message: string): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      void close().then(() => rejectConnect(new SrfConnectError(message)));
    };
    const timer = setTimeout(() => fail(`no connect event within ${timeoutMs} ms`), timeoutMs);
    emitter.once('error', (err: Error) => fail(`socket error before connect: ${err.message}`));
    emitter.once('close', () => fail('socket closed before connect'));
    srf.on('connect', (err: Error | null, hostport: string) => {
      if (err) {
        fail(`connect failed: ${err.message}`);
        return;
      }
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolveConnect({ srf, hostport, errors, close });
    });
    // Srf#connect's typings promise a Promise; at runtime it returns the app and reports through events.
    srf.connect(connectOptions);
  });
}

export interface EngineExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** stdout and stderr together. */
  output: string;
  /** True when the engine was still running after timeoutMs and had to be killed. */
  killed: boolean;
}

/**
 * Runs `node dist/app/engine.js <args>` expecting it to exit by itself (e.g. on a bad option),
 * and resolves with how it exited. Kills it after timeoutMs (default 10 s).
 */
export function runEngineToExit(args: string[], timeoutMs = 10000): Promise<EngineExit> {
  if (!existsSync(ENGINE_ENTRY)) return Promise.reject(new EngineStartError(`${ENGINE_ENTRY} is missing: run \`npm run build\` first`, undefined, ''));
  return new Promise<EngineExit>((resolveExit) => {
    const child = spawn(process.execPath, [ENGINE_ENTRY, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let killed = false;
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => { output += chunk; });
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => { output += chunk; });
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolveExit({ code, signal, output, killed });
    });
  });
}
