import { createSocket } from 'node:dgram';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { coldProbe, describeColdProbe } from './cold-probe';
import { cpuMicros, freePorts, runSippUac, start, treeCpuMicros, waitUdpBound as waitBound, type Proc } from './proc';

/** Waits for a process to bind its SIP port; on failure says what the process printed. */
async function waitUdpBound(port: number, p: Proc): Promise<void> {
  try {
    await waitBound(port);
  } catch (err) {
    throw new Error(`${(err as Error).message}; its output:\n${p.output().slice(-1500)}`);
  }
}

/**
 * `npm run bench:engine`: how fast the engine passes calls to a drachtio-srf UAS, beside
 * SIPp -> Kamailio -> SIPp measured in the same run (RFC 7501/7502 method: step the offered
 * rate, report the highest step with zero failed calls), and the CPU each spends per call over
 * a fixed run. Everything runs on 127.0.0.1 and every load is bounded in calls and seconds.
 *
 * Beside the CPU per call it reports the engine's wake-ups per call (voluntary context switches
 * of its main thread: each costs the same whatever the engine then does) and a floor: the CPU
 * a Node process spends per datagram when it only echoes UDP at the rate of the engine's
 * inbound events in the fixed run. At low rates that floor, times the five events of a call
 * (INVITE, the application's 200, ACK, BYE, the application's 200), is most of the engine's cost.
 *
 * Settings (environment): BENCH_STEP_SECONDS (10), BENCH_RATE_START (200), BENCH_RATE_STEP (200),
 * BENCH_RATE_MAX (3000), BENCH_FIXED_CALLS (5000), BENCH_FIXED_RATE (100), BENCH_HOLD_MS (200),
 * BENCH_ENGINE_ONLY (0: set to 1 to skip the Kamailio-only path), BENCH_NODE_FLAGS (Node/V8 flags
 * for the engine and the application, space-separated, e.g. "--single-threaded-gc"; the echo
 * floor gets them too, so it stays comparable).
 */

const root = path.resolve(__dirname, '..', '..');
const scenarios = path.join(root, 'test', 'scenarios');
const env = (k: string, d: number): number => (process.env[k] !== undefined ? Number(process.env[k]) : d);
const STEP_SECONDS = env('BENCH_STEP_SECONDS', 10);
const RATE_START = env('BENCH_RATE_START', 200);
const RATE_STEP = env('BENCH_RATE_STEP', 200);
const RATE_MAX = env('BENCH_RATE_MAX', 3000);
const FIXED_CALLS = env('BENCH_FIXED_CALLS', 5000);
const FIXED_RATE = env('BENCH_FIXED_RATE', 100);
const HOLD_MS = env('BENCH_HOLD_MS', 200);
const ENGINE_ONLY = env('BENCH_ENGINE_ONLY', 0) === 1;
const NODE_FLAGS = (process.env.BENCH_NODE_FLAGS ?? '').split(/\s+/).filter((f) => f.length > 0);
/** inbound events of one call at the engine: INVITE, 200 from the app, ACK, BYE, 200 from the app */
const EVENTS_PER_CALL = 5;

interface Step {
  rate: number;
  /** CPU microseconds per call of each measured process during this step */
  cpuMicrosPerCall: Record<string, number>;
  calls: number;
  successful: number;
  failed: number;
  seconds: number;
  ok: boolean;
}

interface PathResult {
  name: string;
  steps: Step[];
  maxZeroFailureRate: number;
  fixed: { calls: number; rate: number; failed: number; cpuMicrosPerCall: Record<string, number>; wakeupsPerCall?: number };
}

