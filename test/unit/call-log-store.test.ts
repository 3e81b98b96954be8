// The call-log stores: one suite of behaviour tests, run against SQLite (a file in a temporary
// directory) and PostgreSQL (a throwaway server from Debian's package). Each test gets an empty
// database of its own.

import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Client } from 'pg';
import t from 'tap';
import {
  CallQueryError,
  MIGRATIONS,
  type CheckpointResult,
  PostgresCallStore,
  SqliteCallStore,
  callStoreKind,
  openCallStore,
  redactUrl,
  type CallQuery,
  type CallRecord,
  type CallStore,
  type StoredSipMessage,
} from '../../lib/call-log';
import { FIND_SQL, INTERRUPT_SQL, listSql, toPostgres, validateQuery } from '../../lib/call-log/call-sql';
import { MIGRATIONS_TABLE_SQL } from '../../lib/call-log/migrations';
import { startTestPostgres, type TestPostgres } from '../support/postgres';

type TapTest = Parameters<Parameters<typeof t.test>[0]>[0];

/** A store that can also bulk-load (both implementations can). */
type Store = CallStore & { insertMany(records: readonly CallRecord[]): Promise<void> };

/** One empty database: each open() is another store (connection) on it. */
interface TestDatabase {
  open(): Promise<Store>;
  /** Rows of schema_migrations. */
  migrationsApplied(): Promise<number>;
  /**
   * Before any store opened it: creates the schema as migration 1 left it, then runs `statements`
   * (SQL with ? placeholders) on it, as an older release would have written the database.
   */
  atVersion1(statements: ReadonlyArray<{ sql: string; params: Array<string | number> }>): Promise<void>;
}

interface Backend {
  readonly kind: 'sqlite' | 'postgres';
  fresh(tt: TapTest): Promise<TestDatabase>;
}

const SECOND = 1000;
const DAY = 86_400 * SECOND;
/** Every time in these tests has a millisecond part, so a lost millisecond shows. */
const T0 = Date.UTC(2026, 10, 21, 12, 0, 0, 123);

function at(offsetMs: number): Date {
  return new Date(T0 + offsetMs);
}

function record(id: string, over: Partial<CallRecord> = {}): CallRecord {
  return {
    id,
    instance: 'b2bua-1',
    aCallId: `a-${id}@10.0.0.1`,
    bCallId: `b-${id}`,
    callerUser: '6001',
    callerName: 'Alice Smith',
    callerAddress: '10.0.0.1',
    callerPort: 5060,
    callee: '6002',
    state: 'ended',
    receivedAt: at(0),
    ringingAt: at(701),
    answeredAt: at(2_345),
    endedAt: at(12_346),
    postDialDelayMs: 701,
    durationSec: 12.223,
    billableSec: 11,
    outcome: 'answered',
    hangupBy: 'caller',
    aStatus: 200,
    aReason: 'OK',
    bStatus: 200,
    bReason: 'OK',
    transfers: [],
    media: {
      callerToCallee: { packets: 500, bytes: 86_000, packetsLost: 2, jitterMs: 1.5, mos: 4.3 },
      calleeToCaller: { packets: 498, bytes: 85_656, packetsLost: null, jitterMs: null, mos: null },
      engine: '127.0.0.3:22222',
    },
    updatedAt: at(12_400),
    ...over,
  };
}

/** A record still in progress (no outcome yet). */
function open(id: string, over: Partial<CallRecord> = {}): CallRecord {
  return record(id, {
    state: 'answered',
    endedAt: null,
    durationSec: null,
    billableSec: null,
    outcome: null,
    hangupBy: null,
    aStatus: null,
    aReason: null,
    bStatus: null,
    bReason: null,
    media: null,
    ...over,
  });
}

function message(leg: 'a' | 'b', offsetMs: number, text: string): StoredSipMessage {
  return { leg, at: at(offsetMs), dir: leg === 'a' ? 'in' : 'out', transport: 'udp', peer: '127.0.0.1:5060', local: '127.0.0.2:5080', text };
}

async function ids(store: Store, query: Partial<CallQuery>): Promise<string[]> {
  return (await store.list({ limit: 500, ...query })).calls.map((c) => c.id);
}

/** Every page of a query, following nextCursor. */
async function allPages(store: Store, query: CallQuery): Promise<{ ids: string[]; pages: number }> {
  const out: string[] = [];
  let cursor: string | undefined;
  let pages = 0;
  for (;;) {
    const page = await store.list(cursor === undefined ? query : { ...query, cursor });
    pages += 1;
    out.push(...page.calls.map((c) => c.id));
    if (page.nextCursor === null) return { ids: out, pages };
    cursor = page.nextCursor;
    if (pages > 1000) throw new Error('pagination does not end');
  }
}

// ---------------------------------------------------------------------------------------------

const sqliteBackend: Backend = {
  kind: 'sqlite',
  async fresh(tt) {
    const dir = mkdtempSync(join(tmpdir(), 'call-log-store-'));
    tt.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'calls.sqlite');
    return {
      async open() {
        const store = SqliteCallStore.open(file);
        tt.teardown(() => store.close());
        return store;
      },
      async migrationsApplied() {
        const db = new Database(file, { readonly: true });
        try {
          return (db.prepare('SELECT COUNT(*) AS n FROM schema_migrations').get() as { n: number }).n;
        } finally {
          db.close();
        }
      },
      async atVersion1(statements) {
        const db = new Database(file);
        try {
          db.transaction(() => {
            db.exec(MIGRATIONS_TABLE_SQL);
            for (const sql of MIGRATIONS[0]!.statements.sqlite) db.exec(sql);
            db.prepare('INSERT INTO schema_migrations (version, description, applied_at) VALUES (1, ?, 0)').run(MIGRATIONS[0]!.description);
            for (const { sql, params } of statements) db.prepare(sql).run(params);
          })();
        } finally {
          db.close();
        }
      },
    };
  },
};

