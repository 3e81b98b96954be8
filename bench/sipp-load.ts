// SIPp as the benchmark's phones: callers offering a bounded load (split over several SIPp
// processes when one would be the limit), callee UASes answering for registered extensions, and
// digest REGISTERs. Every SIPp runs inside coreutils `timeout`, in its own process group and its
// own working directory (its trace files land there), and is stopped by PID.

import { spawn } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { findRepoRoot } from '../lib/stack/stack';
import { hopLatency, type HopBreakdown, type HopPorts } from './hop-latency';
import { readPcap, readPcapPackets, setupLatency, startCapture, type Capture, type SetupLatency } from './pcap-latency';
import { freePorts, waitUdpBound } from './proc';

export const SCENARIOS = join(findRepoRoot(__dirname), 'bench', 'scenarios');

/** Where the benchmark's own SIP ports come from: above the kernel's ephemeral range and the tests' 20000-32767. */
export const SIP_PORT_LOW = 61000;
export const SIP_PORT_HIGH = 65535;

export interface SippExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly seconds: number;
  /** The last 40,000 characters SIPp printed (its final screens). */
  readonly output: string;
}

export interface SippProcess {
  readonly pid: number;
  readonly workDir: string;
  readonly done: Promise<SippExit>;
  /** SIGTERM to the process group (timeout + sipp), SIGKILL after 5 s. */
  stop(): Promise<SippExit>;
}

const running = new Set<SippProcess>();
let closed = false;

/** Stops every SIPp this module started that still runs (a path done, a failed phase). */
export async function stopAllSipp(): Promise<void> {
  await Promise.all([...running].map((p) => p.stop()));
}

/** Stops every SIPp and refuses to start another (Ctrl-C: a phase still running must not start new load). */
export async function closeSipp(): Promise<void> {
  closed = true;
  await stopAllSipp();
}