/** Voluntary context switches of a process's main thread: how often it went to sleep and woke. */
function wakeups(pid: number): number {
  const m = /^voluntary_ctxt_switches:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** The engine's CPU while no call runs, milliseconds per second. */
async function idleCpu(pid: number, seconds = 5): Promise<number> {
  const before = cpuMicros(pid);
  await sleep(seconds * 1000);
  return Math.round((cpuMicros(pid) - before) / seconds / 100) / 10;
}

/** A Node UDP echo server: the least a Node process can do per datagram it is woken for. */
const ECHO = "const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>s.send(m,r.port,r.address));s.bind(+process.argv[1],'127.0.0.1',()=>console.log('ready'))";

/**
 * CPU per datagram of the echo server at `rate` datagrams per second, one at a time (as the
 * engine's events come at a low call rate), for `seconds`.
 */
async function echoFloor(rate: number, seconds: number): Promise<number> {
  const [port] = await freePorts(1);
  const echo = await start(process.execPath, [...NODE_FLAGS, '-e', ECHO, String(port)], (o) => o.includes('ready'));
  const client = createSocket('udp4');
  try {
    const packet = Buffer.alloc(800, 0x41);
    const total = rate * seconds;
    await sleep(200);
    const before = cpuMicros(echo.pid);
    const t0 = Date.now();
    let sent = 0;
    while (sent < total) {
      const due = Math.min(total, Math.floor(((Date.now() - t0) * rate) / 1000));
      for (; sent < due; sent++) client.send(packet, port!, '127.0.0.1');
      await sleep(1);
    }
    await sleep(200);
    return Math.round((cpuMicros(echo.pid) - before) / total);
  } finally {
    client.close();
    await echo.stop();
  }
}

async function stepRates(name: string, target: string, uacPort: number, pids: Record<string, () => number>): Promise<Step[]> {
  const steps: Step[] = [];
  for (let rate = RATE_START; rate <= RATE_MAX; rate += RATE_STEP) {
    const calls = rate * STEP_SECONDS;
    const before = Object.fromEntries(Object.entries(pids).map(([k, f]) => [k, f()]));
    const r = await runSippUac(path.join(scenarios, 'uac-call.xml'), target, uacPort, rate, calls, HOLD_MS, STEP_SECONDS * 3 + 10);
    const cpu: Record<string, number> = {};
    for (const [k, f] of Object.entries(pids)) cpu[k] = Math.round((f() - before[k]!) / Math.max(1, r.successful));
    const ok = r.code === 0 && r.failed === 0 && r.successful === calls;
    steps.push({ rate, cpuMicrosPerCall: cpu, calls, successful: r.successful, failed: r.failed, seconds: r.seconds, ok });
    const cpuText = Object.entries(cpu).map(([k, v]) => `${k} ${v} us/call`).join(', ');
    process.stdout.write(`  ${name.padEnd(22)} ${String(rate).padStart(5)} calls/s: ${r.successful}/${calls} ok, ${r.failed} failed; CPU ${cpuText} ${ok ? '' : '<- failures'}\n`);
    if (!ok) break;
  }
  return steps;
}

async function fixedRun(target: string, uacPort: number, pids: Record<string, () => number>, wakePid?: number): Promise<PathResult['fixed']> {
  const before = Object.fromEntries(Object.entries(pids).map(([k, f]) => [k, f()]));
  const woke = wakePid !== undefined ? wakeups(wakePid) : 0;
  const r = await runSippUac(path.join(scenarios, 'uac-call.xml'), target, uacPort, FIXED_RATE, FIXED_CALLS, HOLD_MS, Math.ceil(FIXED_CALLS / FIXED_RATE) * 2 + 20);
  const per: Record<string, number> = {};
  for (const [k, f] of Object.entries(pids)) per[k] = Math.round((f() - before[k]!) / FIXED_CALLS);
  const wakeupsPerCall = wakePid !== undefined ? Math.round((100 * (wakeups(wakePid) - woke)) / FIXED_CALLS) / 100 : undefined;
  return { calls: FIXED_CALLS, rate: FIXED_RATE, failed: r.failed + (FIXED_CALLS - r.successful - r.failed), cpuMicrosPerCall: per, ...(wakeupsPerCall !== undefined ? { wakeupsPerCall } : {}) };
}

function maxOk(steps: Step[]): number {
  let best = 0;
  for (const s of steps) if (s.ok) best = s.rate;
  return best;
}

async function main(): Promise<void> {
  const [sipK, sipE, wire, uasPort, uacPort] = await freePorts(5);
  const secret = `bench-${process.pid}`;
  const procs: Proc[] = [];
  const stopAll = async (): Promise<void> => {
    for (const p of procs.reverse()) await p.stop();
  };
  process.on('SIGINT', () => void stopAll().then(() => process.exit(130)));
  try {
    process.stdout.write(`engine benchmark: ${STEP_SECONDS} s steps from ${RATE_START} calls/s by ${RATE_STEP}; fixed run ${FIXED_CALLS} calls at ${FIXED_RATE}/s\n`);
    const results: PathResult[] = [];
    if (!ENGINE_ONLY) {
      // --- Kamailio-only baseline: SIPp UAC -> Kamailio (stateful) -> SIPp UAS
      const rundir = path.join(root, 'var', 'bench', `k-${process.pid}`);
      mkdirSync(rundir, { recursive: true });
      const uas = await start('timeout', ['-k', '5', '3600', 'sipp', '-sf', path.join(scenarios, 'uas-answer.xml'), '-i', '127.0.0.1', '-p', String(uasPort), '-nostdin'], () => true);
      procs.push(uas);
      await waitUdpBound(uasPort!, uas);
      const kam = await start(
        'kamailio',
        ['-f', path.join(root, 'bench', 'kamailio-relay.cfg'), '-DD', '-E', '-Y', rundir, '-P', path.join(rundir, 'kamailio.pid'), '-m', '512', '-M', '16',
          '-l', `udp:127.0.0.1:${sipK}`, '-A', `UAS="sip:127.0.0.1:${uasPort}"`],
        () => true,
      );
      procs.push(kam);
      await waitUdpBound(sipK!, kam);
      process.stdout.write('baseline: SIPp -> Kamailio -> SIPp\n');
      const kSteps = await stepRates('kamailio', `127.0.0.1:${sipK}`, uacPort!, { kamailio: () => treeCpuMicros(kam.pid) });
      const kFixed = await fixedRun(`127.0.0.1:${sipK}`, uacPort!, { kamailio: () => treeCpuMicros(kam.pid) });
      results.push({ name: 'kamailio-only', steps: kSteps, maxZeroFailureRate: maxOk(kSteps), fixed: kFixed });
    }

    // --- engine: SIPp UAC -> engine -> drachtio-srf UAS application
    const engine = await start(process.execPath, [...NODE_FLAGS, path.join(root, 'dist', 'app', 'engine.js'), '--contact', `sip:127.0.0.1:${sipE};transport=udp`, '--address', '127.0.0.1', '--port', String(wire), '--secret', secret, '--loglevel', 'warning'], () => true);
    procs.push(engine);
    await waitUdpBound(sipE!, engine);
    const app = await start(process.execPath, [...NODE_FLAGS, path.join(root, 'dist', 'bench', 'uas-app.js'), String(wire), secret], (o) => o.includes('ready'));
    procs.push(app);
    const idleMsPerSec = await idleCpu(engine.pid);
    process.stdout.write(`engine: SIPp -> engine -> drachtio-srf UAS (idle engine: ${idleMsPerSec} ms CPU per second)\n`);
    const eSteps = await stepRates('engine (UAS path)', `127.0.0.1:${sipE}`, uacPort!, { engine: () => cpuMicros(engine.pid), 'srf app': () => cpuMicros(app.pid) });
    const eFixed = await fixedRun(`127.0.0.1:${sipE}`, uacPort!, { engine: () => cpuMicros(engine.pid), 'srf app': () => cpuMicros(app.pid) }, engine.pid);
    results.push({ name: 'engine-uas', steps: eSteps, maxZeroFailureRate: maxOk(eSteps), fixed: eFixed });
    const floorRate = FIXED_RATE * EVENTS_PER_CALL;
    const floor = await echoFloor(floorRate, 10);
    const cold = await coldProbe();

    const base = ENGINE_ONLY ? 0 : results[0]!.maxZeroFailureRate;
    process.stdout.write('\npath            max zero-failure calls/s   ratio to kamailio   CPU us/call (fixed run)\n');
    for (const r of results) {
      const ratio = base > 0 ? `${((100 * r.maxZeroFailureRate) / base).toFixed(0)}%` : 'n/a';
      const cpu = Object.entries(r.fixed.cpuMicrosPerCall).map(([k, v]) => `${k} ${v}`).join(', ');
      process.stdout.write(`${r.name.padEnd(16)}${String(r.maxZeroFailureRate).padStart(10)}${ratio.padStart(24)}      ${cpu}${r.fixed.failed ? ` (${r.fixed.failed} failed)` : ''}\n`);
    }
    process.stdout.write(
      `\nengine fixed run: ${eFixed.wakeupsPerCall ?? '?'} wake-ups per call; a Node UDP echo at ${floorRate} datagrams/s costs ${floor} us per datagram, ` +
        `so ${EVENTS_PER_CALL} events per call cost about ${floor * EVENTS_PER_CALL} us/call before any SIP work\n`,
    );
    process.stdout.write(`cold start: ${describeColdProbe(cold)}\n`);
    for (const r of results) {
      const last = r.steps[r.steps.length - 1];
      if (last && !last.ok) process.stdout.write(`note: ${r.name}: first failing step ${last.rate} calls/s (the single SIPp UAC may be the limit there too)\n`);
      else if (last) process.stdout.write(`note: ${r.name}: no failure up to BENCH_RATE_MAX=${RATE_MAX} calls/s: the real limit is higher\n`);
    }
    const outDir = path.join(root, 'bench', 'results');
    mkdirSync(outDir, { recursive: true });
    const file = path.join(outDir, `engine-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
    const context = { idleEngineMsPerSecond: idleMsPerSec, coldProbe: cold, echoFloor: { datagramsPerSecond: floorRate, cpuMicrosPerDatagram: floor, eventsPerCall: EVENTS_PER_CALL } };
    writeFileSync(file, JSON.stringify({ date: new Date().toISOString(), settings: { STEP_SECONDS, RATE_START, RATE_STEP, RATE_MAX, FIXED_CALLS, FIXED_RATE, HOLD_MS, ENGINE_ONLY, NODE_FLAGS }, results, context }, null, 2));
    process.stdout.write(`results written to ${path.relative(root, file)}\n`);
  } finally {
    await stopAll();
  }
}

main().catch((err: Error) => {
  process.stderr.write(`bench: ${err.message}\n`);
  process.exit(1);
});
