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
  INSERT_MESSAGE_SQL,
  INTERRUPT_SQL,
  MESSAGES_SQL,
  NEXT_SEQ_SQL,
  PRUNE_BATCH,
  PRUNE_CALLS_SQL,
  PRUNE_NEXT_CALLS_SQL,
  STATS_SQL,
  deleteMessagesOfSql,
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
  type StatsRow,
} from './call-sql';
import { CallLogSchemaError, MIGRATIONS_TABLE_SQL, pendingMigrations } from './migrations';

export interface SqliteCallStoreOptions {
  /** How long a write waits for another connection's lock before failing (default 5000 ms). */
  busyTimeoutMs?: number;
}

/** Distinct list-query shapes kept prepared (filters combine into a bounded number of shapes). */
const LIST_STATEMENTS_KEPT = 256;

/** Characters per token of the FTS5 trigram tokenizer. */
const TRIGRAM = 3;

/**
 * Free text matching fewer calls than this is looked up in the trigram index and sorted; text
 * matching more (an extension, an address prefix) is found sooner by walking the calls newest
 * first. Either way a page takes under 30 ms on a million calls (bench/call-log-store.ts).
 */
const TEXT_INDEX_MAX_MATCHES = 2000;

/** Page cache per connection: the hot parts of the indexes of a large log stay in memory. */
const CACHE_KIB = 64 * 1024;

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
 * An FTS5 query for rows holding every trigram of `text` (the index keeps no positions,
 * detail=none, so this finds a superset: the LIKE on `search` decides). validateQuery() lets no
 * text shorter than a trigram through.
 */
function trigramMatch(text: string): string {
  const chars = [...text];
  const grams = new Set<string>();
  for (let i = 0; i + TRIGRAM <= chars.length; i += 1) grams.add(chars.slice(i, i + TRIGRAM).join(''));
  return [...grams].map((g) => `"${g.replace(/"/g, '""')}"`).join(' AND ');
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
  readonly #textMatches: Database.Statement;
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
    this.#insertMessage = db.prepare(INSERT_MESSAGE_SQL);
    this.#interrupt = db.prepare(INTERRUPT_SQL);
    this.#pruneNextCalls = db.prepare(PRUNE_NEXT_CALLS_SQL);
    this.#pruneCalls = db.prepare(PRUNE_CALLS_SQL);
    this.#stats = db.prepare(STATS_SQL);
    this.#textMatches = db.prepare('SELECT COUNT(*) AS n FROM (SELECT rowid FROM calls_search WHERE calls_search MATCH ? LIMIT ?)');
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
      db.pragma(`cache_size = -${CACHE_KIB}`);
      migrate(db, absolute);
      // Loads the planner statistics the migrations wrote.
      db.exec('ANALYZE sqlite_schema');
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
    const match = filters.text === undefined ? undefined : trigramMatch(filters.text);
    const useTextIndex = match !== undefined && (this.#textMatches.get(match, TEXT_INDEX_MAX_MATCHES) as { n: number }).n < TEXT_INDEX_MAX_MATCHES;
    const { sql, params } = listSql(filters, {
      textIndexCondition: useTextIndex ? () => ({ sql: 'row_id IN (SELECT rowid FROM calls_search WHERE calls_search MATCH ?)', params: [match] }) : undefined,
    });
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
      messages.forEach((m, i) => this.#insertMessage.run(messageValues(callId, m, seq + 1 + i)));
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
    this.#db.close();
  }
}
