// The measurements, each on a running path (bench/paths.ts):
//   rate search   RFC 7501/7502: offer a rate for a fixed time, count failed calls, raise the rate
//                 by a factor until a step fails, then bisect between the last clean step and the
//                 first failing one; the result is the highest step with zero failed calls
//   fixed run     N calls at a rate every path sustains: CPU microseconds per call per process
//                 (/proc/<pid>/stat) and, from the same calls, setup latency
//   latency       INVITE->180 and INVITE->200 at the caller, from a tcpdump capture on lo at the
//                 callers' SIP ports (kernel timestamps, us) beside SIPp's -trace_rtt (whole ticks
//                 of CLOCK_MONOTONIC_COARSE: 4 ms at HZ=250)
//   concurrency   ramp to N held calls, largest N held with zero failures, RSS per held call
//   media         M calls playing PCMA through RTPEngine, loss from RTPEngine's packet counts

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HopBreakdown } from './hop-latency';
import { percentiles, type Percentiles } from './stats';

export { percentiles, type Percentiles };
import type { LogEvents, RunningPath } from './paths';
import { machineCpuMicros } from './proc';
import type { BenchSettings } from './settings';
import { offerLoad, type LoadOptions, type LoadResult, type StatRow } from './sipp-load';

export type Say = (line: string) => void;

export interface CpuUse {
  /** Percent of one core per process while the load was offered (Kamailio summed over its workers). */
  readonly percent: Record<string, number>;
  /** CPU microseconds per successful call per process. */
  readonly microsPerCall: Record<string, number>;
  /** The whole machine, percent of one core (so up to 200 on two cores): ours and everyone else's. */
  readonly machinePercent: number;
}

export interface Step {
  readonly rate: number;
  readonly calls: number;
  readonly successful: number;
  readonly failed: number;
  readonly leaked: Leaked;
  /** Calls answered per second (the middle 90% of the answers over the time they took). */
  readonly achievedRate: number;
  /** No failed call, none left behind, no process died. */
  readonly ok: boolean;
  /** No failed call at the caller and no process died (calls left open not counted). */
  readonly callsOk: boolean;
  readonly wallSeconds: number;
  readonly uacs: number;
  readonly cpu: CpuUse;
  /** Kamailio errors and B2BUA warnings logged during the step. */
  readonly events: LogEvents;
  /** Why the step failed, when it did: SIPp's first error, a dead process. */
  readonly failure?: string;
}

export interface RateSearch {
  readonly steps: Step[];
  /**
   * Highest offered rate with zero failures: no failed call and no call left open, at that step
   * and at every lower step (0 when the first step already failed).
   */
  readonly maxZeroFailureRate: number;
  /**
   * Highest rate with no failed call at the caller, calls left open not counted: what the search
   * followed, so it shows the capacity limit apart from calls that are never torn down.
   */
  readonly maxNoFailedCallRate: number;
  /** The lowest failing rate by the caller's count, when one failed. */
  readonly firstFailingRate: number | undefined;
  /** True when no step failed up to BENCH_RATE_MAX: the real limit is higher. */
  readonly capped: boolean;
}

/** Setup latency from the packet capture at the callers' ports (bench/pcap-latency.ts). */
export interface CapturedLatency {
  /** Milliseconds, to the microsecond. */
  readonly ringing: Percentiles;
  readonly answered: Percentiles;
  /** Calls whose INVITE was captured, and those of them without a captured 180 or 200. */
  readonly calls: number;
  readonly unmatched: number;
}