function spawnSipp(args: readonly string[], workDir: string, limitSec: number): SippProcess {
  if (closed) throw new Error('the benchmark is stopping: no new SIPp');
  mkdirSync(workDir, { recursive: true });
  const started = Date.now();
  const child = spawn('timeout', ['-k', '5', String(Math.ceil(limitSec)), 'sipp', ...args], { cwd: workDir, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  const keep = (b: Buffer): void => {
    output += b.toString('latin1');
    if (output.length > 80_000) output = output.slice(-40_000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const pid = child.pid ?? -1;
  const done = new Promise<SippExit>((resolve) => {
    child.once('error', (err) => {
      output += `\ncannot run timeout/sipp: ${err.message}`;
    });
    child.once('close', (code, signal) => resolve({ code, signal, seconds: (Date.now() - started) / 1000, output: output.slice(-40_000) }));
  });
  const group = (sig: NodeJS.Signals): void => {
    try {
      process.kill(-pid, sig);
    } catch {
      // already gone
    }
  };
  let stopping: Promise<SippExit> | undefined;
  const proc: SippProcess = {
    pid,
    workDir,
    done,
    stop() {
      stopping ??= (async () => {
        group('SIGTERM');
        const kill = setTimeout(() => group('SIGKILL'), 5000);
        const exit = await done;
        clearTimeout(kill);
        return exit;
      })();
      return stopping;
    },
  };
  running.add(proc);
  void done.then(() => running.delete(proc));
  return proc;
}

/** The last cumulative value of a counter on SIPp's statistics screen ("Successful call | 0 | 12"). */
export function screenCounter(output: string, label: string): number | undefined {
  let value: number | undefined;
  for (const m of output.matchAll(new RegExp(`${label}\\s*\\|\\s*\\d+\\s*\\|\\s*(\\d+)`, 'g'))) value = Number(m[1]);
  return value;
}

/** An even port p with p and p + 2 free (SIPp's -mp: audio on p, video echo on p + 2). */
async function mediaPort(): Promise<number> {
  for (;;) {
    const [p] = await freePorts(1, SIP_PORT_LOW, SIP_PORT_HIGH - 4);
    if (p === undefined || p % 2 !== 0) continue;
    const next = await freePorts(1, p + 2, p + 2).catch(() => []);
    if (next.length === 1) return p;
  }
}

// ------------------------------------------------------------------------------------------ UAS

export interface Uas {
  readonly port: number;
  readonly process: SippProcess;
  /** Its -trace_stat file. */
  readonly statFile: string;
}

/** Starts a SIPp answering every INVITE (bench-uas.xml), echoing RTP; resolves once its port is bound. */
export async function startUas(workDir: string, limitSec: number): Promise<Uas> {
  const [port] = await freePorts(1, SIP_PORT_LOW, SIP_PORT_HIGH);
  if (port === undefined) throw new Error('no free port for a SIPp UAS');
  const mp = await mediaPort();
  const proc = spawnSipp(
    ['-sf', join(SCENARIOS, 'bench-uas.xml'), '-t', 'u1', '-i', '127.0.0.1', '-p', String(port), '-mp', String(mp), '-rtp_echo', '-nostdin',
      // -l: SIPp wants open sockets + calls below the open-file limit (20,000 here).
      '-timer_resol', '1', '-l', '18000', '-max_socket', '100', '-trace_err', '-error_file', join(workDir, 'errors.log'),
      // Statistics every second: calls still open (waiting for a BYE that never came) are visible.
      '-trace_stat', '-stf', join(workDir, 'stat.csv'), '-fd', '1'],
    workDir,
    limitSec,
  );
  try {
    await Promise.race([
      waitUdpBound(port, 10_000),
      proc.done.then((e) => {
        throw new Error(`the SIPp UAS exited (${e.code ?? e.signal}) before binding port ${port}:\n${e.output.slice(-1500)}`);
      }),
    ]);
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return { port, process: proc, statFile: join(workDir, 'stat.csv') };
}

/** The UAS's latest statistics line (written every second). */
export function uasStat(uas: Uas): StatRow | undefined {
  const rows = parseStat(uas.statFile);
  return rows[rows.length - 1];
}

// ------------------------------------------------------------------------------------- REGISTER

export interface Phone {
  readonly ext: string;
  readonly password: string;
}

/**
 * Registers each extension through Kamailio (digest) with its Contact on `contactPort(i)`, one at
 * a time: Kamailio writes every registration through to SQLite, and parallel REGISTERs there
 * meet a locked database (500). A failure is retried twice, then reported.
 */
export async function registerPhones(target: string, domain: string, phones: readonly Phone[], contactPort: (i: number) => number, workDir: string): Promise<void> {
  for (const [i, phone] of phones.entries()) {
    let last: SippExit | undefined;
    for (let attempt = 0; attempt < 3; attempt++) {
      const proc = spawnSipp(
        ['-sf', join(SCENARIOS, 'bench-register.xml'), target, '-t', 'u1', '-i', '127.0.0.1', '-s', phone.ext, '-ap', phone.password, '-m', '1', '-nostdin',
          '-recv_timeout', '5000', '-key', 'domain', domain, '-key', 'contact_host', '127.0.0.1', '-key', 'contact_port', String(contactPort(i)), '-key', 'expires', '3600'],
        join(workDir, 'register'),
        15,
      );
      last = await proc.done;
      if (last.code === 0) break;
      await new Promise((r) => setTimeout(r, 100 * (attempt + 1)));
    }
    if (last?.code !== 0) throw new Error(`REGISTER of extension ${phone.ext} through ${target} failed (exit ${last?.code ?? last?.signal}):\n${last?.output.slice(-1500)}`);
  }
}

// ------------------------------------------------------------------------------------------ UAC

export interface LoadOptions {
  /** bench-uac (signalling only) or bench-uac-audio (plays PCMA while held). */
  readonly scenario: 'bench-uac' | 'bench-uac-audio';
  /** Kamailio as the phones reach it, "127.0.0.1:port". */
  readonly target: string;
  /** One caller extension per SIPp process (SIPp 3.6 takes one set of credentials per process). */
  readonly callers: readonly Phone[];
  readonly callees: readonly string[];
  readonly rate: number;
  readonly calls: number;
  readonly holdMs: number;
  /** Calls per second one SIPp process is given. */
  readonly uacRate: number;
  readonly workDir: string;
  /**
   * Record INVITE->180 and INVITE->200 per call (-trace_rtt), written every `rttEvery` calls
   * (default 1; SIPp does not write the last partial batch at exit).
   */
  readonly rtt?: boolean;
  readonly rttEvery?: number;
  /** SIPp statistics every this many seconds (-trace_stat -fd). */
  readonly statEverySec?: number;
  /** Simultaneous calls each SIPp allows (-l); default 4 x rate x call length, at least 1,000. */
  readonly maxConcurrent?: number;
  /**
   * Capture the callers' SIP ports on lo with tcpdump into this file while the load runs: setup
   * latency from kernel timestamps (us), beside SIPp's -trace_rtt (whole ticks of its coarse clock).
   */
  readonly pcapFile?: string;
  /**
   * With pcapFile: capture the chain's hops as well (UDP and the engine's wire TCP) and break
   * INVITE->180 down per hop; `sessions()` maps the B2BUA's session ids to the callers' Call-IDs
   * (from its `call received` lines), read once the load is over.
   */
  readonly hops?: { readonly ports: HopPorts; readonly sessions: () => ReadonlyMap<string, string> };
}

/** One line of SIPp's -trace_stat file, the columns the benchmark reads. */
export interface StatRow {
  readonly elapsedSec: number;
  readonly currentCalls: number;
  readonly successful: number;
  readonly failed: number;
}

export interface LoadResult {
  readonly rate: number;
  readonly calls: number;
  readonly successful: number;
  /** Calls that failed or did not finish in time. */
  readonly failed: number;
  readonly uacs: number;
  readonly wallSeconds: number;
  /**
   * Calls answered per second (answerRate, with rtt), else successful calls per second of the
   * window from the first call to the end of the last one's setup.
   */
  readonly achievedRate: number;
  /** Milliseconds from the authenticated INVITE to the 180 and to the 200 (with rtt). */
  readonly ringingMs: number[];
  readonly answeredMs: number[];
  /** The same two intervals from the capture at the callers' ports (with pcapFile, when it worked). */
  readonly pcap?: SetupLatency;
  /** With hops: INVITE->180 per hop of the chain, from the same capture. */
  readonly hops?: HopBreakdown;
  /** With pcapFile: why there is no capture, or what to know about it (packets the kernel dropped). */
  readonly pcapNote?: string;
  /** Per SIPp process, with statEverySec. */
  readonly stats: StatRow[][];
  /** The start of the first SIPp's error trace when a call failed. */
  readonly firstErrors: string;
  readonly exitCodes: Array<number | null>;
}

/** Reads SIPp's -trace_rtt file: response times, and when each 200 arrived (ms since SIPp started). */
function parseRtt(dir: string, ringing: number[], answered: number[], answeredAt: number[]): void {
  for (const f of readdirSync(dir).filter((n) => n.endsWith('_rtt.csv'))) {
    for (const line of readFileSync(join(dir, f), 'utf8').split('\n').slice(1)) {
      const [at, ms, rtd] = line.split(';');
      const v = Number(ms);
      if (ms === undefined || !Number.isFinite(v)) continue;
      if (rtd?.trim() === '1') ringing.push(v);
      else if (rtd?.trim() === '2') {
        answered.push(v);
        answeredAt.push(Number(at));
      }
    }
  }
}

/**
 * Calls answered per second while the load ran: the middle 90% of the answers over the time they
 * took to arrive, so a few slow calls at either end do not decide it. Undefined with too few answers.
 */
export function answerRate(answeredAt: readonly number[]): number | undefined {
  const t = answeredAt.filter(Number.isFinite).sort((a, b) => a - b);
  if (t.length < 20) return undefined;
  const lo = Math.floor(t.length * 0.05);
  const hi = Math.ceil(t.length * 0.95) - 1;
  const span = ((t[hi] as number) - (t[lo] as number)) / 1000;
  return span > 0 ? (hi - lo) / span : undefined;
}

function parseStat(file: string): StatRow[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  const header = (lines[0] ?? '').split(';');
  const col = (name: string): number => header.indexOf(name);
  const [el, cur, ok, ko] = [col('ElapsedTime(C)'), col('CurrentCall'), col('SuccessfulCall(C)'), col('FailedCall(C)')];
  const seconds = (s: string | undefined): number => {
    // "00:00:12:345000" (h:m:s:us) or "00:00:12"
    const parts = (s ?? '').split(':').map(Number);
    if (parts.length < 3 || parts.some((p) => !Number.isFinite(p))) return NaN;
    return (parts[0] ?? 0) * 3600 + (parts[1] ?? 0) * 60 + (parts[2] ?? 0) + (parts[3] ?? 0) / 1e6;
  };
  return lines.slice(1).map((l) => {
    const f = l.split(';');
    return { elapsedSec: seconds(f[el]), currentCalls: Number(f[cur]), successful: Number(f[ok]), failed: Number(f[ko]) };
  });
}

/**
 * Offers `calls` calls at `rate` calls/s from ceil(rate / uacRate) SIPp processes in parallel
 * (each a different caller extension, dialling the callees in turn) and waits for all of them.
 */
export async function offerLoad(o: LoadOptions): Promise<LoadResult> {
  const uacs = Math.max(1, Math.min(o.callers.length, Math.ceil(o.rate / o.uacRate)));
  if (o.rate / uacs > o.uacRate * 1.01) throw new Error(`${o.rate} calls/s needs ${Math.ceil(o.rate / o.uacRate)} callers, only ${o.callers.length} provisioned`);
  const ports = await freePorts(uacs, SIP_PORT_LOW, SIP_PORT_HIGH);
  const callLengthSec = o.holdMs / 1000 + 1;
  const procs: SippProcess[] = [];
  let assignedRate = 0;
  let assignedCalls = 0;
  let capture: Capture | undefined;
  let pcapNote: string | undefined;
  if (o.pcapFile) {
    try {
      const hopPorts = o.hops ? [o.hops.ports.kamailio, o.hops.ports.engineSip, o.hops.ports.wire, ...o.hops.ports.ng] : undefined;
      capture = await startCapture({ ports, hopPorts, file: o.pcapFile, limitSec: o.calls / o.rate + callLengthSec + 120 });
    } catch (err) {
      pcapNote = `no capture: ${(err as Error).message}`;
    }
  }
  let exits: SippExit[];
  try {
    for (let i = 0; i < uacs; i++) {
      const rate = i === uacs - 1 ? o.rate - assignedRate : Math.floor(o.rate / uacs);
      const calls = i === uacs - 1 ? o.calls - assignedCalls : Math.round((o.calls * rate) / o.rate);
      assignedRate += rate;
      assignedCalls += calls;
      if (calls <= 0 || rate <= 0) continue;
      const caller = o.callers[i] as Phone;
      const dir = join(o.workDir, `uac-${i}`);
      mkdirSync(dir, { recursive: true });
      // Each caller starts at a different callee so the UASes share the load from the first call.
      const rotated = o.callees.map((_, k) => o.callees[(k + i * 7) % o.callees.length]);
      writeFileSync(join(dir, 'callees.csv'), `SEQUENTIAL\n${rotated.map((c) => `${c};`).join('\n')}\n`);
      const limit = Math.ceil(calls / rate + callLengthSec + 40);
      const args = [
        '-sf', join(SCENARIOS, `${o.scenario}.xml`), o.target, '-t', 'u1', '-i', '127.0.0.1', '-p', String(ports[i]), '-mp', String(await mediaPort()),
        '-inf', join(dir, 'callees.csv'), '-key', 'caller', caller.ext, '-au', caller.ext, '-ap', caller.password,
        '-r', String(rate), '-rp', '1000', '-m', String(calls), '-d', String(o.holdMs),
        '-l', String(o.maxConcurrent ?? Math.max(1000, Math.ceil(4 * rate * callLengthSec))),
        '-recv_timeout', '15000', '-timer_resol', '1', '-max_socket', '1000', '-nostdin',
        '-trace_err', '-error_file', join(dir, 'errors.log'),
      ];
      if (o.rtt) args.push('-trace_rtt', '-rtt_freq', String(o.rttEvery ?? 1));
      if (o.statEverySec) args.push('-trace_stat', '-stf', join(dir, 'stat.csv'), '-fd', String(o.statEverySec));
      procs.push(spawnSipp(args, dir, limit));
    }
    exits = await Promise.all(procs.map((p) => p.done));
  } finally {
    const end = await capture?.stop();
    if (end?.droppedByKernel) pcapNote = `the kernel dropped ${end.droppedByKernel} packets of the capture`;
  }
  let pcap: SetupLatency | undefined;
  let hops: HopBreakdown | undefined;
  if (capture) {
    try {
      const file = readFileSync(capture.file);
      pcap = setupLatency(readPcap(file), new Set(ports));
      if (o.hops) hops = hopLatency(readPcapPackets(file), new Set(ports), o.hops.ports, o.hops.sessions());
    } catch (err) {
      pcapNote = `capture unreadable: ${(err as Error).message}`;
    }
  }
  let successful = 0;
  let failedSeen = 0;
  const ringingMs: number[] = [];
  const answeredMs: number[] = [];
  const answeredAt: number[] = [];
  const stats: StatRow[][] = [];
  let firstErrors = '';
  for (const [i, exit] of exits.entries()) {
    successful += screenCounter(exit.output, 'Successful call') ?? 0;
    failedSeen += screenCounter(exit.output, 'Failed call') ?? 0;
    const dir = procs[i]?.workDir ?? '';
    if (o.rtt) parseRtt(dir, ringingMs, answeredMs, answeredAt);
    if (o.statEverySec) stats.push(parseStat(join(dir, 'stat.csv')));
    if (!firstErrors && exit.code !== 0) {
      let errors = '';
      try {
        errors = readFileSync(join(dir, 'errors.log'), 'latin1');
      } catch {
        // no error trace
      }
      firstErrors = (errors.trim() ? errors : exit.output).slice(0, 1500);
    }
  }
  const wallSeconds = Math.max(...exits.map((e) => e.seconds));
  // The offered window: SIPp starts the last call (calls - 1) / rate seconds after the first.
  const window = Math.max((o.calls - 1) / o.rate, wallSeconds - o.holdMs / 1000 - 0.1, 0.001);
  return {
    rate: o.rate,
    calls: o.calls,
    successful,
    failed: Math.max(failedSeen, o.calls - successful),
    uacs: procs.length,
    wallSeconds,
    achievedRate: answerRate(answeredAt) ?? successful / window,
    ringingMs,
    answeredMs,
    pcap,
    hops,
    pcapNote,
    stats,
    firstErrors,
    exitCodes: exits.map((e) => e.code),
  };
}
