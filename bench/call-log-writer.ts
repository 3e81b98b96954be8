/**
 * Call-log writer benchmark (not a test): what the call log costs the B2BUA per call, in process.
 *
 *   npx tsc -p tsconfig.build.json
 *   node dist/bench/call-log-writer.js [--calls 2000] [--rate 100] [--warmup 300] [--hold-ms 100]
 *        [--grace-ms 1000] [--messages 28] [--message-bytes 600] [--capture http|fake]
 *        [--variants on,off] [--flush-ms 50]
 *
 * A CallLogWriter follows a stand-in B2buaService through `--calls` synthetic calls started at
 * `--rate` calls/s, each going received -> proceeding -> (B-leg Call-ID) -> early -> answered ->
 * (hold) -> ending -> ended -> call-end, as CallSession reports them. Variant `on` writes a real
 * SqliteCallStore in a temporary directory, opened as the B2BUA opens it (WAL checkpoints on a
 * worker thread), and, `--grace-ms` after each end, reads the call's SIP messages (`--messages`
 * of about `--message-bytes` bytes, half per leg) from a capture source: `http` is the real
 * EngineCapture against a stand-in engine /captures endpoint served by a child process (so its
 * serving costs are not counted here), `fake` an in-process CaptureSource. Variant `off` is
 * CALL_LOG=off. After `--warmup` unmeasured calls, each variant reports the process's CPU
 * (process.cpuUsage, all threads) per call until the last call's final event, the event loop's
 * delay (perf_hooks.monitorEventLoopDelay, 1 ms resolution: p99 and max of how late a timer
 * fired), how long each store call ran synchronously and each write transaction took. The call
 * log's cost is `on` minus `off`. On a shared machine other loads stretch every job by the
 * clock: the run first times 1 ms of pure CPU work and prints that too, the floor under those
 * figures. Results go to bench/results/call-log-writer-<date>.json.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import * as path from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { pino } from 'pino';
import type { B2buaService } from '../lib/b2bua/b2bua-service';
import { CallLogWriter, DEFAULT_FLUSH_MS } from '../lib/b2bua/call-log-writer';
import type { CallSummary } from '../lib/b2bua/call-session';
import type { CallState } from '../lib/b2bua/call-state';
import { EngineCapture, type CaptureSource } from '../lib/b2bua/engine-capture';
import type { CallStore, StoredSipMessage } from '../lib/call-log/call-record';
import { SqliteCallStore } from '../lib/call-log/sqlite-store';

// ---------------------------------------------------------------------------------------------
// Settings

interface Settings {
  calls: number;
  rate: number;
  warmup: number;
  holdMs: number;
  graceMs: number;
  messages: number;
  messageBytes: number;
  capture: 'http' | 'fake';
  variants: Array<'on' | 'off'>;
  /** The writer's window (CALL_LOG_FLUSH_MS). */
  flushMs: number;
}

