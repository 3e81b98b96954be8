/**
 * The embedded call log: one SQLite file (WAL, synchronous=NORMAL) written through better-sqlite3.
 * Calls are synchronous underneath; the methods return promises so the B2BUA and the operator API
 * treat this store and the PostgreSQL one alike. Long jobs (prune) yield to the event loop
 * between batches so SIP handling never stalls behind them.
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import Database from 'better-sqlite3';
import type { CallPage, CallQuery, CallRecord, CallStats, CallStore, PruneResult, StoredSipMessage } from './call-record';
import {
  FIND_SQL,
  GET_SQL,
  INTERRUPT_SQL,
  MESSAGES_SQL,
  NEXT_SEQ_SQL,
  PRUNE_BATCH,
  PRUNE_CALLS_SQL,
  PRUNE_NEXT_CALLS_SQL,
  STATS_SQL,
  deleteMessagesOfSql,
  insertMessagesSql,
  listSql,
  messageValues,
  pageFromRows,
  recordValues,
  rowToMessage,
  rowToRecord,
  statsFromRows,
  upsertSql,
  validateQuery,
  type CallRow,
  type MessageRow,
  type SqlStatement,
  type StatsRow,
} from './call-sql';
import { CallLogSchemaError, MIGRATIONS_TABLE_SQL, pendingMigrations } from './migrations';

export interface SqliteCallStoreOptions {
  /** How long a write waits for another connection's lock before failing (default 5000 ms). */
  busyTimeoutMs?: number;
}

/** Distinct list-query shapes kept prepared (filters combine into a bounded number of shapes). */
const LIST_STATEMENTS_KEPT = 256;

/** The FTS5 trigram index only helps with 3 characters or more. */
const TRIGRAM = 3;

/** Creates the file readable by its owner only (call records name callers and their addresses). */
function createPrivateFile(file: string): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  if (existsSync(file)) return;
  closeSync(openSync(file, 'a', 0o600));
  chmodSync(file, 0o600);
}

function migrate(db: Database.Database, file: string): void {
  db.transaction(() => {
    db.exec(MIGRATIONS_TABLE_SQL);
    const applied = (db.prepare('SELECT version FROM schema_migrations').all() as Array<{ version: number }>).map((r) => r.version);
    for (const migration of pendingMigrations(applied, file)) {
      try {
        for (const statement of migration.statements.sqlite) db.exec(statement);
      } catch (err) {
        throw new CallLogSchemaError(`${file}: migration ${migration.version} (${migration.description}) failed: ${(err as Error).message}`, { cause: err });
      }
      db.prepare('INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)').run(migration.version, migration.description, Date.now());
    }
  }).immediate();
}

/**
 * The FTS5 condition narrowing free text to rows holding every trigram of it (the index has no
 * positions, detail=none, so this is a superset: the LIKE on `search` decides).
 */
function trigramCondition(text: string): SqlStatement | undefined {
  const chars = [...text];
  if (chars.length < TRIGRAM) return undefined;
  const grams = new Set<string>();
  for (let i = 0; i + TRIGRAM <= chars.length; i += 1) grams.add(chars.slice(i, i + TRIGRAM).join(''));
  const match = [...grams].map((g) => `"${g.replace(/"/g, '""')}"`).join(' AND ');
  return { sql: 'row_id IN (SELECT rowid FROM calls_search WHERE calls_search MATCH ?)', params: [match] };
}

export class SqliteCallStore implements CallStore {
  readonly kind = 'sqlite';
  /** The database file's absolute path. */
  readonly file: string;
  readonly #db: Database.Database;
  readonly #upsert: Database.Statement;
  readonly #get: Database.Statement;
  readonly #find: Database.Statement;
  readonly #messages: Database.Statement;
  readonly #nextSeq: Database.Statement;
  readonly #insertMessage: Database.Statement;
  readonly #interrupt: Database.Statement;
  readonly #pruneNextCalls: Database.Statement;
  readonly #pruneCalls: Database.Statement;
  readonly #stats: Database.Statement;
  readonly #lists = new Map<string, Database.Statement>();
  #closed = false;

  private constructor(file: string, db: Database.Database) {
    this.file = file;
    this.#db = db;
    this.#upsert = db.prepare(upsertSql());
    this.#get = db.prepare(GET_SQL);
    this.#find = db.prepare(FIND_SQL);
    this.#messages = db.prepare(MESSAGES_SQL);
    this.#nextSeq = db.prepare(NEXT_SEQ_SQL);
    this.#insertMessage = db.prepare(insertMessagesSql(1));
    this.#interrupt = db.prepare(INTERRUPT_SQL);
    this.#pruneNextCalls = db.prepare(PRUNE_NEXT_CALLS_SQL);
    this.#pruneCalls = db.prepare(PRUNE_CALLS_SQL);
    this.#stats = db.prepare(STATS_SQL);
  }