export interface LatencyRun {
  readonly rate: number;
  /** Why this rate: the cost run, half the chain's maximum, BENCH_LATENCY_RATES. */
  readonly why?: string;
  readonly calls: number;
  readonly failed: number;
  readonly leaked: Leaked;
  /**
   * SIPp's -trace_rtt: milliseconds from the authenticated INVITE to the 180 and to the 200 (the
   * callee waits 10 ms between them), in whole ticks of SIPp's clock (sippStepMs).
   */
  readonly ringing: Percentiles;
  readonly answered: Percentiles;
  /** The smallest step between SIPp's distinct values (4 ms where CLOCK_MONOTONIC_COARSE ticks at HZ=250). */
  readonly sippStepMs?: number;
  /** The same intervals from the capture (tcpdump on lo, kernel timestamps): what the latency target uses. */
  readonly capture?: CapturedLatency;
  /** Why there is no capture (the figures are SIPp's only), or what to know about it. */
  readonly captureNote?: string;
  /** With BENCH_HOPS on a chain: INVITE->180 per hop, from a capture of the whole chain. */
  readonly hops?: HopBreakdown;
}

export interface FixedRun {
  readonly rate: number;
  readonly calls: number;
  readonly failed: number;
  readonly leaked: Leaked;
  readonly cpu: CpuUse;
  readonly latency: LatencyRun;
}

export interface Concurrency {
  readonly target: number;
  readonly rate: number;
  readonly holdSeconds: number;
  /** Why the target is lower than BENCH_CONCURRENCY_MAX, if it is. */
  readonly cappedBy?: string;
  readonly successful: number;
  readonly failed: number;
  readonly leaked: Leaked;
  /** Most calls the B2BUA held at once (sessions), and the engine's dialogs then. */
  readonly peakSessions: number;
  readonly peakEngineDialogs: number;
  /** Largest number of calls held with zero failures so far (the target when nothing failed). */
  readonly maxHeldZeroFailures: number;
  readonly rssBeforeKb: Record<string, number>;
  readonly rssHeldKb: Record<string, number>;
  /** (held - before) / calls held, per process, in KB. */
  readonly kbPerCall: Record<string, number>;
  readonly engineAndB2buaKbPerCall: number | undefined;
  /** RTPEngine's open file descriptors before the ramp and at the peak. */
  readonly rtpengineFds?: { readonly before: number; readonly held: number };
  readonly cpu: CpuUse;
}

export interface MediaRun {
  readonly calls: number;
  readonly rate: number;
  readonly holdSeconds: number;
  readonly successful: number;
  readonly failed: number;
  readonly leaked: Leaked;
  readonly pcapPackets: number;
  /** Calls whose 'call ended' log line carried RTPEngine's figures. */
  readonly callsWithFigures: number;
  /** Packets the callers' pcap holds in total (calls x packets in the file). */
  readonly sentByCallers: number;
  /** RTPEngine's count of packets it received from the callers, and back from the callees (echo). */
  readonly rtpengineFromCallers: number;
  readonly rtpengineFromCallees: number;
  /** 1 - fromCallers / sent: lost between the callers and RTPEngine. */
  readonly lossToRtpengine: number;
  /** 1 - fromCallees / fromCallers: lost RTPEngine -> callee -> RTPEngine (relayed, echoed, relayed back). */
  readonly lossThroughRtpengine: number;
  /** 1 - fromCallees / sent: the whole round trip. */
  readonly lossTotal: number;
  readonly cpu: CpuUse;
}

// ----------------------------------------------------------------------------------- helpers

/**
 * The smallest difference between distinct values, to 0.1 ms: the step of a clock that only moves
 * in ticks. (SIPp prints some times a microsecond off its tick, e.g. 16.001: not a finer step.)
 */
export function smallestStep(values: readonly number[]): number | undefined {
  const v = [...new Set(values.filter(Number.isFinite).map((x) => Math.round(x * 10) / 10))].sort((a, b) => a - b);
  let step: number | undefined;
  for (let i = 1; i < v.length; i++) step = Math.min(step ?? Infinity, (v[i] as number) - (v[i - 1] as number));
  return step === undefined ? undefined : Math.round(step * 1000) / 1000;
}

/** "p50/p95/p99 ms (capture), SIPp's p50/p95/p99" for one interval, for the progress lines. */
function latencyText(captured: Percentiles | undefined, sipp: Percentiles): string {
  const p = (q: Percentiles, digits: number): string => [q.p50, q.p95, q.p99].map((x) => (Number.isFinite(x) ? x.toFixed(digits) : '-')).join('/');
  return captured ? `${p(captured, 1)} ms (SIPp ${p(sipp, 0)})` : `${p(sipp, 0)} ms (SIPp)`;
}