function parseArgs(argv: readonly string[]): Settings {
  const s: Settings = { calls: 2000, rate: 100, warmup: 300, holdMs: 100, graceMs: 1000, messages: 28, messageBytes: 600, capture: 'http', variants: ['on', 'off'], flushMs: DEFAULT_FLUSH_MS };
  const int = (name: string, value: string | undefined, min: number): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw new Error(`${name} wants an integer >= ${min}, got ${JSON.stringify(value)}`);
    return n;
  };
  for (let i = 0; i < argv.length; i += 2) {
    const arg = argv[i];
    const value = argv[i + 1];
    switch (arg) {
      case '--calls':
        s.calls = int(arg, value, 1);
        break;
      case '--rate':
        s.rate = int(arg, value, 1);
        break;
      case '--warmup':
        s.warmup = int(arg, value, 0);
        break;
      case '--hold-ms':
        s.holdMs = int(arg, value, 0);
        break;
      case '--grace-ms':
        s.graceMs = int(arg, value, 0);
        break;
      case '--messages':
        s.messages = int(arg, value, 0);
        break;
      case '--message-bytes':
        s.messageBytes = int(arg, value, 50);
        break;
      case '--flush-ms':
        s.flushMs = int(arg, value, 0);
        break;
      case '--capture':
        if (value !== 'http' && value !== 'fake') throw new Error('--capture wants http or fake');
        s.capture = value;
        break;
      case '--variants': {
        const list = (value ?? '').split(',').filter((v) => v !== '');
        if (list.length === 0 || list.some((v) => v !== 'on' && v !== 'off')) throw new Error('--variants wants on, off or on,off');
        s.variants = list as Array<'on' | 'off'>;
        break;
      }
      default:
        throw new Error(`unknown argument ${JSON.stringify(arg)}; see the comment at the top of bench/call-log-writer.ts`);
    }
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// The calls' SIP messages, as the engine's capture would give them

/** One leg's captured messages in the engine's /captures JSON shape. */
function capturedLeg(callId: string, leg: 'a' | 'b', count: number, bytes: number, t0: number): Array<{ t: number; dir: string; transport: string; peer: string; local: string; text: string }> {
  const out = [];
  const methods = ['INVITE', 'SIP/2.0 100 Trying', 'SIP/2.0 180 Ringing', 'SIP/2.0 200 OK', 'ACK', 'BYE', 'SIP/2.0 200 OK'];
  for (let i = 0; i < count; i += 1) {
    const start = methods[i % methods.length]!;
    let text =
      `${start.startsWith('SIP/') ? start : `${start} sip:6002@127.0.0.1:5060 SIP/2.0`}\r\n` +
      `Via: SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bK-${leg}-${i}-${callId.slice(0, 8)}\r\n` +
      `From: "Alice" <sip:6001@127.0.0.1>;tag=${callId.slice(0, 10)}\r\nTo: <sip:6002@127.0.0.1>\r\n` +
      `Call-ID: ${callId}\r\nCSeq: ${i + 1} ${start.startsWith('SIP/') ? 'INVITE' : start}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n`;
    // Padding headers up to the size (each "X-Pad: " line carries 1..60 characters).
    while (text.length + 12 < bytes) text += `X-Pad: ${'x'.repeat(Math.min(60, bytes - text.length - 11))}\r\n`;
    out.push({ t: t0 + i * 3, dir: i % 2 === 0 ? 'in' : 'out', transport: 'udp', peer: '127.0.0.1:5060', local: '127.0.0.2:5080', text: `${text}\r\n` });
  }
  return out;
}

/** In-process stand-in for the engine's capture. */
class FakeCapture implements CaptureSource {
  constructor(
    readonly perLeg: number,
    readonly bytes: number,
  ) {}

  async messages(callId: string, leg: 'a' | 'b'): Promise<{ messages: StoredSipMessage[]; truncated: boolean }> {
    const messages = capturedLeg(callId, leg, this.perLeg, this.bytes, Date.now() - 2000).map((m) => ({
      leg,
      at: new Date(m.t),
      dir: m.dir as 'in' | 'out',
      transport: m.transport,
      peer: m.peer,
      local: m.local,
      text: m.text,
    }));
    return { messages, truncated: false };
  }
}

/** Child process mode: serves /captures?id=... on 127.0.0.1 like the engine's status endpoint (one JSON line per call). */
function serveCapture(perLeg: number, bytes: number): void {
  const server = http.createServer((req, res) => {
    const ids = new URL(req.url ?? '/', 'http://engine').searchParams.getAll('id');
    let body = '';
    for (const callId of ids) body += `${JSON.stringify({ callId, messages: capturedLeg(callId, callId.startsWith('b-') ? 'b' : 'a', perLeg, bytes, Date.now() - 2000), truncated: false })}\n`;
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    res.end(body);
  });
  server.listen(0, '127.0.0.1', () => process.send?.({ port: (server.address() as AddressInfo).port }));
  process.on('disconnect', () => process.exit(0));
}

async function startCaptureServer(perLeg: number, bytes: number): Promise<{ child: ChildProcess; url: string }> {
  const child = fork(__filename, ['--serve-capture', String(perLeg), String(bytes)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m) => resolve((m as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`capture server exited (${code})`)));
  });
  return { child, url: `http://127.0.0.1:${port}` };
}

// ---------------------------------------------------------------------------------------------
// Stand-ins for the B2BUA service and its sessions

class FakeSession extends EventEmitter {
  constructor(readonly summary: CallSummary) {
    super();
  }

