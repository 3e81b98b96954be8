// The benchmark's results: the JSON document, the terminal tables, the targets of issue 5 checked
// against the same run's baseline, and which process saturates where a path fails.

import type { Concurrency, FixedRun, LatencyRun, MediaRun, Percentiles, RateSearch, Step } from './phases';
import type { ProfileSummary } from './profile';
import { PATH_TITLES, type PathName } from './settings';

export interface PathReport {
  readonly name: PathName;
  readonly title: string;
  rate?: RateSearch;
  cost?: FixedRun;
  latency: LatencyRun[];
  concurrency?: Concurrency;
  media?: MediaRun;
  profiles?: Array<{ process: string } & ProfileSummary>;
  error?: string;
}

export interface TargetCheck {
  readonly target: string;
  readonly measured: string;
  /** undefined when the run did not measure it. */
  readonly met: boolean | undefined;
}

export function newPathReport(name: PathName): PathReport {
  return { name, title: PATH_TITLES[name], latency: [] };
}

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

/** A plain text table: the first row is the header; numeric-looking cells are right-aligned. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  const line = (r: string[]): string => r.map((c, i) => pad(c, widths[i] ?? 0, /^[\d.,<>=~%+ -]+(%| ms| KB| us)?$/.test(c) && c.trim() !== '-')).join('  ').trimEnd();
  return [line(rows[0] ?? []), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

const PROCS = ['kamailio', 'rtpengine', 'engine', 'b2bua', 'sipp'];

function byName(paths: readonly PathReport[], name: PathName): PathReport | undefined {
  return paths.find((p) => p.name === name);
}

function fmt(n: number | undefined, digits = 0): string {
  return n === undefined || !Number.isFinite(n) ? '-' : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** The first failing step of a path (the lowest failing rate). */
export function failingStep(r: RateSearch | undefined): Step | undefined {
  return r?.steps.filter((s) => !s.ok).sort((a, b) => a.rate - b.rate)[0];
}

/** "b2bua 99%, engine 71%, kamailio 40%, ... (machine 196% of 200%)" at the failing step. */
export function saturation(st: Step, cores: number): string {
  const procs = Object.entries(st.cpu.percent)
    .filter(([k]) => k !== 'bench')
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${v.toFixed(0)}%`)
    .join(', ');
  const others = st.cpu.machinePercent - Object.values(st.cpu.percent).reduce((a, b) => a + b, 0);
  return `${procs}, this harness ${fmt(st.cpu.percent.bench)}%, other processes ~${fmt(Math.max(0, others))}% (machine ${fmt(st.cpu.machinePercent)}% of ${cores * 100}%)`;
}

/** Which process is the limit: a single-threaded one near a full core, else the machine. */
export function bottleneck(st: Step, cores: number): string {
  if (st.failed === 0 && (st.leaked.calleeOpen > 0 || st.leaked.sessions > 0)) {
    return 'calls left open (every call was set up and the BYE of the caller answered, but the callee leg was never torn down): a correctness fault under load, not a capacity limit';
  }
  const single = ['engine', 'b2bua'].filter((k) => (st.cpu.percent[k] ?? 0) >= 85);
  if (single.length) return `${single.join(' and ')} at a full core (Node is single-threaded)`;
  if (st.cpu.machinePercent >= cores * 100 * 0.85) {
    const top = Object.entries(st.cpu.percent)
      .filter(([k]) => k !== 'bench')
      .sort((a, b) => b[1] - a[1])[0];
    return `the machine's ${cores} cores are busy (largest share: ${top ? `${top[0]} ${top[1].toFixed(0)}%` : '?'})`;
  }
  return 'no process at a full core and the machine not saturated: latency/timeouts (see the failure)';
}