interface CpuSnapshot {
  at: bigint;
  procs: Record<string, number>;
  machine: number;
}

function snapshot(path: RunningPath): CpuSnapshot {
  return { at: process.hrtime.bigint(), procs: path.cpu(), machine: machineCpuMicros().busy };
}

function cpuBetween(a: CpuSnapshot, b: CpuSnapshot, calls: number): CpuUse {
  const wallMicros = Number(b.at - a.at) / 1000;
  const percent: Record<string, number> = {};
  const microsPerCall: Record<string, number> = {};
  for (const [k, v] of Object.entries(b.procs)) {
    const d = v - (a.procs[k] ?? v);
    percent[k] = Math.round((1000 * d) / wallMicros) / 10;
    microsPerCall[k] = Math.round(d / Math.max(1, calls));
  }
  return { percent, microsPerCall, machinePercent: Math.round((1000 * (b.machine - a.machine)) / wallMicros) / 10 };
}

function eventsBetween(a: LogEvents, b: LogEvents): LogEvents {
  return {
    kamailioErrors: b.kamailioErrors - a.kamailioErrors,
    kamailioFirst: b.kamailioErrors > a.kamailioErrors ? b.kamailioFirst : '',
    b2buaWarnings: b.b2buaWarnings - a.b2buaWarnings,
    b2buaFirst: b.b2buaWarnings > a.b2buaWarnings ? b.b2buaFirst : '',
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until the path is idle: its processes below 5% of a core over half a second (the call log
 * and Kamailio's timers finish the last load's work) and the calls held in the engine and the
 * B2BUA down to zero or no longer changing (calls that were never torn down stay: see Leaked);
 * at least minMs, at most maxMs.
 */
export async function settle(path: RunningPath, minMs = 1000, maxMs = 30_000): Promise<void> {
  const start = Date.now();
  await sleep(minMs);
  let last: string | undefined;
  while (Date.now() - start < maxMs) {
    const held = await path.held().catch(() => undefined);
    const a = path.cpu();
    await sleep(500);
    const b = path.cpu();
    let busy = 0;
    for (const k of ['kamailio', 'rtpengine', 'engine', 'b2bua']) busy += (b[k] ?? 0) - (a[k] ?? 0);
    const now = JSON.stringify(held ?? null);
    const stable = !held || (held.sessions === 0 && held.engineDialogs === 0) || now === last;
    last = now;
    if (busy < 25_000 && stable) return;
  }
}

/** Calls a load left behind once the path is idle: never torn down at the callee, or still in the B2BUA. */
export interface Leaked {
  /** Calls the callee UASes still wait a BYE for. */
  readonly calleeOpen: number;
  /** B2BUA sessions still held (0 on the baseline). */
  readonly sessions: number;
}

interface Measured {
  readonly r: LoadResult;
  /** CPU over the offered window in percent; per call over the whole load. */
  readonly cpu: CpuUse;
  readonly events: LogEvents;
  readonly leaked: Leaked;
  readonly dead: string | undefined;
}

/** Offers a load and measures around it: CPU, log events, and what it leaves behind once idle. */
async function measure(path: RunningPath, load: LoadOptions, settleMinMs = 1000): Promise<Measured> {
  const u0 = path.calleeCalls();
  const h0 = await path.held().catch(() => undefined);
  const e0 = path.events();
  const c0 = snapshot(path);
  // CPU in percent over the offered window (a failing load's tail of timeouts would dilute it).
  let cWindow: CpuSnapshot | undefined;
  const windowTimer = setTimeout(() => (cWindow = snapshot(path)), (load.calls / load.rate) * 1000);
  const r = await offerLoad(load);
  clearTimeout(windowTimer);
  const c1 = snapshot(path);
  const events = eventsBetween(e0, path.events());
  const whole = cpuBetween(c0, c1, r.successful);
  const cpu: CpuUse = cWindow ? { ...cpuBetween(c0, cWindow, r.successful), microsPerCall: whole.microsPerCall } : whole;
  await settle(path, r.failed > 0 ? 3000 : settleMinMs);
  // The UASes write their statistics every second: wait for a line from after the load.
  await sleep(1100);
  const u1 = path.calleeCalls();
  const h1 = await path.held().catch(() => undefined);
  const leaked = { calleeOpen: Math.max(0, u1.open - u0.open), sessions: Math.max(0, (h1?.sessions ?? 0) - (h0?.sessions ?? 0)) };
  return { r, cpu, events, leaked, dead: path.dead() };
}

function leakText(l: Leaked): string {
  const parts: string[] = [];
  if (l.calleeOpen) parts.push(`${l.calleeOpen} callee legs never got their BYE`);
  if (l.sessions) parts.push(`${l.sessions} B2BUA sessions never ended`);
  return parts.join(', ');
}

function describeFailure(m: Measured): string | undefined {
  const { r, dead, events } = m;
  const parts: string[] = [];
  if (dead) parts.push(`${dead} died`);
  if (m.leaked.calleeOpen || m.leaked.sessions) parts.push(`left behind: ${leakText(m.leaked)}`);
  if (r.failed > 0) {
    const hit = /received '(SIP\/2\.0 \d{3}[^\r\n]*)/.exec(r.firstErrors) ?? /(Aborting call[^\r\n]*|[^\r\n]*timeout[^\r\n]*)/i.exec(r.firstErrors);
    parts.push(`${r.failed} failed${hit ? `, first: ${(hit[1] ?? '').trim().slice(0, 160)}` : ''}`);
  }
  if (events.kamailioErrors > 0) parts.push(`kamailio logged ${events.kamailioErrors} errors, first: ${events.kamailioFirst.slice(0, 160)}`);
  if (events.b2buaWarnings > 0) parts.push(`b2bua logged ${events.b2buaWarnings} warnings, first: ${events.b2buaFirst.slice(0, 200)}`);
  return parts.length ? parts.join('; ') : undefined;
}

function formatCpu(cpu: CpuUse): string {
  return Object.entries(cpu.percent)
    .filter(([k]) => k !== 'bench')
    .map(([k, v]) => `${k} ${v.toFixed(0)}%`)
    .join(' ');
}

// ------------------------------------------------------------------------------- rate search

async function step(path: RunningPath, s: BenchSettings, rate: number, workDir: string, say: Say): Promise<Step> {
  const calls = Math.max(1, Math.round(rate * s.stepSeconds));
  const m = await measure(path, {
    scenario: 'bench-uac', target: path.target, callers: path.callers, callees: path.callees, rate, calls, holdMs: s.holdMs, uacRate: s.uacRate,
    // Answer times give the answered rate; every 50 calls keeps SIPp's file writes out of the way.
    workDir: join(workDir, `rate-${rate}`), rtt: true, rttEvery: 50,
  });
  const { r, cpu, events, leaked } = m;
  const callsOk = r.failed === 0 && r.successful === calls && m.dead === undefined;
  const ok = callsOk && leaked.calleeOpen === 0 && leaked.sessions === 0;
  const failure = ok ? undefined : describeFailure(m);
  say(
    `  ${path.name.padEnd(14)} ${String(rate).padStart(5)} calls/s offered, ${r.achievedRate.toFixed(0).padStart(5)} answered/s: ` +
      `${r.successful}/${calls} ok${r.failed ? `, ${r.failed} FAILED` : ''}  CPU ${formatCpu(cpu)} (machine ${cpu.machinePercent.toFixed(0)}%)` +
      `${failure ? `\n      ${failure}` : ''}`,
  );
  return { rate, calls, successful: r.successful, failed: r.failed, leaked, achievedRate: r.achievedRate, ok, callsOk, wallSeconds: r.wallSeconds, uacs: r.uacs, cpu, events, failure };
}

/** The highest fully clean rate below the lowest step that was not clean (calls left open count). */
function strictMax(steps: readonly Step[]): number {
  const lowestBad = Math.min(...steps.filter((s) => !s.ok).map((s) => s.rate));
  return Math.max(0, ...steps.filter((s) => s.ok && s.rate < lowestBad).map((s) => s.rate));
}

/**
 * RFC 7502's search: raise by BENCH_RATE_FACTOR until a step has failed calls, then bisect
 * BENCH_REFINE times. It follows the callers' failures; calls left open (never torn down) are
 * counted beside it, in maxZeroFailureRate.
 */
export async function searchRate(path: RunningPath, s: BenchSettings, workDir: string, say: Say): Promise<RateSearch> {
  const steps: Step[] = [];
  let lastOk = 0;
  let firstFail: number | undefined;
  let rate = Math.min(s.rateStart, s.rateMax);
  const result = (): RateSearch => ({ steps, maxZeroFailureRate: strictMax(steps), maxNoFailedCallRate: lastOk, firstFailingRate: firstFail, capped: firstFail === undefined });
  for (;;) {
    const st = await step(path, s, rate, workDir, say);
    steps.push(st);
    if (!st.callsOk) {
      firstFail = rate;
      break;
    }
    lastOk = rate;
    if (rate >= s.rateMax) break;
    rate = Math.min(s.rateMax, Math.max(rate + 1, Math.round(rate * s.rateFactor)));
  }
  if (path.dead()) return result();
  for (let i = 0; i < s.refine && firstFail !== undefined; i++) {
    const mid = Math.round((lastOk + firstFail) / 2);
    if (mid <= lastOk || mid >= firstFail || (firstFail - lastOk) / firstFail < 0.04) break;
    const st = await step(path, s, mid, workDir, say);
    steps.push(st);
    if (path.dead()) break;
    if (st.callsOk) lastOk = mid;
    else firstFail = mid;
  }
  return result();
}

// ------------------------------------------------------------------------------------ warm-up

/** Unmeasured calls first (BENCH_WARMUP_CALLS at up to 100/s): JIT, caches and first database pages. */
export async function warmUp(path: RunningPath, s: BenchSettings, workDir: string, say: Say): Promise<void> {
  if (s.warmupCalls <= 0) return;
  const rate = Math.min(100, s.warmupCalls);
  const { r, leaked } = await measure(path, { scenario: 'bench-uac', target: path.target, callers: path.callers, callees: path.callees, rate, calls: s.warmupCalls, holdMs: s.holdMs, uacRate: s.uacRate, workDir: join(workDir, 'warmup') });
  say(`  ${path.name.padEnd(14)} warm-up: ${r.successful}/${s.warmupCalls} calls at ${rate}/s${r.failed ? `, ${r.failed} FAILED` : ''}${leakText(leaked) ? `, ${leakText(leaked)}` : ''} (not measured)`);
}

// ------------------------------------------------------------------------- cost and latency

export async function latencyRun(path: RunningPath, s: BenchSettings, rate: number, calls: number, workDir: string): Promise<{ run: LatencyRun; cpu: CpuUse }> {
  const dir = join(workDir, `latency-${rate}`);
  // The B2BUA's session ids (X-Call-ID on the B leg) to the callers' Call-IDs, from its log.
  const sessions = new Map<string, string>();
  const hopPorts = s.hops ? path.hopPorts : undefined;
  const unsubscribe = hopPorts
    ? path.onB2buaLine((l) => {
      if (l.msg === 'call received' && typeof l.callId === 'string' && typeof l.aCallId === 'string') sessions.set(l.callId, l.aCallId);
    })
    : undefined;
  let m: Measured;
  try {
    m = await measure(path, {
      scenario: 'bench-uac', target: path.target, callers: path.callers, callees: path.callees, rate, calls, holdMs: s.holdMs, uacRate: s.uacRate, workDir: dir, rtt: true,
      pcapFile: join(dir, 'callers.pcap'),
      hops: hopPorts && { ports: hopPorts, sessions: () => sessions },
    });
  } finally {
    unsubscribe?.();
  }
  const { pcap } = m.r;
  const capture: CapturedLatency | undefined = pcap && { ringing: percentiles(pcap.ringingMs), answered: percentiles(pcap.answeredMs), calls: pcap.calls, unmatched: pcap.unmatched };
  let captureNote = m.r.pcapNote;
  if (!pcap) captureNote = `${captureNote ?? 'no capture'}; latency from SIPp's figures only`;
  else if (pcap.calls === 0) captureNote = `the capture holds no INVITE from the callers${captureNote ? `; ${captureNote}` : ''}`;
  return {
    run: {
      rate, calls, failed: m.r.failed, leaked: m.leaked, ringing: percentiles(m.r.ringingMs), answered: percentiles(m.r.answeredMs),
      sippStepMs: smallestStep([...m.r.ringingMs, ...m.r.answeredMs]), capture, captureNote, hops: m.r.hops,
    },
    cpu: m.cpu,
  };
}

/** BENCH_COST_CALLS calls at BENCH_COST_RATE: CPU per call per process, and the latency of those calls. */
export async function fixedRun(path: RunningPath, s: BenchSettings, workDir: string, say: Say): Promise<FixedRun> {
  const measured = await latencyRun(path, s, s.costRate, s.costCalls, workDir);
  const run: LatencyRun = { ...measured.run, why: 'cost run' };
  const { cpu } = measured;
  const per = Object.entries(cpu.microsPerCall)
    .filter(([k]) => k !== 'bench')
    .map(([k, v]) => `${k} ${v} us`)
    .join(', ');
  const leaks = leakText(run.leaked);
  say(`  ${path.name.padEnd(14)} ${s.costCalls} calls at ${s.costRate}/s: ${run.failed ? `${run.failed} FAILED, ` : ''}${leaks ? `${leaks}, ` : ''}CPU per call ${per}; INVITE->180 p50/p95/p99 ${latencyText(run.capture?.ringing, run.ringing)}` +
    `${run.captureNote ? `\n      ${run.captureNote}` : ''}`);
  return { rate: s.costRate, calls: s.costCalls, failed: run.failed, leaked: run.leaked, cpu, latency: run };
}

export async function latencyAt(path: RunningPath, s: BenchSettings, rate: number, why: string, workDir: string, say: Say): Promise<LatencyRun> {
  const run: LatencyRun = { ...(await latencyRun(path, s, rate, Math.max(50, Math.round(rate * s.latencySeconds)), workDir)).run, why };
  say(
    `  ${path.name.padEnd(14)} ${String(rate).padStart(5)} calls/s: INVITE->180 p50/p95/p99 ${latencyText(run.capture?.ringing, run.ringing)}, ` +
      `INVITE->200 ${latencyText(run.capture?.answered, run.answered)}${run.failed ? `, ${run.failed} FAILED` : ''}${leakText(run.leaked) ? `, ${leakText(run.leaked)}` : ''}` +
      `${run.captureNote ? `\n      ${run.captureNote}` : ''}`,
  );
  return run;
}

// ------------------------------------------------------------------------------ concurrency

/** The largest number of calls in progress before the first failure, from SIPp's per-second statistics. */
function heldBeforeFirstFailure(stats: readonly StatRow[][]): number {
  // One SIPp offers the ramp; with several, their rows are added second by second.
  const seconds = Math.max(0, ...stats.map((rows) => rows.length));
  let best = 0;
  for (let i = 0; i < seconds; i++) {
    if (stats.reduce((a, rows) => a + (rows[i]?.failed ?? 0), 0) > 0) break;
    best = Math.max(best, stats.reduce((a, rows) => a + (rows[i]?.currentCalls ?? 0), 0));
  }
  return best;
}

/** `maxRate`: the path's zero-failure rate measured in this run, if it was: the ramp stays at half of it. */
export async function concurrency(path: RunningPath, s: BenchSettings, workDir: string, say: Say, maxRate?: number): Promise<Concurrency> {
  let target = s.concurrencyMax;
  let cappedBy: string | undefined;
  if (path.name !== 'chain-nomedia' && path.name !== 'baseline') {
    // RTPEngine holds 4 sockets per anchored call (RTP and RTCP, both sides); its open-file limit
    // bounds the calls one RTPEngine anchors, and so does the RTP port range.
    // Several RTPEngines (BENCH_CONCURRENCY_RTPENGINES) each have the limit and a share of the range.
    const files = path.rtpengineFileLimit();
    const instances = Math.max(1, path.rtpengineInstances());
    const byFiles = files !== undefined ? instances * Math.floor((files - 200) / 4) : Number.POSITIVE_INFINITY;
    const byPorts = instances * (Math.floor((s.rtpPortMax - s.rtpPortMin + 1) / instances / 4) - 20);
    if (byFiles < target || byPorts < target) {
      target = Math.min(byFiles, byPorts);
      cappedBy =
        byFiles <= byPorts
          ? `RTPEngine's open-file limit (${files} per process, ${instances} process(es); 4 sockets per call)`
          : `the RTP port range ${s.rtpPortMin}-${s.rtpPortMax} (4 ports per call)`;
    }
  }
  const rate = Math.max(1, Math.min(s.concurrencyRate, target, maxRate ? Math.floor(maxRate / 2) : Number.POSITIVE_INFINITY));
  const rampSec = target / rate;
  const holdSeconds = Math.ceil(rampSec + s.concurrencyPlateau);
  const rssBeforeKb = path.rss();
  const fdsBefore = path.openFiles('rtpengine');
  let fdsHeld = fdsBefore;
  let peakSessions = 0;
  let peakEngineDialogs = 0;
  let rssHeldKb: Record<string, number> = { ...rssBeforeKb };
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      await sleep(1000);
      if (!sampling) break;
      const held = await path.held().catch(() => undefined);
      const sessions = held?.sessions ?? 0;
      if (sessions >= peakSessions) {
        peakSessions = sessions;
        peakEngineDialogs = held?.engineDialogs ?? 0;
        // Memory is read where the most calls are held (the plateau after the ramp).
        rssHeldKb = path.rss();
        fdsHeld = path.openFiles('rtpengine');
      }
    }
  })();
  say(`  ${path.name.padEnd(14)} ramping to ${target} calls at ${rate}/s, each held ${holdSeconds} s${cappedBy ? ` (capped by ${cappedBy})` : ''} ...`);
  const m = await measure(path, {
    scenario: 'bench-uac', target: path.target, callers: path.callers.slice(0, 1), callees: path.callees, rate, calls: target,
    holdMs: holdSeconds * 1000, uacRate: Math.max(rate, s.uacRate), workDir: join(workDir, 'concurrency'), statEverySec: 1, maxConcurrent: target + 100,
  });
  const { r } = m;
  sampling = false;
  await sampler;
  const maxHeld = r.failed === 0 && r.successful === target && m.leaked.calleeOpen === 0 && m.leaked.sessions === 0 ? target : heldBeforeFirstFailure(r.stats);
  const calls = peakSessions || maxHeld;
  const kbPerCall: Record<string, number> = {};
  for (const [k, v] of Object.entries(rssHeldKb)) kbPerCall[k] = Math.round((10 * (v - (rssBeforeKb[k] ?? v))) / Math.max(1, calls)) / 10;
  const both = kbPerCall.engine !== undefined && kbPerCall.b2bua !== undefined ? Math.round(10 * (kbPerCall.engine + kbPerCall.b2bua)) / 10 : undefined;
  say(
    `  ${path.name.padEnd(14)} ${r.successful}/${target} ok${r.failed ? `, ${r.failed} FAILED` : ''}${leakText(m.leaked) ? `, ${leakText(m.leaked)}` : ''}; ` +
      `peak held ${peakSessions} calls (${peakEngineDialogs} engine dialogs); ` +
      `RSS per held call: ${Object.entries(kbPerCall).map(([k, v]) => `${k} ${v} KB`).join(', ')}` +
      `${fdsBefore !== undefined && fdsHeld !== undefined ? `; RTPEngine files open ${fdsBefore} -> ${fdsHeld}` : ''}`,
  );
  return {
    target, rate, holdSeconds, cappedBy, successful: r.successful, failed: r.failed, leaked: m.leaked, peakSessions, peakEngineDialogs, maxHeldZeroFailures: maxHeld,
    rssBeforeKb, rssHeldKb, kbPerCall, engineAndB2buaKbPerCall: both, cpu: m.cpu,
    rtpengineFds: fdsBefore !== undefined && fdsHeld !== undefined ? { before: fdsBefore, held: fdsHeld } : undefined,
  };
}

