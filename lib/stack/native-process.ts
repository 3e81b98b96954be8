import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createWriteStream, readFileSync } from 'node:fs';
import type { Logger } from 'pino';

/** How a child process ended. */
export interface ProcessExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface NativeProcessOptions {
  /** Short name used in logs and error messages: "kamailio", "rtpengine", "engine", "b2bua". */
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  readonly logger: Logger;
  /**
   * Resolves once the process serves (a port bound, a ping answered). Called after spawn; the
   * start fails if the process exits first or this does not settle within readyTimeoutMs.
   */
  readonly ready: (proc: NativeProcess) => Promise<void>;
  readonly readyTimeoutMs?: number;
  /** After SIGTERM, how long to wait before SIGKILL (default 5 s). */
  readonly stopTimeoutMs?: number;
  /** Level at which the child's output lines are logged (default "debug"). */
  readonly outputLevel?: 'trace' | 'debug' | 'info';
  /** Append every output line to this file (e.g. var/log/kamailio.log). */
  readonly logFile?: string;
  /** Also write every output line, as is, to this stream (the B2BUA's JSON log on the terminal). */
  readonly echo?: NodeJS.WritableStream;
}

/** A child process failed to start; the message names it and quotes its last output lines. */
export class NativeProcessError extends Error {
  override readonly name = 'NativeProcessError';
  readonly code = 'ERR_NATIVE_PROCESS';
  constructor(
    readonly processName: string,
    message: string,
    readonly output: readonly string[],
  ) {
    super(`${processName}: ${message}${output.length ? `\n  ${output.slice(-15).join('\n  ')}` : ''}`);
  }
}

interface NativeProcessEvents {
  exit: [ProcessExit];
  /** Every line the process writes, stdout and stderr. */
  line: [string, 'stdout' | 'stderr'];
}

const OUTPUT_LINES_KEPT = 200;

/**
 * A native child process (Kamailio, RTPEngine, the engine, the B2BUA) started and stopped by PID.
 * Its stdout and stderr are logged line by line and the last lines are kept for error messages.
 * `stop()` is idempotent: SIGTERM, then SIGKILL after stopTimeoutMs.
 */
export class NativeProcess extends EventEmitter<NativeProcessEvents> {
  readonly name: string;
  readonly pid: number;
  /** Settles once when the process has exited. */
  readonly exited: Promise<ProcessExit>;
  readonly #child: ChildProcess;
  readonly #lines: string[] = [];
  readonly #stopTimeoutMs: number;
  #exit: ProcessExit | undefined;
  #stopping: Promise<ProcessExit> | undefined;