  set(state: CallState): void {
    const prev = this.summary.state;
    this.summary.state = state;
    this.emit('state', state, prev);
  }
}

function summaryOf(n: number, variant: string): CallSummary {
  const id = `${variant}-${String(n).padStart(8, '0')}-4bbb-8ccc-${Date.now().toString(16).padStart(12, '0')}`;
  return {
    id,
    instance: 'bench',
    caller: { user: String(6000 + (n % 1000)), displayName: 'Alice Smith', address: '127.0.0.1', port: 5062 },
    callee: String(6000 + ((n * 7 + 1) % 1000)),
    aLeg: { callId: `a-${id}`, status: undefined, reason: undefined },
    bLeg: { callId: '', status: undefined, reason: undefined },
    state: 'received',
    receivedAt: new Date(),
    ringingAt: undefined,
    answeredAt: undefined,
    endedAt: undefined,
    outcome: undefined,
    hangupBy: undefined,
    media: undefined,
    transfers: [],
    bCallIds: [],
  };
}

/** One call through its states on timers (offsets as the chain shows them at low load). */
function runCall(service: EventEmitter, n: number, variant: string, holdMs: number): void {
  const session = new FakeSession(summaryOf(n, variant));
  const s = session.summary;
  service.emit('session', session);
  setTimeout(() => {
    session.set('proceeding');
    setTimeout(() => {
      s.bLeg.callId = `b-${s.id}`;
      s.bCallIds.push(s.bLeg.callId);
      setTimeout(() => {
        s.ringingAt = new Date();
        session.set('early');
        setTimeout(() => {
          s.answeredAt = new Date();
          s.aLeg.status = 200;
          s.aLeg.reason = 'OK';
          s.bLeg.status = 200;
          s.bLeg.reason = 'OK';
          session.set('answered');
          setTimeout(() => {
            s.hangupBy = 'caller';
            session.set('ending');
            setTimeout(() => {
              s.endedAt = new Date();
              s.outcome = 'answered';
              s.media = {
                callerToCallee: { packets: 5, bytes: 860, packetsLost: 0, jitterMs: 0, mos: 4.4 },
                calleeToCaller: { packets: 5, bytes: 860, packetsLost: 0, jitterMs: 0, mos: 4.4 },
                engine: '127.0.0.3:22222',
              };
              session.set('ended');
              service.emit('call-end', s);
            }, 2);
          }, holdMs);
        }, 5);
      }, 3);
    }, 1);
  }, 1);
}

// ---------------------------------------------------------------------------------------------
// Measuring

