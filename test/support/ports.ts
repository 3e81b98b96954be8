// Free loopback ports for tests, and checks that a port is bound.
//
// Two tap jobs run in parallel, each starting engines and SIPp instances on ports picked here.
// A port is handed out only when (1) a UDP and a TCP bind on 127.0.0.1 both succeed at the time
// of the call and (2) this process wins an exclusive reservation file for it in a directory
// shared by every test process on the machine. The reservation lives until this process exits
// (or RESERVATION_TTL_MS passes, for files left by a crashed run), so two test files never get
// the same port even though nothing holds the socket between the check and its real use.

import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import { closeSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isListening } from '../../lib/stack/native-process';

export type PortProtocol = 'udp' | 'tcp';

const WIDE_LOW = 20000;
const WIDE_HIGH = 59999;
/** Keep at least this many candidates when carving the kernel's ephemeral range out. */
const MIN_CANDIDATES = 5000;
const RESERVATION_DIR = join(tmpdir(), 'drachtio-b2bua-test-ports');
const RESERVATION_TTL_MS = 15 * 60 * 1000;
const ATTEMPTS_PER_PORT = 200;

const reservedHere = new Set<number>();
let exitHookInstalled = false;

/** The candidate range: 20000-59999 minus the kernel's ephemeral range when enough is left. */
function candidateRange(): { low: number; high: number } {
  try {
    const [lowText, highText] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/);
    const ephemeralLow = Number(lowText);
    const ephemeralHigh = Number(highText);
    if (Number.isInteger(ephemeralLow) && Number.isInteger(ephemeralHigh)) {
      // Below the ephemeral range: outgoing connections never take these ports by surprise.
      const belowHigh = Math.min(WIDE_HIGH, ephemeralLow - 1);
      if (belowHigh - WIDE_LOW + 1 >= MIN_CANDIDATES) return { low: WIDE_LOW, high: belowHigh };
      const aboveLow = Math.max(WIDE_LOW, ephemeralHigh + 1);
      if (WIDE_HIGH - aboveLow + 1 >= MIN_CANDIDATES) return { low: aboveLow, high: WIDE_HIGH };
    }
  } catch {
    // Not Linux, or /proc is hidden: use the wide range.
  }
  return { low: WIDE_LOW, high: WIDE_HIGH };
}

function randomInt(low: number, high: number): number {
  return low + Math.floor(Math.random() * (high - low + 1));
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const port of reservedHere) {
      try {
        unlinkSync(join(RESERVATION_DIR, String(port)));
      } catch {
        // Already gone.
      }
    }
  });
}

/** Takes the machine-wide reservation for `port`; false when another live process holds it. */
function reserve(port: number): boolean {
  if (reservedHere.has(port)) return false;
  mkdirSync(RESERVATION_DIR, { recursive: true });
  const file = join(RESERVATION_DIR, String(port));
  for (let attempt = 0; attempt < 2; attempt += 1) {
    try {
      const fd = openSync(file, 'wx');
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      reservedHere.add(port);
      installExitHook();
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      if (!reservationIsStale(file)) return false;
      try {
        unlinkSync(file);
      } catch {
        return false;
      }
    }
  }
  return false;
}

function reservationIsStale(file: string): boolean {
  try {
    const stat = statSync(file);
    if (Date.now() - stat.mtimeMs > RESERVATION_TTL_MS) return true;
    const owner = Number(readFileSync(file, 'utf8').trim());
    if (!Number.isInteger(owner) || owner <= 0) return true;
    try {
      process.kill(owner, 0);
      return false;
    } catch (err) {
      // ESRCH: the owner is gone. EPERM: it exists but belongs to someone else.
      return (err as NodeJS.ErrnoException).code === 'ESRCH';
    }
  } catch {
    return true;
  }
}

