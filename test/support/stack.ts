// The whole native stack for integration tests: Kamailio, RTPEngine, the engine and the B2BUA on
// free loopback ports, started by lib/stack (as `npm start` does) with supervision off so a dying
// process fails the test. Phones are SIPp instances registered through Kamailio.
//
// Addresses: phones and Kamailio on 127.0.0.1, the engine's SIP side on 127.0.0.2 (the address
// Kamailio trusts), RTPEngine's media on 127.0.0.3 so a test can tell relayed media from direct.

import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import type { StackConfig } from '../../lib/config/stack-config';
import type { CallRecordJson } from '../../lib/operator/api-schemas';
import { ExtensionStore } from '../../lib/extensions';
import { Stack } from '../../lib/stack/stack';
import { bdecode, bencode, type BValue } from './bencode';
import { freePortRange, freePorts, releasePorts } from './ports';
import { runSipp, startSipp, type SipTransport, type SippHandle, type SippOptions, type SippResult } from './sipp';
import type { TapTest } from './engine-harness';
import { waitUntil } from './wait';

export const PHONE_IP = '127.0.0.1';
export const ENGINE_IP = '127.0.0.2';
export const MEDIA_IP = '127.0.0.3';

export interface TestStackOptions {
  media?: 'rtpengine' | 'off';
  /** Extra B2BUA settings (NO_ANSWER_TIMEOUT, MAX_CALLS, ...). */
  b2buaEnv?: Record<string, string>;
  extensions?: readonly string[];
  antiflood?: boolean;
  /** Restart a child that dies, as `npm start` does (default off: a dying process fails the test). */
  supervise?: boolean;
}

export interface ApiAnswer {
  status: number;
  body: unknown;
}

