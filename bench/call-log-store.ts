/**
 * Call-log store benchmark (not a test): for SQLite and PostgreSQL, how fast calls are written
 * and how fast the operator's list queries answer over a large log.
 *
 *   npx tsc -p tsconfig.build.json
 *   node dist/bench/call-log-store.js [--rows 1000000] [--postgres-url URL] [--only sqlite|postgres]
 *                                     [--writes 20000] [--concurrency 16] [--samples 200]
 *
 * Per store: insert rate (each write the first of a call) and update rate (a state change of an
 * existing call), `--writes` of each with `--concurrency` in flight, and the rate of write()
 * batches of 50 records (what the B2BUA's call-log writer sends, one at a time), into
 * the empty log; a fill to `--rows` calls (1000 extensions, 30 days, ~60% answered) in bulk
 * transactions, timed (for PostgreSQL with the VACUUM ANALYZE autovacuum would do); each list
 * query `--samples` times with random parameters: p50/p95/p99 milliseconds; the write rates
 * again, into the full log.
 *
 * SQLite runs in a temporary directory. PostgreSQL is a throwaway server started here with its
 * durable defaults (fsync on), or, with --postgres-url, a new database created on that server
 * (the user needs CREATEDB) and dropped afterwards. Everything runs on 127.0.0.1. Results go to
 * bench/results/call-log-store-<date>.json.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client } from 'pg';
import type { CallQuery } from '../lib/call-log/call-record';
import { CallFactory, DAY_MS, EXTENSIONS, LAST, OUTCOMES, PHONES, SPAN_MS, hex, pick, prng } from './call-log-data';
import { PostgresCallStore, redactUrl } from '../lib/call-log/postgres-store';
import { SqliteCallStore } from '../lib/call-log/sqlite-store';
import { startThrowawayPostgres, type ThrowawayPostgres } from './postgres-server';
import { freePorts } from './proc';

// ---------------------------------------------------------------------------------------------
// Settings

interface Settings {
  rows: number;
  writes: number;
  concurrency: number;
  samples: number;
  postgresUrl: string | undefined;
  only: 'sqlite' | 'postgres' | undefined;
}

function parseArgs(argv: readonly string[]): Settings {
  const settings: Settings = { rows: 1_000_000, writes: 20_000, concurrency: 16, samples: 200, postgresUrl: undefined, only: undefined };
  const positive = (name: string, value: string | undefined): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name} wants a positive integer, got ${JSON.stringify(value)}`);
    return n;
  };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const value = argv[i + 1];
    i += 1;
    switch (arg) {
      case '--rows':
        settings.rows = positive(arg, value);
        break;
      case '--writes':
        settings.writes = positive(arg, value);
        break;
      case '--concurrency':
        settings.concurrency = positive(arg, value);
        break;
      case '--samples':
        settings.samples = positive(arg, value);
        break;
      case '--postgres-url':
        if (value === undefined || !/^postgres(ql)?:\/\//.test(value)) throw new Error('--postgres-url wants a postgres:// or postgresql:// URL');
        settings.postgresUrl = value;
        break;
      case '--only':
        if (value !== 'sqlite' && value !== 'postgres') throw new Error('--only wants sqlite or postgres');
        settings.only = value;
        break;
      default:
        throw new Error(`unknown argument ${JSON.stringify(arg)}; see the comment at the top of bench/call-log-store.ts`);
    }
  }
  if (settings.writes * 2 > settings.rows) settings.writes = Math.floor(settings.rows / 2);
  return settings;
}

// ---------------------------------------------------------------------------------------------
// Measuring

type Store = SqliteCallStore | PostgresCallStore;

interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
  max: number;
  /** Mean rows returned (the page is 50). */
  rows: number;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const round = (ms: number): number => Math.round(ms * 100) / 100;