function postgresBackend(server: () => TestPostgres): Backend {
  let databases = 0;
  return {
    kind: 'postgres',
    async fresh(tt) {
      const url = await server().createDatabase(`calls_${++databases}`);
      return {
        async open() {
          const store = await PostgresCallStore.open(url);
          tt.teardown(() => store.close());
          return store;
        },
        async migrationsApplied() {
          const client = new Client({ connectionString: url });
          await client.connect();
          try {
            return Number((await client.query<{ n: string }>('SELECT COUNT(*) AS n FROM schema_migrations')).rows[0]?.n);
          } finally {
            await client.end();
          }
        },
        async atVersion1(statements) {
          const client = new Client({ connectionString: url });
          await client.connect();
          try {
            await client.query('BEGIN');
            await client.query(MIGRATIONS_TABLE_SQL);
            for (const sql of MIGRATIONS[0]!.statements.postgres) await client.query(sql);
            await client.query('INSERT INTO schema_migrations (version, description, applied_at) VALUES (1, $1, 0)', [MIGRATIONS[0]!.description]);
            for (const { sql, params } of statements) await client.query(toPostgres(sql), params);
            await client.query('COMMIT');
          } finally {
            await client.end();
          }
        },
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------

function storeSuite(tt: TapTest, backend: Backend): void {
  const fresh = async (t2: TapTest): Promise<Store> => (await backend.fresh(t2)).open();

  tt.test('upsert, get and find by each key; every field round-trips to the millisecond', async (t2) => {
    const store = await fresh(t2);
    t2.equal(store.kind, backend.kind);
    const first = record('call-1');
    await store.upsert(first);
    t2.strictSame(await store.get('call-1'), first, 'get returns the record as written');
    t2.strictSame(await store.find('call-1'), first, 'find by id');
    t2.strictSame(await store.find('a-call-1@10.0.0.1'), first, 'find by the A-leg Call-ID');
    t2.strictSame(await store.find('b-call-1'), first, 'find by the B-leg Call-ID');
    t2.equal(await store.get('nope'), undefined, 'an unknown id is undefined');
    t2.equal(await store.find('nope'), undefined, 'an unknown key is undefined');
    t2.equal((await store.get('call-1'))?.receivedAt.getTime(), T0, 'the millisecond is kept');

    // The first write of a call, then a state change replacing every field.
    const early = open('call-2', { bCallId: null, state: 'received', ringingAt: null, answeredAt: null, callerName: null, postDialDelayMs: null });
    await store.upsert(early);
    t2.strictSame(await store.get('call-2'), early, 'nulls round-trip');
    const later = record('call-2', {
      instance: 'b2bua-2',
      bCallId: 'b-new',
      callerName: 'Bob',
      callerPort: 5062,
      transfers: ['6003', '6004'],
      durationSec: 0.001,
      billableSec: 0,
      outcome: 'cancelled',
      hangupBy: 'caller',
      aStatus: 487,
      aReason: 'Request Terminated',
      bStatus: null,
      bReason: null,
      answeredAt: null,
      updatedAt: at(99_999),
    });
    await store.upsert(later);
    t2.strictSame(await store.get('call-2'), later, 'upsert replaced every field');
    t2.strictSame((await store.find('b-new'))?.id, 'call-2', 'find by the B-leg Call-ID set later');
    t2.strictSame(await ids(store, { text: 'b-new' }), ['call-2'], 'free text sees the new B-leg Call-ID');
    t2.strictSame(await ids(store, { text: 'alice' }), ['call-1'], 'and no longer the old caller name');
  });

  tt.test('find prefers the id, then the A-leg Call-ID, then the B-leg one', async (t2) => {
    const store = await fresh(t2);
    await store.upsert(record('x', { aCallId: 'k1', bCallId: 'k2' }));
    await store.upsert(record('k2', { aCallId: 'k3', bCallId: 'k4', receivedAt: at(-5000) }));
    await store.upsert(record('k5', { aCallId: 'k2', bCallId: 'k6', receivedAt: at(-9000) }));
    t2.equal((await store.find('k2'))?.id, 'k2', 'the id wins');
    await store.upsert(record('y', { aCallId: 'k7', bCallId: 'k8' }));
    await store.upsert(record('z', { aCallId: 'k9', bCallId: 'k7', receivedAt: at(60_000) }));
    t2.equal((await store.find('k7'))?.id, 'y', 'an A-leg Call-ID wins over a newer B-leg one');
  });

  tt.test('list: each filter, outcome lists, time bounds, instance', async (t2) => {
    const store = await fresh(t2);
    const rows = [
      record('c1', { callerUser: '6001', callee: '6002', outcome: 'answered', receivedAt: at(0) }),
      record('c2', { callerUser: '6001', callee: '6003', outcome: 'busy', receivedAt: at(1 * SECOND) }),
      record('c3', { callerUser: '6004', callee: '6002', outcome: 'no-answer', receivedAt: at(2 * SECOND), instance: 'b2bua-2' }),
      record('c4', { callerUser: '6004', callee: '6003', outcome: 'answered', receivedAt: at(3 * SECOND) }),
      open('c5', { callerUser: '6005', callee: '6002', receivedAt: at(4 * SECOND), instance: 'b2bua-2' }),
      record('c6', { callerUser: '6001', callee: '6002', outcome: 'failed', receivedAt: at(5 * SECOND) }),
    ];
    for (const r of rows) await store.upsert(r);

    t2.strictSame(await ids(store, {}), ['c6', 'c5', 'c4', 'c3', 'c2', 'c1'], 'newest first');
    t2.strictSame(await ids(store, { caller: '6001' }), ['c6', 'c2', 'c1'], 'caller');
    t2.strictSame(await ids(store, { callee: '6002' }), ['c6', 'c5', 'c3', 'c1'], 'callee');
    t2.strictSame(await ids(store, { caller: '6001', callee: '6002' }), ['c6', 'c1'], 'caller and callee');
    t2.strictSame(await ids(store, { outcomes: ['answered'] }), ['c4', 'c1'], 'one outcome');
    t2.strictSame(await ids(store, { outcomes: ['busy', 'no-answer', 'failed'] }), ['c6', 'c3', 'c2'], 'several outcomes');
    t2.strictSame(await ids(store, { outcomes: ['busy', 'busy'] }), ['c2'], 'a repeated outcome');
    t2.strictSame(await ids(store, { outcomes: [] }), [], 'an empty outcome list matches nothing');
    t2.strictSame(await ids(store, { caller: '6001', outcomes: ['answered', 'busy'] }), ['c2', 'c1'], 'caller and outcomes');
    t2.strictSame(await ids(store, { from: at(2 * SECOND) }), ['c6', 'c5', 'c4', 'c3'], 'from is inclusive');
    t2.strictSame(await ids(store, { to: at(2 * SECOND) }), ['c2', 'c1'], 'to is exclusive');
    t2.strictSame(await ids(store, { from: at(1 * SECOND), to: at(4 * SECOND) }), ['c4', 'c3', 'c2'], 'a range');
    t2.strictSame(await ids(store, { from: at(1 * SECOND + 1), to: at(3 * SECOND + 1) }), ['c4', 'c3'], 'bounds to the millisecond');
    t2.strictSame(await ids(store, { from: at(4 * SECOND), to: at(4 * SECOND) }), [], 'an empty range');
    t2.strictSame(await ids(store, { outcomes: ['answered'], from: at(1 * SECOND) }), ['c4'], 'outcome and range');
    t2.strictSame(await ids(store, { instance: 'b2bua-2' }), ['c5', 'c3'], 'instance');
    t2.strictSame(await ids(store, { caller: 'nobody' }), [], 'no match');
  });

  tt.test('list: free text is a case-insensitive substring of the named fields, nothing more', async (t2) => {
    const store = await fresh(t2);
    await store.upsert(record('5b0c6f1e-aaaa-4bbb-8ccc-000000000001', { callerName: 'Alice Smith', callerUser: '6001', callee: '6002', callerAddress: '192.168.7.21', aCallId: 'XyZ-a-leg@host', bCallId: 'B-LEG-77' }));
    await store.upsert(record('5b0c6f1e-aaaa-4bbb-8ccc-000000000002', { callerName: "Seán O'Brien", callerUser: '7001', callee: '7002', callerAddress: '10.1.1.1', aCallId: 'plain-a', bCallId: null, receivedAt: at(1) }));
    await store.upsert(record('5b0c6f1e-aaaa-4bbb-8ccc-000000000003', { callerName: '100%_off\\deal', callerUser: '8001', callee: '8002', callerAddress: '10.2.2.2', aCallId: 'other-a', bCallId: 'other-b', receivedAt: at(2) }));
    await store.upsert(record('5b0c6f1e-aaaa-4bbb-8ccc-000000000004', { callerName: 'JÜRGEN', callerUser: '9001', callee: '9002', callerAddress: '10.3.3.3', aCallId: 'j-a', bCallId: 'j-b', transfers: ['alice'], aReason: 'alice', receivedAt: at(3) }));
    const [c1, c2, c3, c4] = ['1', '2', '3', '4'].map((n) => `5b0c6f1e-aaaa-4bbb-8ccc-00000000000${n}`);

    t2.strictSame(await ids(store, { text: 'ALICE' }), [c1], 'caller name, any case (not transfers or reasons)');
    t2.strictSame(await ids(store, { text: 'mit' }), [c1], 'a substring inside a word');
    t2.strictSame(await ids(store, { text: '168.7' }), [c1], 'caller address');
    t2.strictSame(await ids(store, { text: '6002' }), [c1], 'callee');
    t2.strictSame(await ids(store, { text: '700' }), [c2], 'caller user and callee');
    t2.strictSame(await ids(store, { text: '000000000003' }), [c3], 'part of the id');
    t2.strictSame(await ids(store, { text: 'xyz-A-LEG' }), [c1], 'part of the A-leg Call-ID');
    t2.strictSame(await ids(store, { text: 'b-leg-7' }), [c1], 'part of the B-leg Call-ID');
    t2.strictSame(await ids(store, { text: 'jürgen' }), [c4], 'non-ASCII letters fold case too');
    t2.strictSame(await ids(store, { text: "o'bri" }), [c2], 'a quote is a character');
    t2.strictSame(await ids(store, { text: '10.' }), [c4, c3, c2], 'three characters: several');
    t2.strictSame(await ids(store, { text: '00%' }), [c3], '% is literal');
    t2.strictSame(await ids(store, { text: '%_o' }), [c3], '_ is literal');
    t2.strictSame(await ids(store, { text: '0%_o' }), [c3], '%_ together are literal');
    t2.strictSame(await ids(store, { text: 'f\\d' }), [c3], 'backslash is literal');
    t2.strictSame(await ids(store, { text: '1_0' }), [], '_ matches no other character');
    t2.strictSame(await ids(store, { text: '1%6' }), [], '% matches no run of characters');
    t2.strictSame(await ids(store, { text: '\\%_' }), [], 'wildcards and escape alone match only themselves');
    t2.strictSame(await ids(store, { text: '' }), [c4, c3, c2, c1], 'empty text is no filter');
    t2.strictSame(await ids(store, { text: 'smith', caller: '6001', outcomes: ['answered'] }), [c1], 'combined with other filters');
    t2.strictSame(await ids(store, { text: 'smith', caller: '7001' }), [], 'all filters apply');
    // The separator between the searched fields never joins two of them into a match.
    t2.strictSame(await ids(store, { text: '6001 6002' }), [], 'no match across fields');

    for (const injection of ["' OR '1'='1", "'; DROP TABLE calls; --", '" OR ""="', "%' OR 1=1 --", "') UNION SELECT * FROM calls --", "x' ESCAPE '"]) {
      t2.strictSame(await ids(store, { text: injection }), [], `${JSON.stringify(injection)} is plain text`);
      t2.strictSame(await ids(store, { caller: injection }), [], `${JSON.stringify(injection)} as a caller is plain text`);
    }
    t2.equal((await ids(store, {})).length, 4, 'the table is intact');
    await t2.rejects(store.list({ limit: 10, text: 'a\u001fb' }), CallQueryError, 'control characters are refused');
    await t2.rejects(store.list({ limit: 10, text: 'x'.repeat(201) }), CallQueryError, 'over-long text is refused');
    await t2.rejects(store.list({ limit: 10, text: 'ob' }), /at least 3 characters/, 'text too short for the trigram index is refused');
    await t2.rejects(store.list({ limit: 10, text: '%' }), CallQueryError, 'a lone wildcard too');
  });

  tt.test('list: cursor pagination over equal receivedAt values, no duplicate, no miss', async (t2) => {
    const store = await fresh(t2);
    const rows: CallRecord[] = [];
    // 5 instants x 5 calls each, ids deliberately not in time order.
    for (let i = 0; i < 25; i += 1) {
      rows.push(record(`id-${String((i * 7) % 25).padStart(2, '0')}`, { receivedAt: at(Math.floor(i / 5) * SECOND), outcome: i % 2 === 0 ? 'answered' : 'busy' }));
    }
    await store.insertMany(rows);
    const expected = [...rows]
      .sort((a, b) => b.receivedAt.getTime() - a.receivedAt.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0))
      .map((r) => r.id);
    for (const limit of [1, 3, 5, 7, 24, 25, 26]) {
      const { ids: got, pages } = await allPages(store, { limit });
      t2.strictSame(got, expected, `limit ${limit}: every call once, newest first, ties by id descending`);
      t2.equal(pages, Math.max(1, Math.ceil(25 / limit)), `limit ${limit}: no empty last page`);
    }
    const busy = expected.filter((id) => rows.find((r) => r.id === id)?.outcome === 'busy');
    t2.strictSame((await allPages(store, { limit: 4, outcomes: ['busy'] })).ids, busy, 'pages of a filtered list');
    const ranged = rows.filter((r) => r.receivedAt.getTime() >= at(SECOND).getTime() && r.receivedAt.getTime() < at(3 * SECOND).getTime()).length;
    t2.equal((await allPages(store, { limit: 2, from: at(SECOND), to: at(3 * SECOND) })).ids.length, ranged, 'pages of a time range');

    const first = await store.list({ limit: 5 });
    t2.equal(first.calls.length, 5);
    t2.type(first.nextCursor, 'string');
    await store.upsert(record('id-99', { receivedAt: at(10 * SECOND) }));
    const second = await store.list({ limit: 5, cursor: first.nextCursor! });
    t2.strictSame(second.calls.map((c) => c.id), expected.slice(5, 10), 'a newer call does not shift the next page');
  });

  tt.test('list: limit bounds and bad input are CallQueryError', async (t2) => {
    const store = await fresh(t2);
    await store.insertMany(Array.from({ length: 501 }, (_, i) => record(`r${String(i).padStart(3, '0')}`, { receivedAt: at(i) })));
    t2.equal((await store.list({ limit: 1 })).calls.length, 1, 'limit 1');
    const max = await store.list({ limit: 500 });
    t2.equal(max.calls.length, 500, 'limit 500');
    t2.type(max.nextCursor, 'string', 'a 501st call means a next page');
    t2.equal((await store.list({ limit: 500, cursor: max.nextCursor! })).calls.length, 1, 'which holds it');
    for (const limit of [0, -1, 501, 1.5, Number.NaN]) {
      await t2.rejects(store.list({ limit }), CallQueryError, `limit ${limit}`);
    }
    for (const cursor of ['', 'not a cursor!', Buffer.from('nonsense').toString('base64url'), Buffer.from('12:').toString('base64url'), 'x'.repeat(600)]) {
      await t2.rejects(store.list({ limit: 10, cursor }), CallQueryError, `cursor ${JSON.stringify(cursor.slice(0, 20))}`);
    }
    await t2.rejects(store.list({ limit: 10, outcomes: ['answered', 'lost' as never] }), CallQueryError, 'an unknown outcome');
    await t2.rejects(store.list({ limit: 10, from: new Date('nonsense') }), CallQueryError, 'an invalid date');
    await t2.rejects(store.list({ limit: 10, caller: '' }), CallQueryError, 'an empty caller');
  });

  tt.test('messages: appended per call, read in time order', async (t2) => {
    const store = await fresh(t2);
    await store.upsert(record('m1'));
    await store.upsert(record('m2'));
    const batch1 = [message('a', 0, 'INVITE sip:6002@pbx SIP/2.0\r\n\r\n'), message('a', 1, 'SIP/2.0 100 Trying\r\n\r\n'), message('b', 5, 'INVITE b\r\n\r\nv=0\r\n')];
    const batch2 = [message('b', 3, 'SIP/2.0 180 Ringing (captured late)'), message('a', 9, 'BYE'), message('a', 9, 'BYE again, same millisecond')];
    await store.addMessages('m1', batch1);
    await store.addMessages('m1', []);
    await store.addMessages('m1', batch2);
    await store.addMessages('m2', [message('a', 0, 'only m2')]);
    const got = await store.messages('m1');
    t2.strictSame(got.map((m) => m.text), [batch1[0], batch1[1], batch2[0], batch1[2], batch2[1], batch2[2]].map((m) => m!.text), 'time order; same time keeps append order');
    t2.strictSame(got[3], batch1[2], 'every field round-trips');
    t2.strictSame((await store.messages('m2')).map((m) => m.text), ['only m2'], 'each call its own');
    t2.strictSame(await store.messages('none'), [], 'no messages');

    // Appends racing on one call (the PostgreSQL store retries a clashing sequence number).
    await Promise.all(Array.from({ length: 8 }, (_, i) => store.addMessages('m2', [message('b', 100 + i, `racing ${i}a`), message('b', 100 + i, `racing ${i}b`)])));
    const raced = await store.messages('m2');
    t2.equal(raced.length, 17, 'no append lost');
    for (let i = 0; i < 8; i += 1) {
      t2.ok(raced.findIndex((m) => m.text === `racing ${i}a`) + 1 === raced.findIndex((m) => m.text === `racing ${i}b`), `append ${i} kept together and in order`);
    }
  });

  tt.test('write: records and captures in one batch; the later record of an id wins; a capture is stored once', async (t2) => {
    const store = await fresh(t2);
    const ringing = open('w1', { state: 'early', answeredAt: null });
    const answered = open('w1', { state: 'answered', updatedAt: at(3_000) });
    const other = record('w2', { receivedAt: at(1) });
    const capture = [message('a', 0, 'INVITE'), message('b', 2, 'INVITE b'), message('a', 2, 'same ms, later'), message('a', 1, '100 Trying')];
    await store.write({ records: [ringing, other, answered], messages: [{ callId: 'w2', messages: capture }, { callId: 'w1', messages: [] }] });
    t2.strictSame(await store.get('w1'), answered, 'the later of two records with one id');
    t2.strictSame(await store.get('w2'), other);
    t2.strictSame(
      (await store.messages('w2')).map((m) => m.text),
      ['INVITE', '100 Trying', 'INVITE b', 'same ms, later'],
      'messages in time order, equal times as given',
    );
    t2.strictSame((await store.messages('w2'))[2], capture[1], 'every field round-trips');
    t2.strictSame(await store.messages('w1'), [], 'an empty capture stores nothing');

    await store.write({ records: [], messages: [{ callId: 'w2', messages: [message('a', 5, 'read again')] }] });
    t2.equal((await store.messages('w2')).length, 4, 'a call\'s capture written again is ignored, not doubled');
    await store.write({
      records: [],
      messages: [
        { callId: 'w1', messages: [message('a', 0, 'first')] },
        { callId: 'w1', messages: [message('a', 0, 'second')] },
      ],
    });
    t2.strictSame((await store.messages('w1')).map((m) => m.text), ['first'], 'twice in one batch: the first');
    await store.addMessages('w1', [message('b', 1, 'appended')]);
    t2.strictSame((await store.messages('w1')).map((m) => m.text), ['first', 'appended'], 'addMessages still appends');
    await store.write({ records: [], messages: [] });
    t2.pass('an empty batch is fine');
  });

  tt.test('write: each later state of a call replaces every field, whichever columns changed', async (t2) => {
    const store = await fresh(t2);
    const received = open('st-1', { state: 'received', bCallId: null, ringingAt: null, answeredAt: null, postDialDelayMs: null, updatedAt: at(0) });
    const ringing = { ...received, state: 'early' as const, bCallId: 'b-st-1', ringingAt: at(701), postDialDelayMs: 701, updatedAt: at(701) };
    const answered = { ...ringing, state: 'answered' as const, answeredAt: at(2_345), updatedAt: at(2_345) };
    const ended = record('st-1', { bCallId: 'b-st-1', transfers: ['6010'], updatedAt: at(12_400) });
    for (const r of [received, ringing, answered, ended]) {
      await store.write({ records: [r], messages: [] });
      t2.strictSame(await store.get('st-1'), r, `${r.state}: as written`);
    }
    t2.strictSame(await ids(store, { text: 'b-st-1' }), ['st-1'], 'found by the B-leg Call-ID it got on the way');
    // Who called changes (an import, a correction): every field again.
    const corrected = { ...ended, callerName: 'Carol', callerPort: 5070, instance: 'b2bua-9', updatedAt: at(13_000) };
    await store.write({ records: [corrected], messages: [] });
    t2.strictSame(await store.get('st-1'), corrected, 'a changed caller is written too');
    t2.strictSame(await ids(store, { text: 'carol' }), ['st-1']);
    // A record for a call whose row went (pruned) is inserted again.
    await store.prune(at(1_000_000), at(1_000_000));
    await store.write({ records: [{ ...answered, updatedAt: at(14_000) }], messages: [] });
    t2.strictSame(await store.get('st-1'), { ...answered, updatedAt: at(14_000) }, 'inserted again after a prune');
  });

  tt.test('write: a batch larger than one transaction or statement is all stored', async (t2) => {
    const store = await fresh(t2);
    const records = Array.from({ length: 1234 }, (_, i) => open(`big-${String(i).padStart(4, '0')}`, { receivedAt: at(i) }));
    const text = `INVITE sip:6002@pbx SIP/2.0\r\n${'X-Pad: 0123456789abcdef\r\n'.repeat(24)}\r\n`;
    const messages = records.slice(0, 120).map((r) => ({ callId: r.id, messages: Array.from({ length: 28 }, (_, k) => message(k % 2 === 0 ? 'a' : 'b', k, `${k} ${text}`)) }));
    await store.write({ records, messages });
    t2.equal((await store.stats(at(0), at(2000))).calls, 1234, 'every record');
    t2.equal((await store.messages('big-0119')).length, 28, 'every capture');
    t2.equal((await store.messages('big-0120')).length, 0, 'and no other');
    t2.strictSame((await store.prune(at(5000), at(5000))), { calls: 1234, messages: 120 * 28 }, 'prune counts the messages of the sets it deletes');
  });

  tt.test('migration 2: the messages of a v1 database move into one set per call, in the same order', async (t2) => {
    const db = await backend.fresh(t2);
    const v1Message = (callId: string, seq: number, m: StoredSipMessage): { sql: string; params: Array<string | number> } => ({
      sql: 'INSERT INTO call_messages (call_id, leg, seq, at, dir, transport, peer, local, text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
      params: [callId, m.leg, seq, m.at.getTime(), m.dir, m.transport, m.peer, m.local, m.text],
    });
    const unicode = 'MESSAGE with "quotes", \\ backslash, tab\t, \u00e9t\u00e9 and \u{1F600}\r\n\r\nbody';
    const old = [message('a', 0, 'INVITE'), message('b', 9, 'BYE'), message('a', 9, 'BYE same ms, appended later'), message('b', 3, unicode)];
    await db.atVersion1([
      v1Message('v1', 1, old[0]!),
      v1Message('v1', 2, old[1]!),
      v1Message('v1', 3, old[2]!),
      v1Message('v1', 4, old[3]!),
      v1Message('v1-other', 1, message('a', 0, 'other call')),
    ]);
    const store = await db.open();
    t2.equal(await db.migrationsApplied(), MIGRATIONS.length, 'migrated to the latest version');
    t2.strictSame(await store.messages('v1'), [old[0], old[3], old[1], old[2]], 'the same messages in the same order, every field intact');
    t2.strictSame((await store.messages('v1-other')).map((m) => m.text), ['other call']);
    await store.addMessages('v1', [message('a', 10, 'appended after the migration')]);
    t2.equal((await store.messages('v1')).length, 5, 'appends continue');
    await store.write({ records: [], messages: [{ callId: 'v1', messages: [message('a', 0, 'again')] }] });
    t2.equal((await store.messages('v1')).length, 5, 'a migrated call counts as having its capture');
  });

  tt.test('stage: recovery applies what was staged and not written, where newer, for its instance', async (t2) => {
    const db = await backend.fresh(t2);
    const store = await db.open();
    const other = await db.open();
    const answered = open('s-answered', { answeredAt: at(1_500), updatedAt: at(1_500) });
    await store.stage([answered]);
    // Staged, then written by its store: nothing left to apply.
    await store.stage([open('s-written', { state: 'early', answeredAt: null, updatedAt: at(500) })]);
    await store.write({ records: [record('s-written', { updatedAt: at(20_000) })], messages: [] });
    // Staged, then a newer state written by another store (connection): the staged one is older.
    await store.stage([open('s-older', { updatedAt: at(900) })]);
    await other.write({ records: [record('s-older', { updatedAt: at(30_000) })], messages: [] });
    // Another instance's.
    await store.stage([open('s-theirs', { instance: 'b2bua-2' })]);

    t2.same((await store.interruptUnfinished('b2bua-1', at(10_001))).sort(), ['s-answered'], 'the staged answered call, closed');
    t2.strictSame(await store.get('s-answered'), {
      ...answered,
      state: 'ended',
      outcome: 'interrupted',
      hangupBy: 'system',
      endedAt: at(10_001),
      durationSec: 10.001,
      billableSec: 9,
      updatedAt: at(10_001),
    }, 'every field as staged, then interrupted');
    t2.match(await store.get('s-written'), { state: 'ended', outcome: 'answered' }, 'a written call keeps its written state');
    t2.match(await store.get('s-older'), { state: 'ended', updatedAt: at(30_000) }, 'an older staged record does not overwrite a newer one');
    t2.same(await store.interruptUnfinished('b2bua-1', at(20_000)), [], 'applied once');
    t2.same(await store.interruptUnfinished('b2bua-2', at(20_000)), ['s-theirs'], 'the other instance\'s, at its own recovery');
  });

  tt.test('interruptUnfinished closes only this instance\'s open calls, once', async (t2) => {
    const store = await fresh(t2);
    const answered = open('open-answered', { receivedAt: at(0), answeredAt: at(1_500) });
    const ringing = open('open-ringing', { state: 'proceeding', receivedAt: at(100), answeredAt: null });
    const finished = record('finished');
    const other = open('other-instance', { instance: 'b2bua-2' });
    for (const r of [answered, ringing, finished, other]) await store.upsert(r);
    const when = at(10_001);
    t2.strictSame((await store.interruptUnfinished('b2bua-1', when)).sort(), ['open-answered', 'open-ringing'], 'the two open calls of b2bua-1');

    t2.strictSame(await store.get('open-answered'), {
      ...answered,
      state: 'ended',
      outcome: 'interrupted',
      hangupBy: 'system',
      endedAt: when,
      durationSec: 10.001,
      billableSec: 9, // 8.501 s answered, every started second billed
      updatedAt: when,
    });
    t2.strictSame(await store.get('open-ringing'), {
      ...ringing,
      state: 'failed',
      outcome: 'interrupted',
      hangupBy: 'system',
      endedAt: when,
      durationSec: 9.901,
      billableSec: 0,
      updatedAt: when,
    });
    t2.strictSame(await store.get('finished'), finished, 'a finished call is untouched');
    t2.strictSame(await store.get('other-instance'), other, "another instance's open call is untouched");
    t2.strictSame(await store.interruptUnfinished('b2bua-1', at(20_000)), [], 'a second run finds nothing');
    t2.equal((await store.get('open-answered'))?.endedAt?.getTime(), when.getTime(), 'and changes nothing');
  });

  tt.test('prune deletes old calls and, separately, older messages', async (t2) => {
    const store = await fresh(t2);
    const now = T0;
    const day = (n: number): Date => new Date(now - n * DAY);
    await store.upsert(record('d40', { receivedAt: day(40) }));
    await store.upsert(record('d20', { receivedAt: day(20) }));
    await store.upsert(record('d5', { receivedAt: day(5) }));
    await store.addMessages('d40', [message('a', 0, 'x'), message('b', 1, 'y')]);
    await store.addMessages('d20', [message('a', 0, 'x'), message('b', 1, 'y'), message('a', 2, 'z')]);
    await store.addMessages('d5', [message('a', 0, 'kept')]);
    t2.strictSame(await store.prune(day(30), day(10)), { calls: 1, messages: 5 }, 'one call, and the messages of it and of d20');
    t2.equal(await store.get('d40'), undefined, 'the 40-day-old call is gone');
    t2.strictSame(await store.messages('d40'), [], 'with its messages');
    t2.equal((await store.get('d20'))?.id, 'd20', 'the 20-day-old call stays');
    t2.strictSame(await store.messages('d20'), [], 'without its messages');
    t2.equal((await store.messages('d5')).length, 1, 'recent messages stay');
    t2.strictSame(await store.prune(day(30), day(10)), { calls: 0, messages: 0 }, 'a second prune finds nothing');
    t2.strictSame(await store.prune(day(30), day(40)), { calls: 0, messages: 0 }, 'messages of a call that is kept stay');

    // More than one batch of each.
    const many = Array.from({ length: 2345 }, (_, i) => record(`old-${i}`, { receivedAt: new Date(day(50).getTime() + (i % 7)) }));
    await store.insertMany(many);
    for (let i = 0; i < 2345; i += 500) await store.addMessages(`old-${i}`, [message('a', 0, 'old')]);
    t2.strictSame(await store.prune(day(30), day(10)), { calls: 2345, messages: 5 }, 'batches add up');
    t2.strictSame(await ids(store, {}), ['d5', 'd20'], 'only the recent calls are left');
  });

  tt.test('stats: ASR, ACD and outcomes over [from, to)', async (t2) => {
    const store = await fresh(t2);
    await store.insertMany([
      record('s1', { receivedAt: at(0), billableSec: 10 }),
      record('s2', { receivedAt: at(1), billableSec: 21 }),
      record('s3', { receivedAt: at(2), outcome: 'busy', answeredAt: null, billableSec: 0 }),
      record('s4', { receivedAt: at(3), outcome: 'no-answer', answeredAt: null, billableSec: 0 }),
      open('s5', { receivedAt: at(4) }), // answered, still going: counts as answered, no billable seconds yet
      record('s6', { receivedAt: at(-1), billableSec: 1000 }), // before the range
      record('s7', { receivedAt: at(10), billableSec: 1000 }), // at `to`: outside
    ]);
    const s = await store.stats(at(0), at(10));
    t2.strictSame(s, { calls: 5, answered: 3, asr: 3 / 5, acdSec: 15.5, byOutcome: { answered: 2, busy: 1, 'no-answer': 1 } });
    t2.strictSame(await store.stats(at(100), at(200)), { calls: 0, answered: 0, asr: null, acdSec: null, byOutcome: {} }, 'no calls');
    t2.strictSame(await store.stats(at(2), at(4)), { calls: 2, answered: 0, asr: 0, acdSec: null, byOutcome: { busy: 1, 'no-answer': 1 } }, 'none answered');
  });

  tt.test('re-opening migrates nothing twice; stores on one database see each other', async (t2) => {
    const db = await backend.fresh(t2);
    // Two opening at once (two B2BUA instances starting together).
    const [a, b] = await Promise.all([db.open(), db.open()]);
    t2.equal(await db.migrationsApplied(), MIGRATIONS.length, 'each migration recorded once');
    await a.upsert(record('from-a'));
    await b.upsert(record('from-b', { receivedAt: at(1) }));
    t2.strictSame(await ids(a, {}), ['from-b', 'from-a'], 'a sees b');
    t2.strictSame(await ids(b, {}), ['from-b', 'from-a'], 'b sees a');
    await b.addMessages('from-a', [message('a', 0, 'via b')]);
    t2.strictSame((await a.messages('from-a')).map((m) => m.text), ['via b']);
    await a.close();
    await a.close();
    await t2.rejects(a.get('from-a'), /closed/, 'a closed store refuses work');
    const c = await db.open();
    t2.equal(await db.migrationsApplied(), MIGRATIONS.length, 'reopening applied nothing');
    t2.strictSame(await ids(c, {}), ['from-b', 'from-a'], 'the rows are still there');
    await c.ping();
    t2.pass('ping resolves');
  });
}

// ---------------------------------------------------------------------------------------------

t.test('SqliteCallStore', async (tt) => {
  storeSuite(tt, sqliteBackend);

  tt.test('the file: created with its directory, mode 0600, WAL', async (t2) => {
    const dir = mkdtempSync(join(tmpdir(), 'call-log-file-'));
    t2.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'nested', 'deeper', 'calls.sqlite');
    const store = SqliteCallStore.open(file);
    await store.upsert(record('f1'));
    t2.equal(statSync(file).mode & 0o777, 0o600, 'mode 0600');
    await store.close();
    const db = new Database(file, { readonly: true });
    t2.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    db.close();
  });

  tt.test('write: a large batch runs as several short transactions, in order, yielding between them', async (t2) => {
    const dir = mkdtempSync(join(tmpdir(), 'call-log-chunks-'));
    t2.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const transactions: Array<{ records: number; sets: number }> = [];
    const store = SqliteCallStore.open(join(dir, 'calls.sqlite'), { onTransaction: (_ms, records, sets) => transactions.push({ records, sets }) });
    t2.teardown(() => store.close());
    const records = Array.from({ length: 200 }, (_, i) => open(`t-${i}`, { receivedAt: at(i) }));
    const text = 'x'.repeat(600);
    const messages = records.slice(0, 40).map((r) => ({ callId: r.id, messages: Array.from({ length: 28 }, (_, k) => message('a', k, text)) }));
    let turns = 0;
    const ticker = setInterval(() => (turns += 1), 0);
    await store.write({ records: [...records, open('t-0', { state: 'ended' })], messages });
    clearInterval(ticker);
    t2.ok(transactions.length > 2, `several transactions (${transactions.length})`);
    t2.equal(transactions.reduce((n, x) => n + x.records, 0), 201, 'holding every record');
    t2.equal(transactions.reduce((n, x) => n + x.sets, 0), 40, 'and every capture');
    t2.ok(transactions.every((x) => x.records + x.sets > 0), 'none empty');
    t2.equal((await store.get('t-0'))?.state, 'ended', 'in order: the later record of t-0, in a later transaction, wins');
    t2.ok(turns > 0, 'timers ran while it was written');
  });

  tt.test('checkpoint: worker: a second connection on a worker thread checkpoints; close() stops it first', async (t2) => {
    const dir = mkdtempSync(join(tmpdir(), 'call-log-checkpoint-'));
    t2.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'calls.sqlite');
    let checkpointed: (r: CheckpointResult) => void = () => undefined;
    const store = SqliteCallStore.open(file, { checkpoint: 'worker', checkpointIntervalMs: 0, onCheckpoint: (r) => checkpointed(r) });
    const done = new Promise<CheckpointResult>((resolve) => (checkpointed = resolve));
    await store.write({ records: [record('k1'), record('k2')], messages: [{ callId: 'k1', messages: [message('a', 0, 'x'.repeat(20_000))] }] });
    const result = await done;
    t2.ok(result.log > 0, `the WAL had frames (${result.log})`);
    t2.equal(result.checkpointed, result.log, 'all copied into the database file');
    t2.equal((await store.get('k1'))?.id, 'k1', 'the store reads on');
    await store.close();
    t2.notOk(existsSync(`${file}-wal`), 'closed last, the store\'s own connection removed the WAL: the worker\'s was closed');
    const reopened = SqliteCallStore.open(file);
    t2.teardown(() => reopened.close());
    t2.equal((await reopened.messages('k1')).length, 1, 'everything is in the file');
  });

  tt.test('checkpoint: worker: under steady writes the WAL is restarted, not left to grow; no write fails on the lock', async (t2) => {
    const dir = mkdtempSync(join(tmpdir(), 'call-log-wal-'));
    t2.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'calls.sqlite');
    const results: CheckpointResult[] = [];
    let first: (() => void) | undefined;
    const started = new Promise<void>((resolve) => (first = resolve));
    const store = SqliteCallStore.open(file, {
      checkpoint: 'worker',
      checkpointIntervalMs: 0,
      onCheckpoint: (r) => {
        results.push(r);
        first?.();
      },
    });
    t2.teardown(() => store.close());
    // The worker is up (it starts with the store: long before calls, in a B2BUA).
    await store.write({ records: [record('wal-start', { receivedAt: at(-DAY) })], messages: [] });
    await started;
    const text = 'x'.repeat(20_000);
    let walMax = 0;
    // ~24 MB through the WAL, a write every turn of the event loop: checkpoints always overlap writes.
    for (let b = 0; b < 120; b += 1) {
      const records = Array.from({ length: 10 }, (_, k) => open(`wal-${b}-${k}`, { receivedAt: at(b * 10 + k) }));
      await store.write({ records, messages: records.map((r) => ({ callId: r.id, messages: [message('a', 0, text)] })) });
      if (existsSync(`${file}-wal`)) walMax = Math.max(walMax, statSync(`${file}-wal`).size);
    }
    const restarts = results.filter((r) => r.mode === 'RESTART' && !r.busy).length;
    t2.ok(restarts > 0, `the worker restarted the WAL (${restarts} of ${results.length} checkpoints)`);
    t2.ok(walMax < 16 * 1024 * 1024, `the WAL stayed small: at most ${(walMax / 1024 / 1024).toFixed(1)} MiB for ~24 MiB written`);
    t2.equal((await store.stats(at(0), at(10_000))).calls, 1200, 'every record written');
    t2.equal((await store.messages('wal-119-9')).length, 1);
  });

  tt.test('fixed statistics: the planner takes the intended index for each filter', async (t2) => {
    const dir = mkdtempSync(join(tmpdir(), 'call-log-plans-'));
    t2.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'calls.sqlite');
    await SqliteCallStore.open(file).close();
    const db = new Database(file, { readonly: true });
    t2.teardown(() => db.close());
    const plan = (sql: string, params: unknown[]): string =>
      (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(params) as Array<{ detail: string }>).map((r) => r.detail).join(' | ');
    const listPlan = (query: Partial<CallQuery>): string => {
      const { sql, params } = listSql(validateQuery({ limit: 50, ...query }));
      return plan(sql, params);
    };
    t2.match(listPlan({}), /calls_received/, 'no filter: newest first from calls_received');
    t2.notMatch(listPlan({}), /TEMP B-TREE/, 'without sorting');
    t2.match(listPlan({ caller: '6001', outcomes: ['answered'] }), /calls_caller/, 'caller + outcome: calls_caller');
    t2.match(listPlan({ callee: '6001', outcomes: ['busy'] }), /calls_callee/, 'callee + outcome: calls_callee');
    t2.match(listPlan({ outcomes: ['busy'], from: at(0), to: at(DAY) }), /calls_outcome \(outcome=\? AND received_at>\? AND received_at<\?\)/, 'outcome + range: calls_outcome');
    t2.match(listPlan({ from: at(0), to: at(DAY) }), /calls_received \(received_at>\? AND received_at<\?\)/, 'range: calls_received');
    t2.match(plan(INTERRUPT_SQL, [1, 1, 1, 1, 1, 'b2bua-1']), /calls_open/, 'interruptUnfinished: the partial index of open calls');
    t2.match(plan(FIND_SQL, ['k', 'k', 'k', 'k', 'k']), /calls_a_call_id.*calls_b_call_id/, 'find: the Call-ID indexes');
  });
});

