// Running SIPp (Debian package sip-tester, binary `sipp`) from tests.
//
// Every run is wrapped in coreutils `timeout` and given `-m`, because a SIPp waiting for a
// message that never comes can otherwise hang forever (NATIVE-STACK.md). Each run gets its own
// temporary directory for the error, message, log and statistics traces; their contents are
// returned in the result and the directory is removed.
//
// SIPp exits 0 when every call succeeded, 1 when at least one failed, and anything else on a
// fatal error (bad scenario, cannot bind, ...). `timeout` exits 124 when it had to stop SIPp.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { freePorts, waitForListener } from './ports';

export type SipTransport = 'udp' | 'tcp';

/** Where the project's SIPp scenarios live (test/scenarios). */
export const SCENARIO_DIR = resolve(__dirname, '..', 'scenarios');

export interface SippOptions {
  /** A scenario name in test/scenarios ('uac-call') or a path to an XML file. */
  scenario: string;
  /** Remote `host:port` (required for UACs; UASes answer whoever calls). */
  remote?: string;
  /** 'udp' (-t u1, the default) or 'tcp' (-t t1). */
  transport?: SipTransport;
  /** Local IP (-i), default 127.0.0.1. */
  localIp?: string;
  /** Local SIP port (-p); a free one is picked when omitted. */
  localPort?: number;
  /** Number of calls before SIPp exits (-m), default 1. */
  calls?: number;
  /** Call rate (-r) per ratePeriodMs (-rp). */
  rate?: number;
  ratePeriodMs?: number;
  /** Duration of argument-less <pause/> elements (-d), e.g. how long a UAC holds before BYE. */
  holdMs?: number;
  /** Generic keywords (-key name value), used as [name] in messages. */
  keys?: Record<string, string>;
  /** User part of the request URI (-s), default 'service'. */
  service?: string;
  /** Local RTP echo port (-mp). SIPp finds a free one itself when omitted. */
  mediaPort?: number;
  /** Per-message receive timeout (-recv_timeout), default 10000 ms; a scenario's own timeout="" wins. */
  recvTimeoutMs?: number;
  /** Hard limit for the whole run, enforced by coreutils timeout (default 30 s). */
  timeoutSec?: number;
  /** Write and return the message trace (-trace_msg), default true. */
  traceMessages?: boolean;
  /** Write and parse the statistics CSV (-trace_stat), default false. */
  traceStat?: boolean;
  /** Keep the trace directory instead of removing it (its path is in the result). */
  keepTraceDir?: boolean;
  /** Anything else, appended before the remote address. */
  extraArgs?: string[];
}

export interface SippMessage {
  direction: 'sent' | 'received';
  transport: string;
  /** Timestamp as SIPp printed it. */
  time: string;
  firstLine: string;
  /** Request method, when a request. */
  method?: string;
  /** Status code, when a response. */
  status?: number;
  /** Method named in CSeq. */
  cseqMethod?: string;
  headers: Array<[string, string]>;
  body: string;
  /** The whole message as traced. */
  text: string;
}

export interface SippResult {
  scenario: string;
  transport: SipTransport;
  localPort: number;
  args: string[];
  /** Exit code of `timeout`/SIPp; null when killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when coreutils timeout had to stop SIPp (exit 124 or 137). */
  timedOut: boolean;
  durationMs: number;
  stdout: string;
  stderr: string;
  /** Contents of the error trace (-trace_err). */
  errors: string;
  /** Contents of the message trace (-trace_msg), '' when disabled. */
  messages: string;
  /** Parsed message trace. */
  trace: SippMessage[];
  /** Contents of the <log> action trace (-trace_logs). */
  logs: string;
  /** Cumulative successful / failed calls from SIPp's final screen or statistics CSV; -1 when unknown. */
  successful: number;
  failed: number;
  /** Set when keepTraceDir was asked for. */
  traceDir?: string;
}