/** `count` writes, `concurrency` in flight; records per second. */
async function writeRate(count: number, concurrency: number, write: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const started = performance.now();
  const worker = async (): Promise<void> => {
    while (next < count) await write(next++);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return Math.round(count / ((performance.now() - started) / 1000));
}

interface QueryShape {
  name: string;
  /** A random query; `second` runs it again from the first page's cursor and times that. */
  make: (rand: () => number) => CallQuery;
  secondPage?: boolean;
}

function randomWindow(rand: () => number, end: number): { from: Date; to: Date } {
  const length = Math.floor(3_600_000 + rand() * 7 * DAY_MS);
  const to = end - Math.floor(rand() * (SPAN_MS - length));
  return { from: new Date(to - length), to: new Date(to) };
}

function queryShapes(factory: CallFactory): QueryShape[] {
  const end = factory.end;
  return [
    { name: 'latest (no filter)', make: () => ({ limit: 50 }) },
    { name: 'callee', make: (rand) => ({ limit: 50, callee: pick(rand, EXTENSIONS) }) },
    { name: 'caller + outcome', make: (rand) => ({ limit: 50, caller: pick(rand, EXTENSIONS), outcomes: [pick(rand, OUTCOMES)] }) },
    { name: 'time range', make: (rand) => ({ limit: 50, ...randomWindow(rand, end) }) },
    { name: 'outcome + time range', make: (rand) => ({ limit: 50, outcomes: [pick(rand, OUTCOMES)], ...randomWindow(rand, end) }) },
    {
      name: 'outcomes (2) + time range',
      make: (rand) => ({ limit: 50, outcomes: [pick(rand, OUTCOMES), pick(rand, OUTCOMES)], ...randomWindow(rand, end) }),
    },
    {
      name: 'free text',
      make: (rand) => {
        // What an operator types: part of a Call-ID or call id (rare), a name, an extension, an
        // address prefix (common), or something in no call at all.
        const i = Math.floor(rand() * factory.total);
        const kinds = [
          () => factory.first(i).id.slice(0, 8),
          () => factory.first(i).aCallId.slice(2, 14),
          () => pick(rand, LAST).toLowerCase(),
          () => pick(rand, EXTENSIONS),
          () => pick(rand, PHONES).address.split('.').slice(0, 3).join('.'),
          () => `zq${hex(rand, 4)}`,
        ];
        return { limit: 50, text: pick(rand, kinds)() };
      },
    },
    { name: 'second page (callee)', secondPage: true, make: (rand) => ({ limit: 50, callee: pick(rand, EXTENSIONS) }) },
    { name: 'second page (no filter)', secondPage: true, make: () => ({ limit: 50 }) },
  ];
}

async function timeQueries(store: Store, factory: CallFactory, samples: number): Promise<Record<string, Percentiles>> {
  const out: Record<string, Percentiles> = {};
  for (const shape of queryShapes(factory)) {
    const rand = prng(0xc0ffee);
    const times: number[] = [];
    let rows = 0;
    for (let i = 0; i < samples; i += 1) {
      let query = shape.make(rand);
      if (shape.secondPage) {
        // From a random point in time, as a user who went there would; the first page untimed.
        query = { ...query, to: new Date(factory.receivedAt(Math.floor(rand() * factory.total))) };
        const first = await store.list(query);
        if (first.nextCursor === null) continue;
        query = { ...query, cursor: first.nextCursor };
      }
      const started = performance.now();
      const page = await store.list(query);
      times.push(performance.now() - started);
      rows += page.calls.length;
    }
    if (times.length === 0) {
      process.stdout.write(`    ${shape.name.padEnd(26)} no sample (no query had a second page: too few rows)\n`);
      continue;
    }
    times.sort((a, b) => a - b);
    out[shape.name] = {
      p50: round(percentile(times, 50)),
      p95: round(percentile(times, 95)),
      p99: round(percentile(times, 99)),
      max: round(times[times.length - 1]!),
      rows: Math.round(rows / times.length),
    };
    const r = out[shape.name]!;
    process.stdout.write(`    ${shape.name.padEnd(26)} p50 ${r.p50.toFixed(2).padStart(7)}  p95 ${r.p95.toFixed(2).padStart(7)}  p99 ${r.p99.toFixed(2).padStart(7)}  max ${r.max.toFixed(2).padStart(7)} ms  (${r.rows} rows)\n`);
  }
  return out;
}

interface WriteRates {
  insertPerSec: number;
  updatePerSec: number;
  /** write() of batches of BATCH records, one at a time, as the call-log writer does: a call's first and last record. */
  batchedPerSec: number;
}

/** Records per write() in the batched rate (what a 50 ms window holds at a few hundred calls/s). */
const BATCH = 50;

interface StoreResult {
  store: 'sqlite' | 'postgres';
  /** Writes into the empty log, and into the full one (after the queries). */
  writesEmpty: WriteRates;
  writesFull: WriteRates;
  fillSeconds: number;
  fillRowsPerSec: number;
  rows: number;
  queriesMs: Record<string, Percentiles>;
}

/**
 * Inserts, then updates, calls first..first+count-1 one record at a time; then the next `count`
 * calls' first and final records in write() batches.
 */
async function writeRates(store: Store, factory: CallFactory, first: number, settings: Settings, label: string): Promise<WriteRates> {
  const insertPerSec = await writeRate(settings.writes, settings.concurrency, (i) => store.upsert(factory.first(first + i)));
  const updatePerSec = await writeRate(settings.writes, settings.concurrency, (i) => store.upsert(factory.final(first + i)));
  // Each batch: the first records of BATCH / 2 calls and the final ones of the BATCH / 2 before them.
  const half = BATCH / 2;
  // Calls past everything else this benchmark writes (the log and both write phases).
  const from = first + 2 * settings.rows;
  const batches = Math.max(1, Math.floor((2 * settings.writes) / BATCH));
  const batchedPerSec = await writeRate(batches, 1, async (b) => {
    const records = Array.from({ length: half }, (_, k) => factory.first(from + b * half + k));
    if (b > 0) records.push(...Array.from({ length: half }, (_, k) => factory.final(from + (b - 1) * half + k)));
    await store.write({ records, messages: [] });
  }) * BATCH;
  process.stdout.write(
    `    ${label}: insert ${insertPerSec} records/s, update ${updatePerSec} records/s (${settings.writes} each, ${settings.concurrency} in flight); ` +
      `batched ${batchedPerSec} records/s (write() of ${BATCH})\n`,
  );
  return { insertPerSec, updatePerSec, batchedPerSec };
}

async function benchStore(kind: 'sqlite' | 'postgres', store: Store, settings: Settings, afterFill: () => Promise<void>): Promise<StoreResult> {
  const factory = new CallFactory(settings.rows, Date.now());
  // The first write phase uses the newest calls of the log, so the fill never collides with
  // them; the last one adds calls after the log's end.
  const firstLive = settings.rows - settings.writes;
  process.stdout.write(`  ${kind}:\n`);
  const writesEmpty = await writeRates(store, factory, firstLive, settings, 'empty log');

  const batch = kind === 'sqlite' ? 10_000 : 5_000;
  const fillStarted = performance.now();
  let lastReport = fillStarted;
  for (let i = 0; i < firstLive; i += batch) {
    const records = Array.from({ length: Math.min(batch, firstLive - i) }, (_, k) => factory.final(i + k));
    await store.insertMany(records);
    if (performance.now() - lastReport > 30_000) {
      lastReport = performance.now();
      process.stdout.write(`    filled ${i + records.length} of ${firstLive} (${Math.round((lastReport - fillStarted) / 1000)} s)\n`);
    }
  }
  await afterFill();
  const fillSeconds = (performance.now() - fillStarted) / 1000;
  process.stdout.write(`    fill: ${firstLive} calls in ${fillSeconds.toFixed(1)} s (${Math.round(firstLive / fillSeconds)} records/s); list queries over ${settings.rows} calls, ${settings.samples} each:\n`);
  const queriesMs = await timeQueries(store, factory, settings.samples);
  const writesFull = await writeRates(store, factory, settings.rows, settings, `full log (${settings.rows} calls)`);
  return { store: kind, writesEmpty, writesFull, fillSeconds: round(fillSeconds), fillRowsPerSec: Math.round(firstLive / fillSeconds), rows: settings.rows, queriesMs };
}

async function benchSqlite(settings: Settings): Promise<StoreResult> {
  const dir = mkdtempSync(path.join(tmpdir(), 'call-log-bench-'));
  try {
    const store = SqliteCallStore.open(path.join(dir, 'calls.sqlite'));
    try {
      return await benchStore('sqlite', store, settings, async () => undefined);
    } finally {
      await store.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function benchPostgres(settings: Settings): Promise<StoreResult> {
  let server: ThrowawayPostgres | undefined;
  let adminUrl = settings.postgresUrl;
  if (adminUrl === undefined) {
    const [port] = await freePorts(1);
    server = await startThrowawayPostgres({ port: port!, durable: true });
    adminUrl = server.url;
  }
  const dbName = `call_log_bench_${Date.now()}`;
  const admin = new Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${dbName}`);
    const url = new URL(adminUrl);
    url.pathname = `/${dbName}`;
    process.stdout.write(`  postgres: ${redactUrl(url.toString())}${server ? ' (throwaway server, fsync on)' : ''}\n`);
    const store = await PostgresCallStore.open(url.toString(), { maxConnections: settings.concurrency });
    try {
      // Autovacuum would analyze the table soon after such a fill; do it now rather than wait.
      return await benchStore('postgres', store, settings, async () => {
        const c = new Client({ connectionString: url.toString() });
        await c.connect();
        await c.query('VACUUM ANALYZE calls');
        await c.end();
      });
    } finally {
      await store.close();
    }
  } finally {
    await admin.query(`DROP DATABASE IF EXISTS ${dbName}`).catch(() => undefined);
    await admin.end();
    await server?.stop();
  }
}

async function main(): Promise<void> {
  const settings = parseArgs(process.argv.slice(2));
  process.stdout.write(`call-log store benchmark: ${settings.rows} calls; ${cpus().length} CPUs, ${Math.round(totalmem() / 2 ** 30)} GiB\n`);
  const results: StoreResult[] = [];
  if (settings.only !== 'postgres') results.push(await benchSqlite(settings));
  if (settings.only !== 'sqlite') results.push(await benchPostgres(settings));

  const root = path.resolve(__dirname, '..', '..');
  const outDir = path.join(root, 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, `call-log-store-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  const { postgresUrl, ...shown } = settings;
  const json = { date: new Date().toISOString(), settings: { ...shown, postgresUrl: postgresUrl === undefined ? 'throwaway' : redactUrl(postgresUrl) }, results };
  writeFileSync(file, `${JSON.stringify(json, null, 2)}\n`);
  process.stdout.write(`results written to ${path.relative(root, file)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
