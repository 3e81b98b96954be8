import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { join, relative } from 'node:path';
import { destination, pino } from 'pino';
import { findRepoRoot } from '../lib/stack/stack';
import { coldProbe, describeColdProbe } from './cold-probe';
import { startPath, type RunningPath } from './paths';
import { concurrency, fixedRun, latencyAt, mediaRun, searchRate, warmUp, type Say } from './phases';
import { machineCpuMicros } from './proc';
import { profilesOf, summariseProfile } from './profile';
import { newPathReport, summaryText, targetChecks, type PathReport } from './report';
import { loadSettings, SettingsError, type BenchSettings, type PathName } from './settings';
import { closeSipp, stopAllSipp } from './sipp-load';
import { rateChart } from './svg';

/**
 * `npm run bench`: how many calls per second without a failure, how many held, at what cost,
 * for the full chain (Kamailio -> engine -> B2BUA with RTPEngine and the call log, and without
 * each of those) beside phone -> Kamailio -> phone measured in the same run. Everything runs on
 * 127.0.0.1 on free ports; every load is bounded in calls and seconds. Settings: bench/settings.ts
 * (BENCH_PHASES, BENCH_QUICK=1 for a smoke run of about three minutes, ...).
 *
 * Output: tables on the terminal, bench/results/bench-<time>.json and bench-<time>.svg.
 */

const root = findRepoRoot(__dirname);
const say: Say = (line) => process.stdout.write(`${line}\n`);

function version(cmd: string, args: string[], pattern: RegExp): string {
  try {
    const out = execFileSync(cmd, args, { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'pipe'] });
    return pattern.exec(out)?.[1] ?? out.split('\n')[0]?.trim() ?? '?';
  } catch (err) {
    const out = `${(err as { stdout?: string }).stdout ?? ''}`;
    return pattern.exec(out)?.[1] ?? 'unknown';
  }
}

/** Which phases need which path. */
function pathPlan(s: BenchSettings): PathName[] {
  const p = s.phases;
  const wanted = (name: PathName): boolean =>
    (name === 'baseline' && (p.has('baseline') || p.has('cost') || p.has('latency'))) ||
    (name !== 'baseline' && (p.has('chain') || p.has('cost')) && s.chainVariants.includes(name)) ||
    (name === 'chain' && (p.has('latency') || p.has('media'))) ||
    (p.has('concurrency') && s.concurrencyPaths.includes(name)) ||
    (name === 'chain-drachtio' && p.has('drachtio'));
  // The chain first: the latency phase runs both paths at half the chain's maximum rate.
  return (['chain', 'chain-nolog', 'chain-nomedia', 'chain-drachtio', 'baseline'] as const).filter(wanted);
}