t.test('PostgresCallStore', async (tt) => {
  const server = await startTestPostgres();
  tt.teardown(() => server.stop());
  storeSuite(tt, postgresBackend(() => server));

  tt.test('open names the URL without its password when it cannot connect', async (t2) => {
    const url = `postgresql://postgres:s3cret@127.0.0.1:${server.port}/no_such_database`;
    const err = await PostgresCallStore.open(url).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    t2.ok(err, 'open fails');
    t2.match(err?.message, /postgresql:\/\/postgres:\*\*\*@127\.0\.0\.1/, 'the URL is named');
    t2.notMatch(err?.message, /s3cret/, 'without the password');
  });
});

t.test('openCallStore and redactUrl', async (tt) => {
  tt.equal(callStoreKind(undefined), 'sqlite');
  tt.equal(callStoreKind(''), 'sqlite');
  tt.equal(callStoreKind('postgres://u:p@h/db'), 'postgres');
  tt.equal(callStoreKind('postgresql://h/db'), 'postgres');
  tt.equal(callStoreKind('PostgreSQL://h/db'), 'postgres');
  for (const bad of ['mysql://root:hunter2@db/calls', 'hunter2', 'sqlite:///var/calls.db']) {
    tt.throws(() => callStoreKind(bad), /DATABASE_URL/, `${bad.split(':')[0]} is refused naming DATABASE_URL`);
    try {
      callStoreKind(bad);
    } catch (err) {
      tt.notMatch((err as Error).message, /hunter2/, 'without echoing the secret');
    }
  }
  await tt.rejects(openCallStore({ databaseUrl: 'mysql://x/y', sqlitePath: '/nonexistent/never' }), /DATABASE_URL/);

  tt.equal(redactUrl('postgres://b2bua:s3cret@db.example:5432/calls'), 'postgres://b2bua:***@db.example:5432/calls');
  tt.equal(redactUrl('postgresql://b2bua@db/calls'), 'postgresql://b2bua@db/calls', 'no password, nothing to hide');
  tt.equal(redactUrl('postgresql://db/calls?user=b2bua&password=s3cret'), 'postgresql://db/calls?user=b2bua&password=***');
  tt.notMatch(redactUrl('postgres://u:p@ss:w/rd@db/calls'), /ss:w|rd@/, 'an unescaped @ or / in the password');

  const dir = mkdtempSync(join(tmpdir(), 'call-log-open-'));
  tt.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = await openCallStore({ databaseUrl: '  ', sqlitePath: join(dir, 'calls.sqlite') });
  tt.equal(store.kind, 'sqlite', 'a blank DATABASE_URL means SQLite');
  await store.close();
});