export function targetChecks(paths: readonly PathReport[]): TargetCheck[] {
  const out: TargetCheck[] = [];
  const base = byName(paths, 'baseline');
  const chain = byName(paths, 'chain');
  const baseRate = base?.rate?.maxZeroFailureRate;
  const chainRate = chain?.rate?.maxZeroFailureRate;
  if (baseRate && chainRate !== undefined) {
    // A search that never failed only gives a lower bound for that path.
    const ratio = chainRate / baseRate;
    const baseCapped = base?.rate?.capped === true && base.rate.steps.every((st) => st.ok);
    const chainCapped = chain?.rate?.capped === true && chain.rate.steps.every((st) => st.ok);
    let met: boolean | undefined;
    if (!baseCapped && !chainCapped) met = ratio >= 0.25;
    else if (chainCapped && !baseCapped) met = ratio >= 0.25 ? true : undefined; // the true ratio is higher
    else if (baseCapped && !chainCapped) met = ratio < 0.25 ? false : undefined; // the true ratio is lower
    out.push({
      target: 'full chain (RTPEngine + call log) zero-failure rate >= 25% of Kamailio-only',
      measured:
        `${fmt(chainRate)}${chainCapped ? '+' : ''} / ${fmt(baseRate)}${baseCapped ? '+' : ''} calls/s = ${fmt(100 * ratio, 1)}%` +
        `${met === undefined ? ' (a search reached BENCH_RATE_MAX: raise it to decide)' : ''}`,
      met,
    });
  } else out.push({ target: 'full chain zero-failure rate >= 25% of Kamailio-only', measured: 'not measured (needs phases baseline and chain)', met: undefined });

  const at = (p: PathReport | undefined, rate: number): LatencyRun | undefined => (p?.cost?.rate === rate ? p.cost.latency : undefined) ?? p?.latency.find((l) => l.rate === rate);
  const b100 = at(base, 100);
  const c100 = at(chain, 100);
  const bCap = b100?.capture?.ringing;
  const cCap = c100?.capture?.ringing;
  if (b100 && c100 && b100.ringing.samples && c100.ringing.samples) {
    const sippAdded = c100.ringing.p99 - b100.ringing.p99;
    const sipp = `chain p99 ${fmt(c100.ringing.p99)} ms - baseline p99 ${fmt(b100.ringing.p99)} ms = ${fmt(sippAdded)} ms (${sippResolution([b100, c100])})`;
    if (bCap?.samples && cCap?.samples) {
      // Compared at the resolution shown.
      const added = Math.round(10 * (cCap.p99 - bCap.p99)) / 10;
      out.push({
        target: 'B2BUA-added INVITE->180 p99 <= 2 ms at 100 calls/s',
        measured: `capture: chain p99 ${fmt(cCap.p99, 1)} ms - baseline p99 ${fmt(bCap.p99, 1)} ms = ${fmt(added, 1)} ms (tcpdump on lo, us timestamps, 0.1 ms resolution); SIPp: ${sipp}`,
        met: added <= 2,
      });
    } else {
      out.push({
        target: 'B2BUA-added INVITE->180 p99 <= 2 ms at 100 calls/s',
        measured: `SIPp only (${c100.captureNote ?? b100.captureNote ?? 'no capture on one of the paths'}): ${sipp}`,
        met: sippAdded <= 2,
      });
    }
  } else out.push({ target: 'B2BUA-added INVITE->180 p99 <= 2 ms at 100 calls/s', measured: 'not measured (needs cost or latency at 100 calls/s on baseline and chain)', met: undefined });

  const conc = paths.filter((p) => p.concurrency);
  if (conc.length) {
    for (const p of conc) {
      const c = p.concurrency as Concurrency;
      out.push({
        target: `${p.name}: 10,000 calls held with zero failures`,
        measured: `${fmt(c.maxHeldZeroFailures)} held with zero failures of ${fmt(c.target)} offered${c.cappedBy ? ` (capped by ${c.cappedBy})` : ''}`,
        met: c.failed === 0 && c.leaked.calleeOpen === 0 && c.leaked.sessions === 0 && c.maxHeldZeroFailures >= 10_000,
      });
      out.push({
        target: `${p.name}: engine + B2BUA memory <= 20 KB per held call`,
        measured: `${fmt(c.engineAndB2buaKbPerCall, 1)} KB (engine ${fmt(c.kbPerCall.engine, 1)}, b2bua ${fmt(c.kbPerCall.b2bua, 1)}) at ${fmt(c.peakSessions)} calls`,
        met: c.engineAndB2buaKbPerCall !== undefined ? c.engineAndB2buaKbPerCall <= 20 : undefined,
      });
    }
  } else out.push({ target: '10,000 calls held; <= 20 KB per call', measured: 'not measured (phase concurrency)', met: undefined });

  const media = chain?.media;
  if (media) {
    out.push({
      target: `${fmt(media.calls)} concurrent calls with RTP: packet loss < 0.1%`,
      measured: `${fmt(100 * media.lossTotal, 3)}% round trip (${fmt(100 * media.lossToRtpengine, 3)}% caller -> RTPEngine, ${fmt(100 * media.lossThroughRtpengine, 3)}% RTPEngine -> callee -> RTPEngine)`,
      met: media.failed === 0 && media.leaked.calleeOpen === 0 && media.lossTotal < 0.001,
    });
  } else out.push({ target: '200 concurrent calls with RTP: packet loss < 0.1%', measured: 'not measured (phase media)', met: undefined });
  return out;
}