/** Gives reservations back early (they are released at exit anyway). */
export function releasePorts(ports: readonly number[]): void {
  for (const port of ports) {
    if (!reservedHere.delete(port)) continue;
    try {
      unlinkSync(join(RESERVATION_DIR, String(port)));
    } catch {
      // Already gone.
    }
  }
}

function canBindTcp(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
      server.close(() => resolve(true));
    });
  });
}

function canBindUdp(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createSocket({ type: 'udp4', reuseAddr: false });
    socket.once('error', () => {
      socket.close();
      resolve(false);
    });
    socket.bind({ address: '127.0.0.1', port, exclusive: true }, () => {
      socket.close(() => resolve(true));
    });
  });
}

/** True when both a UDP and a TCP socket can bind 127.0.0.1:port right now. */
export async function isPortFree(port: number): Promise<boolean> {
  return (await canBindUdp(port)) && (await canBindTcp(port));
}

/**
 * `count` distinct ports on 127.0.0.1, each free for UDP and TCP at the time of the call and
 * reserved against every other test process until this one exits.
 */
export async function freePorts(count: number): Promise<number[]> {
  if (!Number.isInteger(count) || count < 1) throw new RangeError(`freePorts: count must be a positive integer, got ${count}`);
  const { low, high } = candidateRange();
  const chosen: number[] = [];
  let attempts = 0;
  while (chosen.length < count) {
    attempts += 1;
    if (attempts > count * ATTEMPTS_PER_PORT) {
      releasePorts(chosen);
      throw new Error(`freePorts: found only ${chosen.length} of ${count} free ports in ${low}-${high}`);
    }
    const port = randomInt(low, high);
    if (chosen.includes(port) || !reserve(port)) continue;
    if (await isPortFree(port)) {
      chosen.push(port);
    } else {
      releasePorts([port]);
    }
  }
  return chosen;
}

/**
 * `size` consecutive ports starting at an even port (RTP convention), all free for UDP and TCP
 * and reserved like freePorts(). Returns the first and last port of the range.
 */
export async function freePortRange(size: number): Promise<{ first: number; last: number }> {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`freePortRange: size must be a positive integer, got ${size}`);
  const { low, high } = candidateRange();
  const evenLow = low % 2 === 0 ? low : low + 1;
  for (let attempt = 0; attempt < ATTEMPTS_PER_PORT; attempt += 1) {
    const first = evenLow + 2 * randomInt(0, Math.floor((high - size + 1 - evenLow) / 2));
    const range = Array.from({ length: size }, (_, i) => first + i);
    const taken: number[] = [];
    let ok = true;
    for (const port of range) {
      if (!reserve(port)) {
        ok = false;
        break;
      }
      taken.push(port);
      if (!(await isPortFree(port))) {
        ok = false;
        break;
      }
    }
    if (ok) return { first, last: first + size - 1 };
    releasePorts(taken);
  }
  throw new Error(`freePortRange: no ${size} consecutive free ports found in ${low}-${high}`);
}

/**
 * True when something is bound to `port` (UDP) or listening on it (TCP) on any local address,
 * according to /proc/net (lib/stack's check, shared with the process supervisor).
 */
export function isBound(port: number, protocol: PortProtocol): boolean {
  return isListening(port, protocol);
}

export interface WaitForListenerOptions {
  timeoutMs?: number;
  intervalMs?: number;
  /** Stop waiting (and reject) as soon as this returns a reason, e.g. "process exited". */
  abort?: () => string | undefined;
}

/** Resolves once isBound(port, protocol) holds; rejects after timeoutMs (default 5 s). */
export async function waitForListener(port: number, protocol: PortProtocol, options: WaitForListenerOptions = {}): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const intervalMs = options.intervalMs ?? 10;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (isBound(port, protocol)) return;
    const reason = options.abort?.();
    if (reason !== undefined) throw new Error(`waitForListener ${protocol}/${port}: ${reason}`);
    if (Date.now() > deadline) throw new Error(`waitForListener: nothing bound to ${protocol}/${port} after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