  /**
   * Opens the call log at `file`, creating it (mode 0600) and its directory as needed, and applies
   * any migration not yet recorded. Throws CallLogSchemaError if a newer program wrote the file.
   */
  static open(file: string, options: SqliteCallStoreOptions = {}): SqliteCallStore {
    const absolute = resolve(file);
    createPrivateFile(absolute);
    const db = new Database(absolute, { timeout: options.busyTimeoutMs ?? 5000 });
    try {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      migrate(db, absolute);
      return new SqliteCallStore(absolute, db);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  #open(): Database.Database {
    if (this.#closed) throw new Error(`call store ${this.file} is closed`);
    return this.#db;
  }

  async upsert(record: CallRecord): Promise<void> {
    this.#open();
    this.#upsert.run(recordValues(record));
  }

  /** Inserts or replaces many records in one transaction (imports, benchmarks). */
  async insertMany(records: readonly CallRecord[]): Promise<void> {
    this.#open().transaction(() => {
      for (const record of records) this.#upsert.run(recordValues(record));
    })();
  }

  async get(id: string): Promise<CallRecord | undefined> {
    this.#open();
    const row = this.#get.get(id) as CallRow | undefined;
    return row === undefined ? undefined : rowToRecord(row);
  }

  async find(key: string): Promise<CallRecord | undefined> {
    this.#open();
    const row = this.#find.get(key, key, key, key, key) as CallRow | undefined;
    return row === undefined ? undefined : rowToRecord(row);
  }

  async list(query: CallQuery): Promise<CallPage> {
    const db = this.#open();
    const filters = validateQuery(query);
    const { sql, params } = listSql(filters, { textIndexCondition: trigramCondition });
    let statement = this.#lists.get(sql);
    if (statement === undefined) {
      if (this.#lists.size >= LIST_STATEMENTS_KEPT) this.#lists.clear();
      statement = db.prepare(sql);
      this.#lists.set(sql, statement);
    }
    return pageFromRows(statement.all(params) as CallRow[], filters.limit);
  }

  async addMessages(callId: string, messages: readonly StoredSipMessage[]): Promise<void> {
    const db = this.#open();
    if (messages.length === 0) return;
    db.transaction(() => {
      const { seq } = this.#nextSeq.get(callId) as { seq: number };
      messages.forEach((m, i) => this.#insertMessage.run(messageValues(callId, [m], seq + 1 + i)));
    }).immediate();
  }

  async messages(callId: string): Promise<StoredSipMessage[]> {
    this.#open();
    return (this.#messages.all(callId) as MessageRow[]).map(rowToMessage);
  }

  async interruptUnfinished(instance: string, at: Date): Promise<string[]> {
    this.#open();
    const t = at.getTime();
    return (this.#interrupt.all(t, t, t, t, t, instance) as Array<{ id: string }>).map((r) => r.id);
  }

  async prune(callsBefore: Date, messagesBefore: Date): Promise<PruneResult> {
    const db = this.#open();
    // Messages first, of every call about to go as well, so none is left without its call.
    const messagesCut = Math.max(callsBefore.getTime(), messagesBefore.getTime());
    let messages = 0;
    let after = { receivedAt: Number.MIN_SAFE_INTEGER, id: '' };
    for (;;) {
      const batch = db.transaction(() => {
        const calls = this.#pruneNextCalls.all(messagesCut, after.receivedAt, after.receivedAt, after.id, PRUNE_BATCH) as Array<{ id: string; received_at: number }>;
        if (calls.length > 0) messages += db.prepare(deleteMessagesOfSql(calls.length)).run(calls.map((c) => c.id)).changes;
        return calls;
      }).immediate();
      const last = batch[batch.length - 1];
      if (last === undefined || batch.length < PRUNE_BATCH) break;
      after = { receivedAt: last.received_at, id: last.id };
      await yieldToEventLoop();
      this.#open();
    }
    let calls = 0;
    for (;;) {
      const deleted = this.#pruneCalls.run(callsBefore.getTime(), PRUNE_BATCH).changes;
      calls += deleted;
      if (deleted < PRUNE_BATCH) break;
      await yieldToEventLoop();
      this.#open();
    }
    return { calls, messages };
  }

  async stats(from: Date, to: Date): Promise<CallStats> {
    this.#open();
    return statsFromRows(this.#stats.all(from.getTime(), to.getTime()) as StatsRow[]);
  }

  /** Takes and releases the write lock: resolves only if a write could happen now. */
  async ping(): Promise<void> {
    const db = this.#open();
    db.exec('BEGIN IMMEDIATE');
    db.exec('ROLLBACK');
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      // Refreshes the planner's statistics when they have drifted (cheap; SQLite's advice).
      this.#db.pragma('optimize');
    } finally {
      this.#db.close();
    }
  }
}