/** "4 ms steps" (the step SIPp's values moved in), or "whole ms" when no step was seen. */
function sippResolution(runs: readonly LatencyRun[]): string {
  const steps = runs.map((l) => l.sippStepMs).filter((v): v is number => v !== undefined && v > 0);
  return steps.length ? `SIPp -trace_rtt, ${Number(Math.min(...steps).toFixed(3))} ms steps` : 'SIPp -trace_rtt, whole ms';
}

/** The terminal summary: rates, cost, latency, concurrency, media, targets, saturation notes. */
export function summaryText(paths: readonly PathReport[], targets: readonly TargetCheck[], cores: number): string {
  const parts: string[] = [];
  const base = byName(paths, 'baseline')?.rate?.maxZeroFailureRate;
  const rated = paths.filter((p) => p.rate);
  if (rated.length) {
    const rows = [['path', 'max zero-failure', 'vs Kamailio-only', 'max, calls left open allowed', 'first failing', 'CPU at first failing step']];
    for (const p of rated) {
      const r = p.rate as RateSearch;
      const fail = failingStep(r);
      const strictCapped = r.capped && r.steps.every((st) => st.ok);
      rows.push([
        p.name,
        `${fmt(r.maxZeroFailureRate)}${strictCapped ? '+' : ''} calls/s`,
        base ? `${fmt((100 * r.maxZeroFailureRate) / base)}%` : '-',
        `${fmt(r.maxNoFailedCallRate)}${r.capped ? '+' : ''} calls/s`,
        fail ? `${fmt(fail.rate)} calls/s` : `none up to ${fmt(r.steps[r.steps.length - 1]?.rate)}`,
        fail ? Object.entries(fail.cpu.percent).filter(([k]) => k !== 'bench').sort((a, b) => b[1] - a[1]).slice(0, 4).map(([k, v]) => `${k} ${v.toFixed(0)}%`).join(' ') : '-',
      ]);
    }
    parts.push(`Zero-failure session rate (RFC 7501/7502 step search)\n${table(rows)}`);
  }
  const costed = paths.filter((p) => p.cost);
  if (costed.length) {
    const c0 = costed[0]?.cost as FixedRun;
    const rows = [['path', ...PROCS.map((k) => `${k} us`), 'failed', 'left open']];
    for (const p of costed) {
      const c = p.cost as FixedRun;
      rows.push([p.name, ...PROCS.map((k) => fmt(c.cpu.microsPerCall[k])), fmt(c.failed), fmt(Math.max(c.leaked.calleeOpen, c.leaked.sessions))]);
    }
    parts.push(`CPU microseconds per call (${fmt(c0.calls)} calls at ${fmt(c0.rate)} calls/s; Kamailio summed over its processes)\n${table(rows)}`);
  }
  const lat: Array<[PathReport, LatencyRun]> = [];
  for (const p of paths) {
    if (p.cost) lat.push([p, p.cost.latency]);
    for (const l of p.latency) lat.push([p, l]);
  }
  if (lat.length) {
    const three = (q: Percentiles | undefined, digits: number): string => (q ? `${fmt(q.p50, digits)} / ${fmt(q.p95, digits)} / ${fmt(q.p99, digits)} ms` : '-');
    const rows = [['path', 'rate', 'INVITE->180 p50/p95/p99', 'INVITE->200 p50/p95/p99', 'SIPp ->180', 'SIPp ->200', 'captured', 'unmatched', 'SIPp samples', 'failed', 'left open', 'run']];
    const notes: string[] = [];
    for (const [p, l] of lat.sort((a, b) => a[1].rate - b[1].rate || a[0].name.localeCompare(b[0].name))) {
      const c = l.capture;
      rows.push([
        p.name, `${fmt(l.rate)}/s`, three(c?.ringing, 1), three(c?.answered, 1), three(l.ringing, 0), three(l.answered, 0),
        c ? fmt(c.calls) : '-', c ? fmt(c.unmatched) : '-', fmt(l.ringing.samples), fmt(l.failed), fmt(Math.max(l.leaked.calleeOpen, l.leaked.sessions)), l.why ?? '',
      ]);
      if (l.captureNote) notes.push(`note: ${p.name} at ${fmt(l.rate)}/s: ${l.captureNote}`);
    }
    parts.push(
      'Setup latency at the caller (the callee waits 10 ms between 180 and 200). INVITE->180/200: tcpdump on lo at the callers\' SIP ports, ' +
        `kernel timestamps in us, shown to 0.1 ms; SIPp ->180/200: ${sippResolution(lat.map(([, l]) => l))} (CLOCK_MONOTONIC_COARSE, one kernel tick)\n` +
        `${table(rows)}${notes.length ? `\n${notes.join('\n')}` : ''}`,
    );
  }
  for (const [p, l] of lat) {
    const h = l.hops;
    if (!h) continue;
    const rows = [['step (time spent in)', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms']];
    const ms = (v: number): string => fmt(v, 2);
    for (const st of h.steps) rows.push([`${st.name} (${st.in})`, ms(st.p50), ms(st.p95), ms(st.p99), ms(st.max)]);
    rows.push(['INVITE->180 at the caller', ms(h.total.p50), ms(h.total.p95), ms(h.total.p99), ms(h.total.max)]);
    const per = [['process (its steps summed per call)', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms']];
    for (const q of h.perProcess) per.push([q.process, ms(q.p50), ms(q.p95), ms(q.p99), ms(q.max)]);
    parts.push(
      `Where INVITE->180 goes on ${p.name} at ${fmt(l.rate)}/s (BENCH_HOPS: tcpdump of every hop on lo; ${fmt(h.calls)} calls` +
        `${h.incomplete ? `, ${fmt(h.incomplete)} without every hop left out` : ''}; percentiles per step do not add up)\n${table(rows)}\n${table(per)}`,
    );
  }
  const conc = paths.filter((p) => p.concurrency);
  if (conc.length) {
    const rows = [['path', 'offered', 'held, 0 failures', 'failed', 'left open', 'engine KB/call', 'b2bua KB/call', 'engine+b2bua', 'rtpengine KB/call', 'kamailio KB/call']];
    for (const p of conc) {
      const c = p.concurrency as Concurrency;
      rows.push([p.name, fmt(c.target), fmt(c.maxHeldZeroFailures), fmt(c.failed), fmt(Math.max(c.leaked.calleeOpen, c.leaked.sessions)), fmt(c.kbPerCall.engine, 1), fmt(c.kbPerCall.b2bua, 1), fmt(c.engineAndB2buaKbPerCall, 1), fmt(c.kbPerCall.rtpengine, 1), fmt(c.kbPerCall.kamailio, 1)]);
    }
    parts.push(`Concurrent calls held (no RTP; RSS growth over the held calls)\n${table(rows)}`);
    for (const p of conc) if (p.concurrency?.cappedBy) parts.push(`note: ${p.name} concurrency capped at ${fmt(p.concurrency.target)} by ${p.concurrency.cappedBy}`);
  }
  const media = paths.find((p) => p.media);
  if (media?.media) {
    const m = media.media;
    parts.push(
      `Media: ${fmt(m.successful)}/${fmt(m.calls)} calls with PCMA through RTPEngine (${m.pcapPackets} packets each): ` +
        `RTPEngine received ${fmt(m.rtpengineFromCallers)} of ${fmt(m.sentByCallers)} from callers, ${fmt(m.rtpengineFromCallees)} back from callees; ` +
        `loss ${fmt(100 * m.lossTotal, 3)}% round trip; CPU rtpengine ${fmt(m.cpu.percent.rtpengine)}%`,
    );
  }
  parts.push(`Targets (issue 5)\n${table([['target', 'measured', 'met'], ...targets.map((t) => [t.target, t.measured, t.met === undefined ? '-' : t.met ? 'yes' : 'NO'])])}`);
  const notes: string[] = [];
  for (const p of rated) {
    const fail = failingStep(p.rate);
    if (fail) notes.push(`${p.name}: first failing step ${fmt(fail.rate)} calls/s; limit: ${bottleneck(fail, cores)}.\n    CPU there: ${saturation(fail, cores)}${fail.failure ? `\n    ${fail.failure}` : ''}`);
    const capacity = p.rate?.steps.filter((st) => !st.callsOk).sort((a, b) => a.rate - b.rate)[0];
    if (capacity && capacity !== fail) notes.push(`${p.name}: first step with failed calls ${fmt(capacity.rate)} calls/s; limit: ${bottleneck(capacity, cores)}.\n    CPU there: ${saturation(capacity, cores)}${capacity.failure ? `\n    ${capacity.failure}` : ''}`);
    else if (p.rate?.capped) notes.push(`${p.name}: no failure up to BENCH_RATE_MAX; the real limit is higher`);
  }
  if (notes.length) parts.push(`Where each path stops\n  ${notes.join('\n  ')}`);
  for (const p of paths) {
    for (const prof of p.profiles ?? []) {
      const rows = [['self %', 'self ms', 'function', 'where', 'mostly called from'], ...prof.top.slice(0, 15).map((h) => [`${h.selfPercent.toFixed(1)}%`, fmt(h.selfMs), h.fn, h.where, h.via ?? ''])];
      parts.push(`CPU profile of the ${prof.process} on ${p.name} (${fmt(prof.busyMs)} ms busy, ${fmt(prof.idleMs)} ms idle): top self time\n${table(rows)}`);
    }
  }
  return parts.join('\n\n');
}
