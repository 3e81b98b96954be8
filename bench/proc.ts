import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import * as net from 'node:net';
import * as dgram from 'node:dgram';
import { basename } from 'node:path';
import { pino } from 'pino';
import { NativeProcess } from '../lib/stack/native-process';

/** Benchmark plumbing: processes by PID, CPU from /proc, free ports, SIPp runs. */

const CLK_TCK = 100;

/** utime + stime of one process, in microseconds (/proc/<pid>/stat fields 14 and 15). */
export function cpuMicros(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1_000_000) / CLK_TCK;
}

/** A process and every descendant (Kamailio forks its workers). */
export function processTree(root: number): number[] {
  const parent = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      parent.set(Number(d), Number(fields[1]));
    } catch {
      // the process ended while we looked
    }
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) for (const [pid, ppid] of parent) if (ppid === out[i]) out.push(pid);
  return out;
}

export function treeCpuMicros(root: number): number {
  let sum = 0;
  for (const pid of processTree(root)) {
    try {
      sum += cpuMicros(pid);
    } catch {
      // ended
    }
  }
  return sum;
}

/**
 * CPU of this process's reaped children (cutime + cstime, /proc/self/stat fields 16 and 17), in
 * microseconds: a SIPp run wrapped in coreutils `timeout` lands here once both have exited.
 */
export function reapedChildrenCpuMicros(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[13]) + Number(fields[14])) * 1_000_000) / CLK_TCK;
}

/** The whole machine's CPU time from /proc/stat, in microseconds: busy (not idle or iowait) and total. */
export function machineCpuMicros(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.slice(0, 8).reduce((a, b) => a + (Number.isFinite(b) ? b : 0), 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: ((total - idle) * 1_000_000) / CLK_TCK, total: (total * 1_000_000) / CLK_TCK };
}

/** Resident memory of one process, kilobytes (/proc/<pid>/status VmRSS). */
export function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

async function udpFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.once('error', () => resolve(false));
    s.bind(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

async function tcpFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** Distinct ports on 127.0.0.1 free for both UDP and TCP, picked at random in [low, high]. */
export async function freePorts(n: number, low = 20000, high = 59999): Promise<number[]> {
  const out: number[] = [];
  for (let tries = 0; out.length < n; tries++) {
    if (tries > 50 * n + 1000) throw new Error(`fewer than ${n} free ports in ${low}-${high}`);
    const p = low + Math.floor(Math.random() * (high - low + 1));
    if (out.includes(p)) continue;
    if ((await udpFree(p)) && (await tcpFree(p))) out.push(p);
  }
  return out;
}

export interface Proc {
  readonly pid: number;
  /** What the process printed (its last lines, stdout and stderr interleaved). */
  output(): string;
  stop(): Promise<void>;
}

const quiet = pino({ level: 'silent' });

/**
 * Starts a process with lib/stack's NativeProcess (own process group, stopped by PID: SIGTERM,
 * then SIGKILL after 5 s); resolves once `ready(output)` holds, rejects when it exits first or
 * after timeoutMs.
 */
export async function start(cmd: string, args: string[], ready: (out: string) => boolean, timeoutMs = 15000): Promise<Proc> {
  const p = await NativeProcess.start({
    name: basename(cmd),
    command: cmd,
    args,
    logger: quiet,
    readyTimeoutMs: timeoutMs,
    ready: (proc) =>
      new Promise<void>((resolve) => {
        const check = (): boolean => ready(proc.output().join('\n'));
        if (check()) return resolve();
        const onLine = (): void => {
          if (!check()) return;
          proc.off('line', onLine);
          resolve();
        };
        proc.on('line', onLine);
      }),
  });
  return {
    pid: p.pid,
    output: () => p.output().join('\n'),
    stop: async () => {
      await p.stop();
    },
  };
}

/** Waits until something listens on a UDP port (SIPp UAS, Kamailio), from /proc/net/udp. */
export async function waitUdpBound(port: number, timeoutMs = 10000): Promise<void> {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const table = readFileSync('/proc/net/udp', 'utf8');
    if (table.includes(`:${hex} 00000000:0000`)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`nothing bound UDP port ${port} within ${timeoutMs} ms`);
}

export interface SippRun {
  code: number | null;
  seconds: number;
  successful: number;
  failed: number;
}

/** Runs a SIPp UAC to completion, bounded by coreutils `timeout`. */
export function runSippUac(scenario: string, target: string, localPort: number, rate: number, calls: number, holdMs: number, limitSec: number): Promise<SippRun> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const args = [
      '-k', '5', String(limitSec + 10), 'sipp', '-sf', scenario, target, '-i', '127.0.0.1', '-p', String(localPort),
      '-r', String(rate), '-rp', '1000', '-m', String(calls), '-d', String(holdMs), '-s', 'bench', '-nostdin',
      '-timeout', `${limitSec}s`, '-timeout_error', '-max_socket', '65000', '-l', String(Math.max(rate * 4, 100)),
    ];
    const child = spawn('timeout', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => {
      out = (out + b.toString()).slice(-20000);
    });
    child.stderr.on('data', (b: Buffer) => {
      out = (out + b.toString()).slice(-20000);
    });
    child.on('exit', (code) => {
      const num = (label: string): number => {
        const m = new RegExp(`${label}\\s*\\|\\s*(\\d+)\\s*\\|\\s*(\\d+)`).exec(out);
        return m ? Number(m[2]) : 0;
      };
      resolve({ code, seconds: (Date.now() - t0) / 1000, successful: num('Successful call'), failed: num('Failed call') });
    });
  });
}