export interface SippHandle {
  pid: number;
  localPort: number;
  transport: SipTransport;
  /** Settles when SIPp exits (it never rejects). */
  done: Promise<SippResult>;
  /** SIGTERM to the process group, SIGKILL after 5 s; resolves once it has exited. */
  stop(): Promise<void>;
  /**
   * Lets SIPp finish on its own for up to timeoutMs (default 5 s), stops it if it has not, and
   * resolves with the result either way.
   */
  finish(timeoutMs?: number): Promise<SippResult>;
}

interface Launched extends SippHandle {
  exitReason(): string | undefined;
}

function scenarioPath(scenario: string): string {
  const path = scenario.endsWith('.xml') || scenario.includes('/')
    ? (isAbsolute(scenario) ? scenario : resolve(scenario))
    : join(SCENARIO_DIR, `${scenario}.xml`);
  if (!existsSync(path)) throw new Error(`SIPp scenario not found: ${path}`);
  return path;
}

async function readIfPresent(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return '';
  }
}

function lastCount(stdout: string, label: string): number {
  const pattern = new RegExp(`${label}\\s*\\|\\s*\\d+\\s*\\|\\s*(\\d+)`, 'g');
  let value = -1;
  for (const match of stdout.matchAll(pattern)) value = Number(match[1]);
  return value;
}

function countsFromStatCsv(csv: string): { successful: number; failed: number } {
  const lines = csv.split('\n').filter((line) => line.trim() !== '');
  const header = lines[0]?.split(';') ?? [];
  const last = lines.length > 1 ? lines[lines.length - 1]?.split(';') ?? [] : [];
  const pick = (name: string): number => {
    const index = header.indexOf(name);
    const value = index >= 0 ? Number(last[index]) : NaN;
    return Number.isFinite(value) ? value : -1;
  };
  return { successful: pick('SuccessfulCall(C)'), failed: pick('FailedCall(C)') };
}

const TRACE_SEPARATOR = /^-{20,}\s+(\S+ \S+)\s*$/;
const TRACE_HEADING = /^(UDP|TCP|TLS|SCTP) message (sent|received)/;

/** Splits a SIPp -trace_msg file into messages. */
export function parseSippMessages(trace: string): SippMessage[] {
  const messages: SippMessage[] = [];
  const lines = trace.split(/\r?\n/);
  let index = 0;
  while (index < lines.length) {
    const separator = TRACE_SEPARATOR.exec(lines[index] ?? '');
    if (!separator) {
      index += 1;
      continue;
    }
    const time = separator[1] ?? '';
    const heading = TRACE_HEADING.exec(lines[index + 1] ?? '');
    index += 2;
    const block: string[] = [];
    while (index < lines.length && !TRACE_SEPARATOR.test(lines[index] ?? '')) {
      block.push(lines[index] ?? '');
      index += 1;
    }
    if (!heading) continue;
    while (block.length > 0 && block[0]?.trim() === '') block.shift();
    const blank = block.findIndex((line) => line.trim() === '');
    const headLines = blank >= 0 ? block.slice(0, blank) : block;
    const body = blank >= 0 ? block.slice(blank + 1).join('\r\n').replace(/\s+$/, '') : '';
    const firstLine = headLines[0] ?? '';
    const headers: Array<[string, string]> = [];
    for (const line of headLines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon > 0) headers.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()]);
    }
    const message: SippMessage = {
      direction: heading[2] === 'sent' ? 'sent' : 'received',
      transport: heading[1] ?? '',
      time,
      firstLine,
      headers,
      body,
      text: block.join('\n'),
    };
    const statusMatch = /^SIP\/2\.0\s+(\d{3})/.exec(firstLine);
    if (statusMatch) message.status = Number(statusMatch[1]);
    else message.method = firstLine.split(' ')[0];
    const cseq = headers.find(([name]) => name.toLowerCase() === 'cseq')?.[1];
    if (cseq) message.cseqMethod = cseq.split(/\s+/)[1];
    messages.push(message);
  }
  return messages;
}

/** The value of the first header called `name` (case-insensitive) in a traced message. */
export function sippHeader(message: SippMessage, name: string): string | undefined {
  const wanted = name.toLowerCase();
  return message.headers.find(([header]) => header.toLowerCase() === wanted)?.[1];
}