async function main(): Promise<void> {
  let s: BenchSettings;
  try {
    s = loadSettings(process.env);
  } catch (err) {
    if (err instanceof SettingsError) {
      process.stderr.write(`bench: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const started = new Date();
  const loadAtStart = loadavg();
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  const varDir = join(root, 'var', 'bench', stamp);
  const outDir = join(root, 'bench', 'results');
  mkdirSync(varDir, { recursive: true });
  mkdirSync(outDir, { recursive: true });
  const logger = pino({ level: s.logLevel, base: { proc: 'bench' } }, destination(2));
  const cores = cpus().length;
  const plan = pathPlan(s);
  const reports: PathReport[] = [];
  const notes: string[] = [];
  let current: RunningPath | undefined;
  let interrupted = false;
  process.on('SIGINT', () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    say('\ninterrupted: stopping every process started ...');
    void Promise.all([closeSipp(), current?.stop()]).finally(() => process.exit(130));
  });

  say(
    `bench: phases ${[...s.phases].join(',')}; paths ${plan.join(', ')}${s.quick ? ' (BENCH_QUICK)' : ''}\n` +
      `  rate search: ${s.stepSeconds} s steps from ${s.rateStart} calls/s x${s.rateFactor} up to ${s.rateMax}, ${s.refine} bisections; calls held ${s.holdMs} ms\n` +
      `  cost: ${s.costCalls} calls at ${s.costRate}/s; concurrency: ${s.concurrencyMax} at ${s.concurrencyRate}/s (${s.concurrencyPaths.join(', ')}); media: ${s.mediaCalls} calls\n` +
      `  ${cores} cores, load average ${loadAtStart.map((l) => l.toFixed(2)).join(' ')}; runtime files under ${relative(root, varDir)}`,
  );
  // Shared machines drift: say how busy it is before we add anything.
  const m0 = machineCpuMicros();
  await new Promise((r) => setTimeout(r, 2000));
  const m1 = machineCpuMicros();
  const idleBusy = Math.round((100 * (m1.busy - m0.busy)) / ((m1.total - m0.total) / cores));
  say(`  the machine is ${idleBusy}% busy (of ${cores * 100}%) before the benchmark starts${idleBusy > 30 ? ': other work is running, figures will be noisy' : ''}`);
  notes.push(`machine ${idleBusy}% busy (of ${cores * 100}%) before the run; every step records the machine's total CPU beside ours`);
  notes.push(`every Kamailio (baseline and chains) runs with -m ${s.kamailioShmMb} (BENCH_KAMAILIO_SHM_MB)`);
  if (s.phases.has('cost') || s.phases.has('latency')) {
    // the cost and latency figures at 100 calls/s are taken with every event run cold: say how cold
    const cold = describeColdProbe(await coldProbe());
    say(`  cold start: ${cold}`);
    notes.push(`cold start: ${cold}`);
  }
  if (s.phases.has('concurrency')) notes.push(`the full chain's concurrency phase runs ${s.concurrencyRtpengines} RTPEngine(s) (BENCH_CONCURRENCY_RTPENGINES) over ports ${s.rtpPortMin}-${s.rtpPortMax}`);
  const callers = Math.max(2, Math.ceil(s.rateMax / s.uacRate) + 1);
  let chainMax: number | undefined;
  for (const name of plan) {
    const rep = newPathReport(name);
    reports.push(rep);
    const profileDir = s.profilePaths.includes(name) ? join(outDir, `profiles-${stamp}`, name) : undefined;
    if (profileDir) mkdirSync(profileDir, { recursive: true });
    say(`\n== ${name}: ${rep.title}`);
    const pathStarted = Date.now();
    const lap = (what: string): void => logger.info({ path: name, seconds: (Date.now() - pathStarted) / 1000 }, what);
    let pids: { engine?: number; b2bua?: number } = {};
    try {
      // A path measured only for concurrency starts with that phase's RTPEngines straight away.
      const onlyConcurrency = !(['baseline', 'chain', 'cost', 'latency'] as const).some((p) => s.phases.has(p)) && !(name === 'chain' && s.phases.has('media'));
      const concurrencyRtpengines = s.concurrencyRtpengines;
      current = await startPath({ name, settings: s, varDir, logger, callers, limitSec: 4 * 3600, profileDir, rtpengines: onlyConcurrency ? concurrencyRtpengines : 1 });
      const path = current;
      pids = { engine: path.pid('engine'), b2bua: path.pid('b2bua') };
      lap('started');
      const ph = s.phases;
      const work = join(varDir, name);
      await warmUp(path, s, work, say);
      lap('warmed up');
      const drachtioPath = name === 'chain-drachtio';
      if ((name === 'baseline' && ph.has('baseline')) || (name !== 'baseline' && ph.has('chain') && s.chainVariants.includes(name)) || drachtioPath) {
        rep.rate = await searchRate(path, s, work, say);
        // Capacity (failed calls only): calls left open are a fault of their own, reported beside it.
        if (name === 'chain') chainMax = rep.rate.maxNoFailedCallRate;
        lap('rate searched');
      }
      if (ph.has('cost') && (name === 'baseline' || s.chainVariants.includes(name) || drachtioPath)) {
        rep.cost = await fixedRun(path, s, work, say);
        lap('costed');
      }
      if (ph.has('latency') && (name === 'baseline' || name === 'chain')) {
        const rates = new Map<number, string>(s.latencyRates.map((r) => [r, 'BENCH_LATENCY_RATES']));
        if (!ph.has('cost')) rates.set(s.costRate, 'BENCH_COST_RATE');
        if (chainMax !== undefined && chainMax > 0) rates.set(Math.max(1, Math.floor(chainMax / 2)), 'half the chain maximum');
        else if (name === 'chain') notes.push('latency at half the chain maximum: not measured (the chain rate search did not run or found no clean step)');
        // The cost run already measured the latency at its rate.
        if (rep.cost) rates.delete(rep.cost.rate);
        for (const [rate, why] of [...rates].sort((a, b) => a[0] - b[0])) rep.latency.push(await latencyAt(path, s, rate, why, work, say));
        lap('latency measured');
      }
      if (ph.has('media') && name === 'chain') {
        rep.media = await mediaRun(path, s, work, say);
        lap('media measured');
      }
      let last = path;
      if (ph.has('concurrency') && s.concurrencyPaths.includes(name)) {
        if (rep.rate || rep.cost || rep.latency.length || rep.media || (!onlyConcurrency && concurrencyRtpengines !== 1 && name === 'chain')) {
          // Memory per held call is RSS growth: in processes whose heaps the earlier phases grew,
          // held calls fill free heap and look free. Fresh processes, warmed up, instead.
          say(`  ${name.padEnd(14)} fresh processes for the concurrency phase`);
          await stopAllSipp();
          await path.stop();
          current = undefined;
          const fresh = join(varDir, 'fresh');
          current = await startPath({ name, settings: s, varDir: fresh, logger, callers, limitSec: 4 * 3600, rtpengines: concurrencyRtpengines });
          last = current;
          await warmUp(last, s, join(fresh, name), say);
        }
        rep.concurrency = await concurrency(last, s, join(varDir, 'fresh', name), say, rep.rate?.maxNoFailedCallRate || undefined);
        lap('concurrency measured');
      }
      const dead = last.dead();
      if (dead) rep.error = `${dead} died during the run`;
    } catch (err) {
      rep.error = (err as Error).message;
      say(`  ${name}: ERROR ${(err as Error).message}`);
    } finally {
      await stopAllSipp();
      await current?.stop();
      current = undefined;
      lap('stopped');
    }
    say(`  (${name}: ${((Date.now() - pathStarted) / 1000).toFixed(0)} s)`);
    if (profileDir) {
      rep.profiles = [];
      for (const [proc, pid] of Object.entries(pids)) {
        for (const file of pid ? profilesOf(profileDir, pid) : []) rep.profiles.push({ process: proc, ...summariseProfile(file, root) });
      }
      if (rep.profiles.length === 0) notes.push(`${name}: no CPU profile was written (the processes must exit normally)`);
    }
    if (interrupted) return;
  }
  if (s.drachtio && plan.includes('chain-drachtio')) {
    notes.push(
      `chain-drachtio: the B2BUA on the drachtio server at ${s.drachtio.host}:${s.drachtio.port} (SIP ${s.drachtio.sip.address}:${s.drachtio.sip.port}); ` +
        'its CPU and memory are not in the tables (not our process); records carry no SIP ladder (no capture endpoint)',
    );
  }

  const targets = targetChecks(reports);
  say(`\n${summaryText(reports, targets, cores)}`);
  if (notes.length) say(`\nnotes:\n  ${notes.join('\n  ')}`);

  const finished = new Date();
  const json = {
    date: started.toISOString(),
    minutes: Math.round((finished.getTime() - started.getTime()) / 600) / 100,
    command: `${Object.entries(process.env).filter(([k]) => k.startsWith('BENCH_') || k.startsWith('DRACHTIO_')).map(([k, v]) => `${k}=${v}`).join(' ')} npm run bench`.trim(),
    machine: {
      cores,
      loadAverageAtStart: loadAtStart,
      loadAverageAtEnd: loadavg(),
      kernel: release(),
      kamailio: version('kamailio', ['-v'], /version: kamailio (\S+)/),
      rtpengine: version('rtpengine', ['--version'], /Version: (\S+)/),
      sipp: version('sipp', ['-v'], /SIPp (v\S+)/),
      node: process.version,
    },
    settings: { ...s, phases: [...s.phases] },
    paths: reports,
    targets,
    notes,
  };
  const base = join(outDir, `bench-${stamp}`);
  writeFileSync(`${base}.json`, `${JSON.stringify(json, null, 2)}\n`);
  const series = reports
    .filter((r) => r.rate)
    .map((r) => ({
      name: r.name,
      maxZeroFailure: r.rate?.maxZeroFailureRate ?? 0,
      capped: r.rate?.capped === true,
      steps: (r.rate?.steps ?? []).map((st) => ({
        offered: st.rate,
        achieved: st.achievedRate,
        failedPercent: (100 * Math.min(st.calls, st.failed + Math.max(st.leaked.calleeOpen, st.leaked.sessions))) / Math.max(1, st.calls),
      })),
    }));
  if (series.length) writeFileSync(`${base}.svg`, rateChart(series, `Zero-failure call rate, ${cores} cores, ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC`));
  say(`\nresults: ${relative(root, `${base}.json`)}${series.length ? `, ${relative(root, `${base}.svg`)}` : ''} (${json.minutes} minutes)`);
  if (!s.keepVar) rmSync(varDir, { recursive: true, force: true });
}

main().catch(async (err: Error) => {
  process.stderr.write(`bench: ${err.stack ?? err.message}\n`);
  await stopAllSipp();
  process.exit(1);
});
