/**
 * Where a call's set-up time goes, from the call log (not a test):
 *
 *   node dist/bench/setup-breakdown.js <calls.db> [--min-calls 200] [--gap-ms 3000]
 *
 * Reads a SQLite call log (a bench run's var/bench/<run>/<path>/calls.db, kept with
 * BENCH_KEEP_VAR=1, or var/calls.db) and, for every call whose SIP messages are stored, times
 * the segments of INVITE -> 180 on the engine's clock (the capture's timestamps, 1 ms):
 *
 *   b2bua+media  A-leg INVITE in -> B-leg INVITE out: engine to B2BUA, RTPEngine offer, back
 *   far end      B-leg INVITE out -> its 180 in: Kamailio, the callee, Kamailio
 *   relay        B-leg 180 in -> A-leg 180 out: engine to B2BUA and back
 *   total        A-leg INVITE in -> A-leg 180 out (the caller adds Kamailio both ways)
 *
 * Calls are grouped into runs (a gap of more than --gap-ms between INVITEs starts a new one), so
 * a bench's steps and its cost run show apart; runs of fewer than --min-calls calls are left out.
 */
import Database from 'better-sqlite3';
import { decodeMessages } from '../lib/call-log/call-sql';
import type { StoredSipMessage } from '../lib/call-log/call-record';

interface Timed {
  at: number;
  offer: number;
  far: number;
  relay: number;
  total: number;
}

const SEGMENTS = [
  ['b2bua+media', 'offer'],
  ['far end', 'far'],
  ['relay', 'relay'],
  ['total', 'total'],
] as const;

function firstAt(messages: readonly StoredSipMessage[], leg: 'a' | 'b', dir: 'in' | 'out', start: RegExp): number | undefined {
  return messages.find((m) => m.leg === leg && m.dir === dir && start.test(m.text))?.at.getTime();
}

function timed(messages: readonly StoredSipMessage[]): Timed | undefined {
  const aInvite = firstAt(messages, 'a', 'in', /^INVITE /);
  const bInvite = firstAt(messages, 'b', 'out', /^INVITE /);
  const b180 = firstAt(messages, 'b', 'in', /^SIP\/2\.0 18\d /);
  const a180 = firstAt(messages, 'a', 'out', /^SIP\/2\.0 18\d /);
  if (aInvite === undefined || bInvite === undefined || b180 === undefined || a180 === undefined) return undefined;
  return { at: aInvite, offer: bInvite - aInvite, far: b180 - bInvite, relay: a180 - b180, total: a180 - aInvite };
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

function main(argv: readonly string[]): void {
  const file = argv[0];
  if (!file || file.startsWith('--')) throw new Error('usage: node dist/bench/setup-breakdown.js <calls.db> [--min-calls 200] [--gap-ms 3000]');
  let minCalls = 200;
  let gapMs = 3000;
  for (let i = 1; i < argv.length; i += 2) {
    const value = Number(argv[i + 1]);
    if (!Number.isInteger(value) || value < 1) throw new Error(`${argv[i]} wants a positive integer, got ${JSON.stringify(argv[i + 1])}`);
    if (argv[i] === '--min-calls') minCalls = value;
    else if (argv[i] === '--gap-ms') gapMs = value;
    else throw new Error(`unknown argument ${JSON.stringify(argv[i])}`);
  }
  const db = new Database(file, { readonly: true, fileMustExist: true });
  const calls: Timed[] = [];
  try {
    for (const row of db.prepare('SELECT call_id, messages FROM call_message_sets').iterate() as Iterable<{ call_id: string; messages: string }>) {
      const t = timed(decodeMessages(row.messages, row.call_id));
      if (t) calls.push(t);
    }
  } finally {
    db.close();
  }
  calls.sort((x, y) => x.at - y.at);
  const runs: Timed[][] = [];
  for (const c of calls) {
    const run = runs[runs.length - 1];
    if (run && c.at - run[run.length - 1]!.at <= gapMs) run.push(c);
    else runs.push([c]);
  }
  const shown = runs.filter((r) => r.length >= minCalls);
  if (shown.length === 0) {
    process.stdout.write(`${calls.length} calls with both legs' INVITE and 180 stored; no run of ${minCalls} or more\n`);
    return;
  }
  for (const run of shown) {
    const seconds = Math.max(1, run[run.length - 1]!.at - run[0]!.at) / 1000;
    process.stdout.write(`run from ${new Date(run[0]!.at).toISOString()}: ${run.length} calls, ~${Math.round(run.length / seconds)}/s (engine clock, ms)\n`);
    for (const [label, key] of SEGMENTS) {
      const v = run.map((c) => c[key]).sort((x, y) => x - y);
      process.stdout.write(`  ${label.padEnd(12)} p50 ${quantile(v, 0.5)}  p95 ${quantile(v, 0.95)}  p99 ${quantile(v, 0.99)}  max ${v[v.length - 1]}\n`);
    }
  }
}

try {
  main(process.argv.slice(2));
} catch (err) {
  process.stderr.write(`setup-breakdown: ${(err as Error).message}\n`);
  process.exit(1);
}