/** Messages SIPp received, optionally only responses with `status` or requests of `method`. */
export function received(result: SippResult, match?: { status?: number; method?: string; cseqMethod?: string }): SippMessage[] {
  return result.trace.filter((message) => message.direction === 'received'
    && (match?.status === undefined || message.status === match.status)
    && (match?.method === undefined || message.method === match.method)
    && (match?.cseqMethod === undefined || message.cseqMethod === match.cseqMethod));
}

function tail(text: string, lines: number): string {
  const all = text.trimEnd().split('\n');
  return all.slice(Math.max(0, all.length - lines)).join('\n');
}

/** A multi-line summary of a run for assertion messages: exit, counts, traces, message flow. */
export function describeSipp(result: SippResult): string {
  const flow = result.trace.map((message) => {
    const arrow = message.direction === 'sent' ? '-->' : '<--';
    const what = message.status !== undefined ? `${message.firstLine} (${message.cseqMethod ?? '?'})` : message.firstLine;
    return `  ${message.time} ${arrow} ${what}`;
  });
  const parts = [
    `sipp ${result.scenario} over ${result.transport} on port ${result.localPort}: exit ${result.code ?? result.signal}`
      + `${result.timedOut ? ' (stopped by timeout)' : ''}, successful=${result.successful}, failed=${result.failed}`,
    `  args: ${result.args.join(' ')}`,
  ];
  if (flow.length > 0) parts.push('message flow:', ...flow);
  if (result.logs.trim()) parts.push('scenario log:', tail(result.logs, 20));
  if (result.errors.trim()) parts.push('error trace:', tail(result.errors, 20));
  if (result.stderr.trim()) parts.push('stderr:', tail(result.stderr, 20));
  return parts.join('\n');
}

async function launch(options: SippOptions): Promise<Launched> {
  const scenarioFile = scenarioPath(options.scenario);
  const transport = options.transport ?? 'udp';
  const localIp = options.localIp ?? '127.0.0.1';
  const localPort = options.localPort ?? (await freePorts(1))[0];
  if (localPort === undefined) throw new Error('startSipp: no local port');
  const timeoutSec = options.timeoutSec ?? 30;
  const traceMessages = options.traceMessages ?? true;
  const dir = await mkdtemp(join(tmpdir(), 'sipp-'));
  const files = {
    errors: join(dir, 'errors.log'),
    messages: join(dir, 'messages.log'),
    logs: join(dir, 'logs.log'),
    stat: join(dir, 'stat.csv'),
  };

  const sippArgs = [
    '-sf', scenarioFile,
    '-t', transport === 'tcp' ? 't1' : 'u1',
    '-i', localIp,
    '-p', String(localPort),
    '-m', String(options.calls ?? 1),
    '-s', options.service ?? 'service',
    '-recv_timeout', String(options.recvTimeoutMs ?? 10000),
    '-nostdin',
    '-trace_err', '-error_file', files.errors,
    '-trace_logs', '-log_file', files.logs,
  ];
  if (traceMessages) sippArgs.push('-trace_msg', '-message_file', files.messages);
  if (options.traceStat) sippArgs.push('-trace_stat', '-stf', files.stat);
  if (options.holdMs !== undefined) sippArgs.push('-d', String(options.holdMs));
  if (options.rate !== undefined) sippArgs.push('-r', String(options.rate));
  if (options.ratePeriodMs !== undefined) sippArgs.push('-rp', String(options.ratePeriodMs));
  if (options.mediaPort !== undefined) sippArgs.push('-mp', String(options.mediaPort));
  for (const [key, value] of Object.entries(options.keys ?? {})) sippArgs.push('-key', key, value);
  sippArgs.push(...(options.extraArgs ?? []));
  if (options.remote) sippArgs.push(options.remote);

  const args = ['--kill-after=5', String(timeoutSec), 'sipp', ...sippArgs];
  const started = Date.now();
  // detached: the child leads its own process group, so stop() reaches timeout and SIPp together.
  const child = spawn('timeout', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const pid = child.pid;
  if (pid === undefined) {
    await rm(dir, { recursive: true, force: true });
    throw new Error('startSipp: could not spawn timeout/sipp');
  }
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => { stdout += chunk; });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });

  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const done = new Promise<SippResult>((resolveDone) => {
    const collect = async (code: number | null, signal: NodeJS.Signals | null): Promise<void> => {
      exited = { code, signal };
      const [errors, messages, logs, stat] = await Promise.all([
        readIfPresent(files.errors),
        readIfPresent(files.messages),
        readIfPresent(files.logs),
        readIfPresent(files.stat),
      ]);
      let successful = lastCount(stdout, 'Successful call');
      let failed = lastCount(stdout, 'Failed call');
      if ((successful < 0 || failed < 0) && stat) ({ successful, failed } = countsFromStatCsv(stat));
      const result: SippResult = {
        scenario: options.scenario,
        transport,
        localPort,
        args: ['timeout', ...args],
        code,
        signal,
        timedOut: code === 124 || code === 137,
        durationMs: Date.now() - started,
        stdout,
        stderr,
        errors,
        messages,
        trace: parseSippMessages(messages),
        logs,
        successful,
        failed,
      };
      if (options.keepTraceDir) result.traceDir = dir;
      else await rm(dir, { recursive: true, force: true });
      resolveDone(result);
    };
    child.once('close', (code, signal) => { void collect(code, signal); });
    child.once('error', (err) => {
      stderr += `\nspawn error: ${err.message}`;
      void collect(null, null);
    });
  });

  const signalGroup = (signal: NodeJS.Signals): void => {
    try {
      process.kill(-pid, signal);
    } catch {
      // Already gone.
    }
  };

  const stop = async (): Promise<void> => {
    if (exited) {
      await done;
      return;
    }
    signalGroup('SIGTERM');
    const killTimer = setTimeout(() => signalGroup('SIGKILL'), 5000);
    await done;
    clearTimeout(killTimer);
  };

  return {
    pid,
    localPort,
    transport,
    done,
    stop,
    async finish(timeoutMs = 5000) {
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<'expired'>((resolveExpired) => {
        timer = setTimeout(() => resolveExpired('expired'), timeoutMs);
      });
      const first = await Promise.race([done, expired]);
      clearTimeout(timer);
      if (first === 'expired') await stop();
      return done;
    },
    exitReason() {
      return exited ? `sipp exited (code ${exited.code ?? exited.signal}) before binding` : undefined;
    },
  };
}