interface Distribution {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

function distribution(values: number[]): Distribution {
  if (values.length === 0) return { count: 0, p50: 0, p99: 0, max: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number): number => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
  const r = (x: number): number => Math.round(x * 1000) / 1000;
  return { count: sorted.length, p50: r(at(50)), p99: r(at(99)), max: r(sorted[sorted.length - 1]!) };
}

/** Times the synchronous part of every store call (all of it for SQLite, whose work is synchronous). */
function timedStore(store: CallStore, times: Map<string, number[]>): CallStore {
  return new Proxy(store, {
    get(target, prop, receiver) {
      const value: unknown = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function' || typeof prop !== 'string') return value;
      return (...args: unknown[]): unknown => {
        const started = performance.now();
        const result: unknown = (value as (...a: unknown[]) => unknown).apply(target, args);
        const list = times.get(prop) ?? [];
        list.push(performance.now() - started);
        times.set(prop, list);
        return result;
      };
    },
  });
}

interface VariantResult {
  variant: 'on' | 'off';
  calls: number;
  seconds: number;
  cpuUsPerCall: number;
  userUsPerCall: number;
  systemUsPerCall: number;
  eventLoopDelayMs: { p50: number; p99: number; max: number };
  /** Synchronous time per store method call, ms. */
  storeCallsMs: Record<string, Distribution>;
  /** Per write transaction, when the store reports them (ms). */
  transactionsMs?: Distribution;
  /** WAL checkpoints on the store's worker thread, when it has one (ms; not on the event loop). */
  workerCheckpointsMs?: Distribution;
  writeErrors: number;
  /** Calls in the store, and the SIP messages stored for the last call (checks that all was written). */
  rows: number;
  messagesOfLast: number;
}

async function runVariant(variant: 'on' | 'off', settings: Settings, captureUrl: string | undefined): Promise<VariantResult> {
  const dir = mkdtempSync(path.join(tmpdir(), 'call-log-writer-bench-'));
  const storeTimes = new Map<string, number[]>();
  const transactions: number[] = [];
  const checkpoints: number[] = [];
  let raw: SqliteCallStore | undefined;
  let capture: CaptureSource | undefined;
  try {
    // As the B2BUA opens it (openCallStore): WAL checkpoints on a worker thread. Passed untyped so
    // this script also builds against the store before that option and the hooks existed.
    const storeOptions: Record<string, unknown> = {
      checkpoint: 'worker',
      onTransaction: (ms: number) => transactions.push(ms),
      onCheckpoint: (r: { ms: number }) => checkpoints.push(r.ms),
    };
    raw = variant === 'on' ? SqliteCallStore.open(path.join(dir, 'calls.sqlite'), storeOptions) : undefined;
    const store = raw ? timedStore(raw, storeTimes) : undefined;
    const perLeg = Math.ceil(settings.messages / 2);
    capture = variant === 'off' ? undefined : captureUrl ? new EngineCapture(captureUrl, { take: true }) : new FakeCapture(perLeg, settings.messageBytes);
    const writer = new CallLogWriter({ store, capture, captureGraceMs: settings.graceMs, flushMs: settings.flushMs, instance: 'bench', logger: pino({ level: 'warn' }) });
    const service = new EventEmitter();
    writer.attach(service as unknown as B2buaService);
    let finals = 0;
    let expected = 0;
    let done: (() => void) | undefined;
    writer.on('final', () => {
      finals += 1;
      if (finals === expected) done?.();
    });

    const phase = async (first: number, count: number): Promise<void> => {
      expected = first + count;
      const all = new Promise<void>((resolve) => (done = resolve));
      const started = performance.now();
      let next = 0;
      await new Promise<void>((resolve) => {
        const tick = (): void => {
          const due = Math.min(count, Math.floor(((performance.now() - started) / 1000) * settings.rate) + 1);
          while (next < due) runCall(service, first + next++, variant, settings.holdMs);
          if (next >= count) {
            clearInterval(timer);
            resolve();
          }
        };
        const timer = setInterval(tick, 5);
        tick();
      });
      await all;
    };

    if (settings.warmup > 0) await phase(0, settings.warmup);
    storeTimes.clear();
    transactions.length = 0;
    checkpoints.length = 0;
    const eld = monitorEventLoopDelay({ resolution: 1 });
    eld.enable();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await phase(settings.warmup, settings.calls);
    const cpu = process.cpuUsage(cpu0);
    const seconds = (performance.now() - t0) / 1000;
    eld.disable();
    await writer.flush();
    const rows = raw ? (await raw.stats(new Date(0), new Date(8.64e15))).calls : 0;
    const lastId = summaryOf(settings.warmup + settings.calls - 1, variant).id.slice(0, 22);
    const last = raw ? (await raw.list({ limit: 1, text: lastId })).calls[0] : undefined;
    const messagesOfLast = last && raw ? (await raw.messages(last.id)).length : 0;
    const ms = (ns: number): number => Math.round(ns / 1000) / 1000;
    const result: VariantResult = {
      variant,
      calls: settings.calls,
      seconds: Math.round(seconds * 100) / 100,
      cpuUsPerCall: Math.round((cpu.user + cpu.system) / settings.calls),
      userUsPerCall: Math.round(cpu.user / settings.calls),
      systemUsPerCall: Math.round(cpu.system / settings.calls),
      eventLoopDelayMs: { p50: ms(eld.percentile(50)), p99: ms(eld.percentile(99)), max: ms(eld.max) },
      storeCallsMs: Object.fromEntries([...storeTimes].map(([name, times]) => [name, distribution(times)])),
      writeErrors: writer.writeErrors,
      rows,
      messagesOfLast,
    };
    if (transactions.length > 0) result.transactionsMs = distribution(transactions);
    if (checkpoints.length > 0) result.workerCheckpointsMs = distribution(checkpoints);
    return result;
  } finally {
    (capture as { close?: () => void } | undefined)?.close?.();
    await raw?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * How long 1 ms of this thread's CPU work takes by the clock on this machine now (other loads
 * preempt it): the floor under any "job blocked the event loop for N ms" figure.
 */
async function calibrate(jobs = 200): Promise<Distribution> {
  const walls: number[] = [];
  for (let i = 0; i < jobs; i += 1) {
    const started = performance.now();
    const cpu0 = process.cpuUsage();
    let x = 0;
    for (;;) {
      for (let k = 0; k < 2000; k += 1) x += Math.sqrt(k);
      const cpu = process.cpuUsage(cpu0);
      if (cpu.user + cpu.system >= 1000 || x < 0) break;
    }
    walls.push(performance.now() - started);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return distribution(walls);
}

async function main(): Promise<void> {
  const settings = parseArgs(process.argv.slice(2));
  process.stdout.write(
    `call-log writer benchmark: ${settings.calls} calls at ${settings.rate}/s (+${settings.warmup} warm-up), hold ${settings.holdMs} ms, ` +
      `${settings.messages} messages of ~${settings.messageBytes} bytes per call via ${settings.capture} capture; ${cpus().length} CPUs\n`,
  );
  const noise = await calibrate();
  const load = loadavg().map((l) => Math.round(l * 100) / 100);
  process.stdout.write(`  machine: load average ${load.join(' ')}; 1 ms of CPU takes p50 ${noise.p50} p99 ${noise.p99} max ${noise.max} ms by the clock\n`);
  const server = settings.capture === 'http' ? await startCaptureServer(Math.ceil(settings.messages / 2), settings.messageBytes) : undefined;
  const results: VariantResult[] = [];
  try {
    for (const variant of settings.variants) {
      const r = await runVariant(variant, settings, server?.url);
      results.push(r);
      const storeLine = Object.entries(r.storeCallsMs)
        .map(([name, d]) => `${name} x${d.count} p99 ${d.p99} max ${d.max} ms`)
        .join('; ');
      process.stdout.write(
        `  log ${variant.padEnd(3)}: ${String(r.cpuUsPerCall).padStart(6)} us CPU/call (user ${r.userUsPerCall}, sys ${r.systemUsPerCall}); ` +
          `event loop delay p99 ${r.eventLoopDelayMs.p99} max ${r.eventLoopDelayMs.max} ms; ${r.writeErrors} write errors; ${r.rows} calls stored, ${r.messagesOfLast} messages for the last\n`,
      );
      if (storeLine !== '') process.stdout.write(`           store calls: ${storeLine}\n`);
      if (r.workerCheckpointsMs) process.stdout.write(`           WAL checkpoints (worker thread): x${r.workerCheckpointsMs.count} p50 ${r.workerCheckpointsMs.p50} max ${r.workerCheckpointsMs.max} ms\n`);
      if (r.transactionsMs) process.stdout.write(`           write transactions: x${r.transactionsMs.count} p50 ${r.transactionsMs.p50} p99 ${r.transactionsMs.p99} max ${r.transactionsMs.max} ms\n`);
    }
  } finally {
    if (server?.child.pid !== undefined && server.child.exitCode === null) process.kill(server.child.pid, 'SIGTERM');
  }
  const on = results.find((r) => r.variant === 'on');
  const off = results.find((r) => r.variant === 'off');
  const added = on && off ? on.cpuUsPerCall - off.cpuUsPerCall : undefined;
  if (added !== undefined) process.stdout.write(`  call log adds ${added} us CPU per call\n`);

  const root = path.resolve(__dirname, '..', '..');
  const outDir = path.join(root, 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, `call-log-writer-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, `${JSON.stringify({ date: new Date().toISOString(), settings, loadAverage: load, oneMsCpuJobWallMs: noise, results, addedUsPerCall: added }, null, 2)}\n`);
  process.stdout.write(`results written to ${path.relative(root, file)}\n`);
}

if (process.argv[2] === '--serve-capture') {
  serveCapture(Number(process.argv[3]), Number(process.argv[4]));
} else {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  });
}