  private constructor(options: NativeProcessOptions, child: ChildProcess) {
    super();
    this.name = options.name;
    this.#child = child;
    this.pid = child.pid ?? -1;
    this.#stopTimeoutMs = options.stopTimeoutMs ?? 5000;
    const level = options.outputLevel ?? 'debug';
    const log = options.logger;
    const stream = options.logFile ? createWriteStream(options.logFile, { flags: 'a' }) : undefined;
    stream?.on('error', (err) => log.warn({ proc: this.name, err: err.message }, 'cannot write the log file'));
    const file = stream ? new BatchedAppend(stream) : undefined;
    const echo = options.echo;
    const onLine = (stream: 'stdout' | 'stderr', line: string): void => {
      if (line.length === 0) return;
      this.#lines.push(line);
      if (this.#lines.length > OUTPUT_LINES_KEPT) this.#lines.shift();
      echo?.write(`${line}\n`);
      if (!echo) log[level]({ proc: this.name, stream, line }, 'output');
      this.emit('line', line, stream);
    };
    // The log file gets what the process wrote as it came, in batches (BatchedAppend): a write per
    // line cost the bench's supervisor ~40% of its CPU at a few thousand lines a second, and a
    // write per pipe chunk still ~30% (a child writes each line on its own, so a chunk is a line).
    const toFile = file ? (chunk: string): void => file.add(chunk) : undefined;
    lineReader(child.stdout, (l) => onLine('stdout', l), toFile);
    lineReader(child.stderr, (l) => onLine('stderr', l), toFile);
    this.exited = new Promise<ProcessExit>((resolve) => {
      child.once('close', () => file?.end());
      child.once('exit', (code, signal) => {
        this.#exit = { code, signal };
        resolve(this.#exit);
        this.emit('exit', this.#exit);
      });
    });
  }

  /** Spawns the process and waits for `ready`. On failure the process is stopped and the promise rejects. */
  static async start(options: NativeProcessOptions): Promise<NativeProcess> {
    const child = spawn(options.command, [...options.args], {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own process group: a Ctrl-C in the terminal reaches only the supervisor, which then
      // stops the children in order (the B2BUA first, so it can drain its calls).
      detached: true,
    });
    const spawnError = new Promise<never>((_, reject) => {
      child.once('error', (err) => reject(new NativeProcessError(options.name, `cannot run ${options.command}: ${err.message}`, [])));
    });
    spawnError.catch(() => undefined);
    if (child.pid === undefined) await spawnError;
    const proc = new NativeProcess(options, child);
    const timeoutMs = options.readyTimeoutMs ?? 15_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        options.ready(proc),
        spawnError,
        proc.exited.then((exit) => {
          throw new NativeProcessError(options.name, `exited (${describeExit(exit)}) before it was ready`, proc.output());
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new NativeProcessError(options.name, `not ready after ${timeoutMs} ms`, proc.output())), timeoutMs);
        }),
      ]);
    } catch (err) {
      await proc.stop();
      throw err instanceof NativeProcessError ? err : new NativeProcessError(options.name, (err as Error).message, proc.output());
    } finally {
      clearTimeout(timer);
    }
    return proc;
  }

  get running(): boolean {
    return this.#exit === undefined;
  }

  /** The last lines the process wrote (stdout and stderr interleaved). */
  output(): string[] {
    return [...this.#lines];
  }

  /** Sends a signal by PID if the process still runs. */
  signal(sig: NodeJS.Signals): void {
    if (this.#exit === undefined) this.#child.kill(sig);
  }

  /** SIGTERM, then SIGKILL after stopTimeoutMs; resolves with how it exited. Idempotent. */
  stop(): Promise<ProcessExit> {
    if (this.#exit !== undefined) return Promise.resolve(this.#exit);
    if (this.#stopping) return this.#stopping;
    const kill = setTimeout(() => this.#child.kill('SIGKILL'), this.#stopTimeoutMs);
    this.#child.kill('SIGTERM');
    this.#stopping = this.exited.finally(() => clearTimeout(kill));
    return this.#stopping;
  }
}

/** How long a child's output may wait before it is appended to its log file. */
const LOG_FILE_FLUSH_MS = 100;
/** Appended at once when this much is waiting. */
const LOG_FILE_FLUSH_CHARS = 64 * 1024;

/**
 * Appends text to a log file one write per LOG_FILE_FLUSH_MS (or per LOG_FILE_FLUSH_CHARS) rather
 * than one per call. `end()` writes what is waiting and closes the stream. If the supervisor is
 * killed, the last 100 ms of a child's output may be missing from its file (not from the pipe:
 * the child never blocks on it).
 */
class BatchedAppend {
  readonly #stream: NodeJS.WritableStream;
  #parts: string[] = [];
  #chars = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(stream: NodeJS.WritableStream) {
    this.#stream = stream;
  }

  add(text: string): void {
    this.#parts.push(text);
    this.#chars += text.length;
    if (this.#chars >= LOG_FILE_FLUSH_CHARS) this.flush();
    else if (!this.#timer) this.#timer = setTimeout(() => this.flush(), LOG_FILE_FLUSH_MS).unref();
  }

  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#parts.length === 0) return;
    const text = this.#parts.length === 1 ? (this.#parts[0] as string) : this.#parts.join('');
    this.#parts = [];
    this.#chars = 0;
    this.#stream.write(text);
  }

  end(): void {
    this.flush();
    this.#stream.end();
  }
}

/** Resolves at the first line for which `match` holds (for a `ready` probe on a log line). */
export function waitForLine(proc: NativeProcess, match: (line: string) => boolean): Promise<string> {
  const seen = proc.output().find(match);
  if (seen !== undefined) return Promise.resolve(seen);
  return new Promise((resolve) => {
    const onLine = (line: string): void => {
      if (!match(line)) return;
      proc.off('line', onLine);
      resolve(line);
    };
    proc.on('line', onLine);
  });
}

export function describeExit(exit: ProcessExit): string {
  return exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
}

function lineReader(stream: NodeJS.ReadableStream | null, onLine: (line: string) => void, onChunk?: (chunk: string) => void): void {
  if (!stream) return;
  let rest = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    onChunk?.(chunk);
    const parts = (rest + chunk).split('\n');
    rest = parts.pop() ?? '';
    if (rest.length > 8192) {
      onLine(rest);
      rest = '';
    }
    for (const p of parts) onLine(p.replace(/\r$/, ''));
  });
  stream.on('end', () => {
    if (rest) onLine(rest);
  });
}

export type SocketProtocol = 'udp' | 'tcp';

/**
 * True when a socket is bound to `port` (UDP) or listening on it (TCP), on `host` or on any
 * address, according to /proc/net. Sees sockets of every process in this network namespace.
 */
export function isListening(port: number, protocol: SocketProtocol, host?: string): boolean {
  const files = protocol === 'udp' ? ['/proc/net/udp', '/proc/net/udp6'] : ['/proc/net/tcp', '/proc/net/tcp6'];
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const hexHosts = host ? new Set([procHexIPv4(host), '00000000']) : undefined;
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      const local = fields[1] ?? '';
      if (!local.endsWith(hexPort)) continue;
      if (hexHosts && file.endsWith('p') && !hexHosts.has(local.slice(0, 8))) continue;
      // TCP state 0A is LISTEN; a bound UDP socket shows 07.
      if (protocol === 'udp' || fields[3] === '0A') return true;
    }
  }
  return false;
}

/** 127.0.0.2 -> "0200007F", the little-endian hex /proc/net uses for IPv4. */
function procHexIPv4(host: string): string {
  const parts = host.split('.').map((p) => Number(p));
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) return '--------';
  return parts
    .reverse()
    .map((p) => p.toString(16).toUpperCase().padStart(2, '0'))
    .join('');
}

/** Polls until isListening holds for every listed socket; rejects after timeoutMs. */
export async function waitForSockets(
  sockets: ReadonlyArray<{ port: number; protocol: SocketProtocol; host?: string }>,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const missing = sockets.filter((s) => !isListening(s.port, s.protocol, s.host));
    if (missing.length === 0) return;
    if (Date.now() > deadline) {
      throw new Error(`nothing listening on ${missing.map((s) => `${s.protocol}/${s.host ?? '*'}:${s.port}`).join(', ')} after ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