// ------------------------------------------------------------------------------------ media

export const PCAP = '/usr/share/sip-tester/g711a.pcap';

/** Packets in a classic pcap file (the RTP packets SIPp's play_pcap_audio sends per call). */
export function pcapPacketCount(file: string): number {
  const b = readFileSync(file);
  const magic = b.readUInt32LE(0);
  const little = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (!little && b.readUInt32BE(0) !== 0xa1b2c3d4 && b.readUInt32BE(0) !== 0xa1b23c4d) throw new Error(`${file} is not a pcap file`);
  let n = 0;
  for (let o = 24; o + 16 <= b.length; n++) o += 16 + (little ? b.readUInt32LE(o + 8) : b.readUInt32BE(o + 8));
  return n;
}

interface MediaFigures {
  callerToCallee?: { packets?: number };
  calleeToCaller?: { packets?: number };
}

export async function mediaRun(path: RunningPath, s: BenchSettings, workDir: string, say: Say): Promise<MediaRun> {
  const pcapPackets = pcapPacketCount(PCAP);
  const rate = Math.min(s.mediaRate, s.mediaCalls);
  // Every call plays the whole file (about 7 s) and the last one starts calls/rate seconds in.
  const holdSeconds = 10;
  let withFigures = 0;
  let fromCallers = 0;
  let fromCallees = 0;
  const off = path.onB2buaLine((l) => {
    if (l.msg !== 'call ended') return;
    const media = l.media as MediaFigures | undefined;
    if (!media) return;
    withFigures++;
    fromCallers += Number(media.callerToCallee?.packets ?? 0);
    fromCallees += Number(media.calleeToCaller?.packets ?? 0);
  });
  say(`  ${path.name.padEnd(14)} ${s.mediaCalls} calls at ${rate}/s, each playing ${pcapPackets} PCMA packets and held ${holdSeconds} s ...`);
  const m = await measure(path, {
    scenario: 'bench-uac-audio', target: path.target, callers: path.callers.slice(0, 1), callees: path.callees, rate, calls: s.mediaCalls,
    holdMs: holdSeconds * 1000, uacRate: Math.max(rate, s.uacRate), workDir: join(workDir, 'media'), maxConcurrent: s.mediaCalls + 10,
  });
  const { r } = m;
  off();
  const sent = r.successful * pcapPackets;
  const ratio = (a: number, b: number): number => (b > 0 ? Math.max(0, 1 - a / b) : NaN);
  const run: MediaRun = {
    calls: s.mediaCalls, rate, holdSeconds, successful: r.successful, failed: r.failed, leaked: m.leaked, pcapPackets, callsWithFigures: withFigures,
    sentByCallers: sent, rtpengineFromCallers: fromCallers, rtpengineFromCallees: fromCallees,
    lossToRtpengine: ratio(fromCallers, sent), lossThroughRtpengine: ratio(fromCallees, fromCallers), lossTotal: ratio(fromCallees, sent),
    cpu: m.cpu,
  };
  const pct = (v: number): string => `${(100 * v).toFixed(3)}%`;
  say(
    `  ${path.name.padEnd(14)} ${r.successful}/${s.mediaCalls} ok${r.failed ? `, ${r.failed} FAILED` : ''}; RTPEngine got ${fromCallers} of ${sent} packets from callers ` +
      `(loss ${pct(run.lossToRtpengine)}) and ${fromCallees} back from callees (loss through RTPEngine ${pct(run.lossThroughRtpengine)}); CPU ${formatCpu(run.cpu)}` +
      `${leakText(m.leaked) ? `; ${leakText(m.leaked)}` : ''}`,
  );
  return run;
}