/** Runs SIPp to completion (typically a UAC) and returns what it did. Never rejects on SIPp failures. */
export async function runSipp(options: SippOptions): Promise<SippResult> {
  const launched = await launch(options);
  return launched.done;
}

/**
 * Starts SIPp in the background (typically a UAS) and resolves once its SIP port is bound, so a
 * UAC started afterwards cannot race it. Rejects, with SIPp's output, if it exits first.
 */
export async function startSipp(options: SippOptions): Promise<SippHandle> {
  const launched = await launch(options);
  try {
    await waitForListener(launched.localPort, launched.transport, { timeoutMs: 5000, abort: launched.exitReason });
  } catch (err) {
    await launched.stop();
    const result = await launched.done;
    throw new Error(`${(err as Error).message}\n${describeSipp(result)}`);
  }
  const { pid, localPort, transport, done, stop, finish } = launched;
  return { pid, localPort, transport, done, stop, finish };
}

/**
 * Starts a background SIPp (see startSipp), runs `body` with it, then lets it finish (see
 * SippHandle.finish) and resolves with its result. When `body` throws, SIPp is given a short
 * grace period and the error is rethrown with SIPp's summary appended.
 */
export async function withSipp(
  options: SippOptions,
  body: (sipp: SippHandle) => Promise<void>,
  finishTimeoutMs = 5000,
): Promise<SippResult> {
  const sipp = await startSipp(options);
  try {
    await body(sipp);
  } catch (err) {
    const result = await sipp.finish(1000);
    if (err instanceof Error) {
      err.message = `${err.message}\n--- background SIPp ---\n${describeSipp(result)}`;
      throw err;
    }
    throw new Error(`${String(err)}\n--- background SIPp ---\n${describeSipp(result)}`);
  }
  return sipp.finish(finishTimeoutMs);
}