export interface TestStack {
  readonly stack: Stack;
  readonly config: StackConfig;
  /** Kamailio as phones reach it: "127.0.0.1:port". */
  readonly sip: string;
  readonly domain: string;
  readonly passwords: Readonly<Record<string, string>>;
  readonly adminToken: string;
  readonly readToken: string;
  readonly operatorPort: number;
  /** GET/POST on the B2BUA's operator endpoint with a bearer token (admin by default). */
  api(path: string, options?: { method?: 'GET' | 'POST'; token?: string | null }): Promise<ApiAnswer>;
  /** The engine's /status JSON. */
  engineStatus(): Promise<Record<string, unknown>>;
  /** The engine's capture of one Call-ID (every SIP message both ways). */
  engineCapture(callId: string): Promise<Array<{ dir: 'in' | 'out'; peer: string; text: string }>>;
  /** Call-IDs RTPEngine holds (NG `list`). */
  rtpengineCalls(): Promise<string[]>;
  /** The B2BUA's JSON log lines so far. */
  b2buaLog(): Array<Record<string, unknown>>;
  /** Resolves once no call is held anywhere: B2BUA sessions, engine dialogs, RTPEngine calls. */
  settled(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

const DEFAULT_EXTENSIONS = ['6001', '6002', '6003', '6004'];

function quietLogger(): Logger {
  return pino({ level: process.env.TEST_STACK_LOG ?? 'warn' });
}

function ngRequest(port: number, command: Record<string, BValue>, timeoutMs = 2000): Promise<Record<string, BValue>> {
  return new Promise((resolve, reject) => {
    const sock = createSocket('udp4');
    const cookie = randomBytes(6).toString('hex');
    const timer = setTimeout(() => {
      sock.close();
      reject(new Error(`RTPEngine NG ${String(command.command)}: no answer in ${timeoutMs} ms`));
    }, timeoutMs);
    sock.on('message', (msg) => {
      const text = msg.toString('latin1');
      if (!text.startsWith(`${cookie} `)) return;
      clearTimeout(timer);
      sock.close();
      resolve(bdecode(msg, cookie.length + 1).value as Record<string, BValue>);
    });
    sock.send(Buffer.concat([Buffer.from(`${cookie} `), bencode(command)]), port, '127.0.0.1');
  });
}

export async function startTestStack(options: TestStackOptions = {}): Promise<TestStack> {
  const varDir = mkdtempSync(join(tmpdir(), 'b2bua-stack-'));
  const [sipPort, engineSipPort, wirePort, statusPort, ngPort, operatorPort] = await freePorts(6);
  const range = await freePortRange(200);
  const ports = [sipPort, engineSipPort, wirePort, statusPort, ngPort, operatorPort] as number[];
  const media = options.media ?? 'rtpengine';
  const domain = PHONE_IP;
  const config: StackConfig = {
    sip: { address: PHONE_IP, port: sipPort as number, advertised: undefined, domain },
    engine: { sipAddress: ENGINE_IP, sipPort: engineSipPort as number, wireAddress: '127.0.0.1', wirePort: wirePort as number, statusPort: statusPort as number },
    rtpengine: { ngPort: ngPort as number, portMin: range.first, portMax: range.last, mediaAddress: MEDIA_IP },
    media,
    varDir,
    antiflood: options.antiflood ? { density: 64 } : undefined,
  };
  const passwords: Record<string, string> = {};
  const store = ExtensionStore.open(join(varDir, 'kamailio.sqlite'));
  try {
    for (const ext of options.extensions ?? DEFAULT_EXTENSIONS) {
      passwords[ext] = `pw-${ext}-${randomBytes(4).toString('hex')}`;
      store.addExtension(ext, passwords[ext], domain);
    }
  } finally {
    store.close();
  }
  const adminToken = randomBytes(16).toString('hex');
  const readToken = randomBytes(16).toString('hex');
  const secret = randomBytes(12).toString('hex');
  const stack = await Stack.start({
    config,
    secret,
    b2buaEnv: {
      LOG_LEVEL: 'debug',
      OPERATOR_PORT: String(operatorPort),
      OPERATOR_ADMIN_TOKENS: adminToken,
      OPERATOR_TOKENS: readToken,
      SHUTDOWN_TIMEOUT: '5',
      B2BUA_INSTANCE: 'test-b2bua',
      ...(options.b2buaEnv ?? {}),
    },
    logger: quietLogger(),
    supervise: options.supervise ?? false,
    engineArgs: ['--sip-t1', '100'],
  });

  const api = async (path: string, opts: { method?: 'GET' | 'POST'; token?: string | null } = {}): Promise<ApiAnswer> => {
    const token = opts.token === undefined ? adminToken : opts.token;
    const res = await fetch(`http://127.0.0.1:${operatorPort}${path}`, {
      method: opts.method ?? 'GET',
      headers: token === null ? {} : { authorization: `Bearer ${token}` },
    });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { status: res.status, body };
  };
  const engineStatus = async (): Promise<Record<string, unknown>> => {
    const res = await fetch(`http://127.0.0.1:${statusPort}/status`);
    return (await res.json()) as Record<string, unknown>;
  };
  const rtpengineCalls = async (): Promise<string[]> => {
    if (media === 'off') return [];
    const reply = await ngRequest(ngPort as number, { command: 'list' });
    const calls = reply.calls;
    return Array.isArray(calls) ? calls.map(String) : [];
  };
  // The B2BUA's JSON lines as its supervisor reads them from the pipe (its log file is written in
  // 100 ms batches, so reading the file right after an event would race). A supervised B2BUA that
  // was restarted is a new process: its lines are followed from the first look after the restart.
  const b2buaLines: string[] = [];
  const followed = new WeakSet<object>();
  const follow = (): void => {
    const proc = stack.process('b2bua');
    if (!proc || followed.has(proc)) return;
    followed.add(proc);
    b2buaLines.push(...proc.output());
    proc.on('line', (line) => b2buaLines.push(line));
  };
  follow();
  const b2buaLog = (): Array<Record<string, unknown>> => {
    follow();
    const out: Array<Record<string, unknown>> = [];
    for (const line of b2buaLines) {
      if (!line.startsWith('{')) continue;
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not JSON
      }
    }
    return out;
  };
  /** "call ended" lines of the B2BUA process running now (a restarted one counts from zero again). */
  const callsEndedLogged = (): number => {
    const pid = stack.process('b2bua')?.pid;
    return b2buaLog().filter((l) => l.msg === 'call ended' && l.pid === pid).length;
  };
  /** b2bua_calls_total summed over its outcomes. */
  const callsEndedCounted = async (): Promise<number> => {
    const res = await fetch(`http://127.0.0.1:${operatorPort}/metrics`, { headers: { authorization: `Bearer ${readToken}` } });
    if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
    let sum = 0;
    for (const line of (await res.text()).split('\n')) if (line.startsWith('b2bua_calls_total{')) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    return sum;
  };
  return {
    stack,
    config,
    sip: `${PHONE_IP}:${sipPort}`,
    domain,
    passwords,
    adminToken,
    readToken,
    operatorPort: operatorPort as number,
    api,
    engineStatus,
    async engineCapture(callId: string) {
      const res = await fetch(`http://127.0.0.1:${statusPort}/capture/${encodeURIComponent(callId)}`);
      if (res.status !== 200) return [];
      const body = (await res.json()) as { messages?: Array<{ dir: 'in' | 'out'; peer: string; text: string }> };
      return body.messages ?? [];
    },
    rtpengineCalls,
    b2buaLog,
    async settled(timeoutMs = 10_000) {
      await waitUntil(
        async () => {
          const [status, sessions, calls] = await Promise.all([engineStatus(), api('/api/status'), rtpengineCalls()]);
          return { dialogs: status.dialogs, sessions: (sessions.body as { sessions?: number }).sessions, rtpengine: calls.length };
        },
        (v) => v.dialogs === 0 && v.sessions === 0 && v.rtpengine === 0,
        { timeoutMs, description: 'no dialog in the engine, no session in the B2BUA, no call in RTPEngine' },
      );
      // The B2BUA writes its log in 10 ms batches, so "no session" can be seen before the last
      // "call ended" line arrives. Each call it counts in b2bua_calls_total has logged that line
      // first (the session logs its end, then the service's 'call-end' counts it).
      await waitUntil(
        async () => ({ logged: callsEndedLogged(), counted: await callsEndedCounted() }),
        (v) => v.logged >= v.counted,
        { timeoutMs, description: 'every call the B2BUA ended has its "call ended" line' },
      );
    },
    async stop() {
      await stack.stop();
      releasePorts(ports);
      releasePorts(Array.from({ length: range.last - range.first + 1 }, (_, i) => range.first + i));
      if (!process.env.TEST_KEEP_VAR) rmSync(varDir, { recursive: true, force: true });
    },
  };
}

export interface PhoneOptions {
  transport?: SipTransport;
  keys?: Record<string, string>;
  holdMs?: number;
  extraArgs?: string[];
  timeoutSec?: number;
}

/** REGISTERs `ext` through Kamailio with its Contact at `contactPort` (a SIPp UAS). */
export async function register(s: TestStack, ext: string, contactPort: number, transport: SipTransport = 'udp', expires = 300): Promise<SippResult> {
  const result = await runSipp({
    scenario: 'kam-register',
    remote: s.sip,
    transport,
    service: ext,
    keys: { domain: s.domain, contact_host: PHONE_IP, contact_port: String(contactPort), expires: String(expires), status: '200' },
    extraArgs: ['-au', ext, '-ap', s.passwords[ext] ?? ''],
  });
  if (result.code !== 0) throw new Error(`REGISTER ${ext} failed:\n${result.errors || result.stdout.slice(-1500)}`);
  return result;
}

/** A registered SIPp phone; `finish()` also removes its registration so the next test starts clean. */
export interface Callee extends SippHandle {
  readonly extension: string;
}

/** Starts a SIPp UAS running `scenario` as extension `ext` and registers it. */
export async function startCallee(s: TestStack, ext: string, scenario: string, options: PhoneOptions = {}): Promise<Callee> {
  const transport = options.transport ?? 'udp';
  const sippOptions: SippOptions = {
    scenario,
    transport,
    keys: { caller: ext, ...(options.keys ?? {}) },
    holdMs: options.holdMs,
    timeoutSec: options.timeoutSec ?? 30,
    extraArgs: ['-rtp_echo', ...(options.extraArgs ?? [])],
  };
  const uas = await startSipp(sippOptions);
  try {
    await register(s, ext, uas.localPort, transport);
  } catch (err) {
    await uas.stop();
    throw err;
  }
  const unregister = (): Promise<unknown> => register(s, ext, uas.localPort, transport, 0).catch(() => undefined);
  return {
    ...uas,
    extension: ext,
    async finish(timeoutMs?: number) {
      const result = await uas.finish(timeoutMs);
      await unregister();
      return result;
    },
    async stop() {
      await uas.stop();
      await unregister();
    },
  };
}

/** Runs a SIPp phone `ext` calling `target` through Kamailio with digest credentials. */
export function call(s: TestStack, ext: string, target: string, scenario: string, options: PhoneOptions = {}): Promise<SippResult> {
  return runSipp({
    scenario,
    remote: s.sip,
    transport: options.transport ?? 'udp',
    service: target,
    holdMs: options.holdMs ?? 200,
    keys: { caller: ext, ...(options.keys ?? {}) },
    timeoutSec: options.timeoutSec ?? 30,
    extraArgs: ['-au', ext, '-ap', s.passwords[ext] ?? '', ...(options.extraArgs ?? [])],
  });
}

/** Asserts a SIPp run succeeded, quoting its error trace when it did not. */
export function expectSippOk(tt: TapTest, r: SippResult, label: string): void {
  tt.equal(r.code, 0, `${label} succeeded${r.code === 0 ? '' : `:\n${r.errors || r.stdout.slice(-2000)}`}`);
}

/** The hooks of a tap test object (the root `t` of a file) that a shared stack needs. */
interface SuiteHooks {
  before(fn: () => Promise<void>): void;
  teardown(fn: () => Promise<void>): void;
  afterEach(fn: () => Promise<void>): void;
}

/**
 * One stack for a whole test file: started before the first test, stopped at the end, and
 * after every test the file waits until nothing is held anywhere (`settled()`). Returns a getter.
 */
export function stackSuite(t: SuiteHooks, options: TestStackOptions = {}): () => TestStack {
  let s: TestStack | undefined;
  t.before(async () => {
    s = await startTestStack(options);
  });
  t.teardown(async () => {
    await s?.stop();
  });
  t.afterEach(async () => {
    await s?.settled();
  });
  return () => {
    if (!s) throw new Error('the test stack is not started');
    return s;
  };
}

export interface CallView {
  call: CallRecordJson;
  messages: Array<{ leg: 'a' | 'b'; at: string; dir: 'in' | 'out'; transport: string; peer: string; local: string; text: string }>;
  truncated: boolean;
}

/**
 * A call as the operator API shows it once its record is final: outcome set, no longer live, and
 * (unless `messages: false`) its SIP messages there. `key` is the call id or either Call-ID.
 */
export async function finalCall(s: TestStack, key: string, options: { messages?: boolean; timeoutMs?: number } = {}): Promise<CallView> {
  const wantMessages = options.messages ?? true;
  const r = await waitUntil(
    () => s.api(`/api/calls/${encodeURIComponent(key)}`, { token: s.readToken }),
    (a) => {
      if (a.status !== 200) return false;
      const v = a.body as CallView;
      return v.call.outcome !== null && !v.call.live && (!wantMessages || v.messages.length > 0);
    },
    { timeoutMs: options.timeoutMs ?? 10_000, description: `the final record of call ${key}` },
  );
  return r.body as CallView;
}

/** The first line of each SIP message of one leg, e.g. "INVITE" or "200 INVITE" (status and CSeq method). */
export function ladderOf(v: CallView, leg: 'a' | 'b'): string[] {
  return v.messages
    .filter((m) => m.leg === leg)
    .map((m) => {
      const first = m.text.slice(0, m.text.indexOf('\r\n'));
      const cseq = /^CSeq:\s*\d+\s+(\S+)/im.exec(m.text)?.[1] ?? '';
      const status = /^SIP\/2\.0 (\d{3})/.exec(first)?.[1];
      return status ? `${status} ${cseq}` : first.split(' ')[0] ?? '';
    });
}
