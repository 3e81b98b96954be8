/**
 * The embedded call log: one SQLite file (WAL, synchronous=NORMAL) written through better-sqlite3.
 * Calls are synchronous underneath; the methods return promises so the B2BUA and the operator API
 * treat this store and the PostgreSQL one alike. Long jobs (prune, a large write()) are split into
 * short transactions that yield to the event loop between them, so SIP handling never stalls
 * behind them; with `checkpoint: 'worker'` the WAL checkpoints (a copy and an fsync, the longest
 * stall of all) run on a worker thread.
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as pause, setImmediate as yieldToEventLoop } from 'node:timers/promises';
import Database from 'better-sqlite3';
import type { CallLogBatch, CallMessages, CallPage, CallQuery, CallRecord, CallStats, CallStore, PruneResult, StoredSipMessage } from './call-record';
import {
  APPEND_MESSAGES_SQL,
  FIND_SQL,
  GET_SQL,
  INTERRUPT_SQL,
  MESSAGES_SQL,
  PRUNE_BATCH,
  PRUNE_CALLS_SQL,
  PRUNE_NEXT_CALLS_SQL,
  STAGED_OF_SQL,
  STAGE_SQL,
  STATS_SQL,
  STORE_MESSAGES_ONCE_SQL,
  UNSTAGE_INSTANCE_SQL,
  UPDATE_STATE_SQL,
  UNSTAGE_SQL,
  deleteMessagesOfSql,
  encodeMessages,
  firstPerCall,
  identityKey,
  listSql,
  messagesFromSets,
  pageFromRows,
  recordValues,
  rowToRecord,
  stageValues,
  stagedRecordValues,
  stateValues,
  statsFromRows,
  upsertSql,
  validateQuery,
  type CallRow,
  type StatsRow,
} from './call-sql';
import { CallLogSchemaError, MIGRATIONS_TABLE_SQL, pendingMigrations } from './migrations';
import { WalCheckpointer, type CheckpointResult } from './sqlite-checkpointer';

export interface SqliteCallStoreOptions {
  /** How long a write waits for another connection's lock before failing (default 5000 ms). */
  busyTimeoutMs?: number;
  /**
   * Who copies the WAL back into the database file. 'inline' (the default): SQLite itself, inside
   * the commit that takes the WAL past 1000 pages; that commit then copies and fsyncs, 10-20 ms
   * on a disk, blocking the event loop. 'worker': a worker thread with its own connection, at
   * most every `checkpointIntervalMs` after a write, while this connection goes on writing (what
   * the B2BUA uses, through openCallStore()). With it, this connection never waits for a lock
   * inside SQLite, which would block the event loop: a write that finds the lock taken (the worker
   * restarting the WAL) is tried again after a pause, for up to `busyTimeoutMs`.
   */
  checkpoint?: 'inline' | 'worker';
  /** With `checkpoint: 'worker'`: the least time between two checkpoints (default 1000 ms). */
  checkpointIntervalMs?: number;
  /** With `checkpoint: 'worker'`: told of each checkpoint done (tests, benchmarks). */
  onCheckpoint?: (result: CheckpointResult) => void;
  /** Told of each transaction write() ran: how long it took and what it held (benchmarks, metrics). */
  onTransaction?: (ms: number, records: number, messageSets: number) => void;
}

/**
 * How long one write() transaction may spend on its statements before it commits and lets the
 * event loop run. The commit adds about half as much again (the trigram index's new segment and
 * the WAL frames), so a transaction blocks for ~1.5 ms; the event loop runs between two. Time,
 * not a count of rows, so it adapts to the machine and its load. On the benchmark machine a
 * record's upsert takes ~50-150 us (the first of a call, with its trigrams, the most), a call's
 * ~17 KB of messages ~80 us with their encoding (bench/call-log-writer.ts reports every
 * transaction's duration).
 */
const TRANSACTION_WORK_MS = 1;

/** A write() in progress: what it writes and how far it got (a failed transaction rolls back, and so does nothing after it). */
interface WriteJob {
  readonly records: readonly CallRecord[];
  readonly sets: readonly CallMessages[];
  r: number;
  m: number;
  started: number;
  /** The current transaction's records, remembered once it commits. */
  written: WrittenCall[];
}

/** A call written: its identityKey() while in progress, undefined once its outcome is written. */
interface WrittenCall {
  readonly id: string;
  readonly key: string | undefined;
}

/** Calls in progress remembered at most (far more than a B2BUA holds at once). */
const WRITTEN_CALLS_KEPT = 100_000;

/** WAL frames (pages, 4 KiB) from which the checkpoint worker restarts the WAL (SQLite's own checkpoint size). */
const WAL_RESTART_FRAMES = 1000;

/** SQLITE_BUSY and its extended codes: another connection holds the lock. */
function isBusy(err: unknown): boolean {
  return typeof (err as { code?: unknown }).code === 'string' && (err as { code: string }).code.startsWith('SQLITE_BUSY');
}

/** The WAL is cut back to this size when it restarts (after a burst made it large). */
const JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024;

const DEFAULT_BUSY_TIMEOUT_MS = 5000;

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
  readonly #updateState: Database.Statement;
  /**
   * Calls in progress this connection wrote, with identityKey() as written: their next record
   * only updates the state columns when that is unchanged. Entries go when the call's outcome is
   * written, and are added only once a transaction commits.
   */
  readonly #written = new Map<string, string>();
  readonly #upsertIfNewer: Database.Statement;
  readonly #stage: Database.Statement;
  readonly #unstage: Database.Statement;
  readonly #stagedOf: Database.Statement;
  readonly #unstageInstance: Database.Statement;
  /** Transactions prepared once (better-sqlite3 wraps a function anew at each transaction() call). */
  readonly #stageAll: Database.Transaction<(records: readonly CallRecord[]) => void>;
  readonly #upsertOne: Database.Transaction<(record: CallRecord, written: WrittenCall[]) => void>;
  readonly #writeSome: Database.Transaction<(job: WriteJob) => void>;
  /** Calls this connection staged and has not written since. */
  readonly #staged = new Set<string>();
  readonly #get: Database.Statement;
  readonly #find: Database.Statement;
  readonly #messages: Database.Statement;
  readonly #appendMessages: Database.Statement;
  readonly #storeMessagesOnce: Database.Statement;
  readonly #interrupt: Database.Statement;
  readonly #pruneNextCalls: Database.Statement;
  readonly #pruneCalls: Database.Statement;
  readonly #stats: Database.Statement;
  readonly #textMatches: Database.Statement;
  readonly #lists = new Map<string, Database.Statement>();
  readonly #onTransaction: SqliteCallStoreOptions['onTransaction'];
  readonly #busyTimeoutMs: number;
  #checkpointer: WalCheckpointer | undefined;
  #closed = false;

  private constructor(file: string, db: Database.Database, options: SqliteCallStoreOptions) {
    this.file = file;
    this.#db = db;
    this.#onTransaction = options.onTransaction;
    this.#busyTimeoutMs = options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
    this.#upsert = db.prepare(upsertSql());
    this.#updateState = db.prepare(UPDATE_STATE_SQL);
    this.#upsertIfNewer = db.prepare(upsertSql(1, true));
    this.#stage = db.prepare(STAGE_SQL);
    this.#unstage = db.prepare(UNSTAGE_SQL);
    this.#stagedOf = db.prepare(STAGED_OF_SQL);
    this.#unstageInstance = db.prepare(UNSTAGE_INSTANCE_SQL);
    this.#stageAll = db.transaction((records: readonly CallRecord[]) => {
      for (const record of records) this.#stage.run(stageValues(record));
    });
    this.#writeSome = db.transaction((job: WriteJob) => this.#writeStatements(job));
    this.#upsertOne = db.transaction((record: CallRecord, written: WrittenCall[]) => this.#upsertRecord(record, written));
    this.#get = db.prepare(GET_SQL);
    this.#find = db.prepare(FIND_SQL);
    this.#messages = db.prepare(MESSAGES_SQL);
    this.#appendMessages = db.prepare(APPEND_MESSAGES_SQL);
    this.#storeMessagesOnce = db.prepare(STORE_MESSAGES_ONCE_SQL);
    this.#interrupt = db.prepare(INTERRUPT_SQL);
    this.#pruneNextCalls = db.prepare(PRUNE_NEXT_CALLS_SQL);
    this.#pruneCalls = db.prepare(PRUNE_CALLS_SQL);
    this.#stats = db.prepare(STATS_SQL);
    this.#textMatches = db.prepare('SELECT COUNT(*) AS n FROM (SELECT rowid FROM calls_search WHERE calls_search MATCH ? LIMIT ?)');
    if (options.checkpoint === 'worker') {
      db.pragma('wal_autocheckpoint = 0');
      // Locks are waited for in #locked(), off the event loop.
      db.pragma('busy_timeout = 0');
      this.#checkpointer = new WalCheckpointer({
        file,
        busyTimeoutMs: this.#busyTimeoutMs,
        intervalMs: options.checkpointIntervalMs ?? 1000,
        restartFrames: WAL_RESTART_FRAMES,
        onCheckpoint: options.onCheckpoint,
        // Without the worker the WAL would grow for ever: SQLite checkpoints inline again.
        onFailure: () => {
          this.#checkpointer = undefined;
          if (this.#closed) return;
          db.pragma('wal_autocheckpoint = 1000');
          db.pragma(`busy_timeout = ${this.#busyTimeoutMs}`);
        },
      });
    }
  }

  /**
   * Opens the call log at `file`, creating it (mode 0600) and its directory as needed, and applies
   * any migration not yet recorded. Throws CallLogSchemaError if a newer program wrote the file.
   */
  static open(file: string, options: SqliteCallStoreOptions = {}): SqliteCallStore {
    const absolute = resolve(file);
    createPrivateFile(absolute);
    const db = new Database(absolute, { timeout: options.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS });
    try {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma(`cache_size = -${CACHE_KIB}`);
      db.pragma(`journal_size_limit = ${JOURNAL_SIZE_LIMIT}`);
      migrate(db, absolute);
      // Loads the planner statistics the migrations wrote.
      db.exec('ANALYZE sqlite_schema');
      return new SqliteCallStore(absolute, db, options);
    } catch (err) {
      db.close();
      throw err;
    }
  }

  #open(): Database.Database {
    if (this.#closed) throw new Error(`call store ${this.file} is closed`);
    return this.#db;
  }

  /**
   * Runs `work`, one statement or transaction that writes. Without the checkpoint worker SQLite
   * waits for a taken lock itself (busy_timeout). With it, this connection does not wait inside
   * SQLite (that would block the event loop): `work` runs again after a short pause, until it
   * gets the lock or busyTimeoutMs has passed. `work` must have no effect when it fails.
   */
  async #locked<T>(work: () => T): Promise<T> {
    let waited = 0;
    for (let wait = 1; ; wait = Math.min(2 * wait, 16)) {
      const restarting = this.#checkpointer?.restarting;
      if (restarting) await restarting;
      this.#open();
      try {
        return work();
      } catch (err) {
        if (this.#checkpointer === undefined || !isBusy(err) || waited >= this.#busyTimeoutMs) throw err;
      }
      await pause(wait);
      waited += wait;
    }
  }

  async upsert(record: CallRecord): Promise<void> {
    const written: WrittenCall[] = [];
    await this.#locked(() => {
      written.length = 0;
      this.#upsertOne.immediate(record, written);
    });
    this.#remember(written);
    this.#checkpointer?.poke();
  }

  async stage(records: readonly CallRecord[]): Promise<void> {
    this.#open();
    if (records.length === 0) return;
    await this.#locked(() => this.#stageAll.immediate(records));
    for (const record of records) this.#staged.add(record.id);
    this.#checkpointer?.poke();
  }

  /**
   * Writes a record, inside a transaction: only its state columns when the call was written with
   * the same identity before (and its row is there), else every column; drops what was staged
   * for it. Notes in `written` what to remember once the transaction commits.
   */
  #upsertRecord(record: CallRecord, written: WrittenCall[]): void {
    const values = recordValues(record);
    const key = identityKey(values);
    const updated = this.#written.get(record.id) === key && this.#updateState.run(stateValues(values)).changes === 1;
    if (!updated) this.#upsert.run(values);
    if (this.#staged.delete(record.id)) this.#unstage.run(record.id);
    written.push({ id: record.id, key: record.outcome === null ? key : undefined });
  }

  /** After a commit: the calls still in progress and how they were written; the finished ones forgotten. */
  #remember(written: readonly WrittenCall[]): void {
    // Calls a crash of their writes left here for ever (a failed final write) cannot pile up.
    if (this.#written.size > WRITTEN_CALLS_KEPT) this.#written.clear();
    for (const { id, key } of written) {
      if (key === undefined) this.#written.delete(id);
      else this.#written.set(id, key);
    }
  }

  async write(batch: CallLogBatch): Promise<void> {
    this.#open();
    const job: WriteJob = { records: batch.records, sets: firstPerCall(batch.messages), r: 0, m: 0, started: 0, written: [] };
    while (job.r < job.records.length || job.m < job.sets.length) {
      if (job.r > 0 || job.m > 0) {
        await yieldToEventLoop();
        this.#open();
      }
      const first = { r: job.r, m: job.m };
      await this.#locked(() => {
        // From where the last commit left off (a transaction that failed did nothing).
        job.r = first.r;
        job.m = first.m;
        job.written = [];
        job.started = performance.now();
        this.#writeSome.immediate(job);
      });
      this.#remember(job.written);
      this.#onTransaction?.(performance.now() - job.started, job.r - first.r, job.m - first.m);
    }
    this.#checkpointer?.poke();
  }

  /** One transaction's statements of a write(): at least one, then more while time allows. */
  #writeStatements(job: WriteJob): void {
    const { records, sets } = job;
    do {
      if (job.r < records.length) {
        this.#upsertRecord(records[job.r]!, job.written);
        job.r += 1;
      } else {
        const { callId, messages } = sets[job.m]!;
        // Encoded here, inside the time taken: for a large batch the encoding is work too.
        this.#storeMessagesOnce.run(callId, messages.length, encodeMessages(messages));
        job.m += 1;
      }
    } while ((job.r < records.length || job.m < sets.length) && performance.now() - job.started < TRANSACTION_WORK_MS);
  }

  /** Inserts or replaces many records in one transaction (imports, benchmarks). */
  async insertMany(records: readonly CallRecord[]): Promise<void> {
    const db = this.#open();
    await this.#locked(() =>
      db.transaction(() => {
        for (const record of records) this.#upsert.run(recordValues(record));
      })(),
    );
    for (const record of records) this.#written.delete(record.id);
    this.#checkpointer?.poke();
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
    this.#open();
    if (messages.length === 0) return;
    // One statement: the next seq and the insert are atomic.
    const text = encodeMessages(messages);
    await this.#locked(() => this.#appendMessages.run(callId, messages.length, text, callId));
    this.#checkpointer?.poke();
  }

  async messages(callId: string): Promise<StoredSipMessage[]> {
    this.#open();
    return messagesFromSets(this.#messages.all(callId) as Array<{ messages: string }>, callId);
  }

  async interruptUnfinished(instance: string, at: Date): Promise<string[]> {
    const db = this.#open();
    const t = at.getTime();
    const ids = await this.#locked(() =>
      db
        .transaction(() => {
          // What the instance staged and never wrote, where newer than what it wrote.
          for (const row of this.#stagedOf.all(instance) as Array<{ record_values: string }>) this.#upsertIfNewer.run(stagedRecordValues(row.record_values));
          this.#unstageInstance.run(instance);
          return (this.#interrupt.all(t, t, t, t, t, instance) as Array<{ id: string }>).map((r) => r.id);
        })
        .immediate(),
    );
    this.#staged.clear();
    // Rows changed behind what this connection remembers of them.
    this.#written.clear();
    this.#checkpointer?.poke();
    return ids;
  }

  async prune(callsBefore: Date, messagesBefore: Date): Promise<PruneResult> {
    const db = this.#open();
    // Messages first, of every call about to go as well, so none is left without its call.
    const messagesCut = Math.max(callsBefore.getTime(), messagesBefore.getTime());
    let messages = 0;
    let after = { receivedAt: Number.MIN_SAFE_INTEGER, id: '' };
    for (;;) {
      const batch = await this.#locked(() =>
        db
          .transaction(() => {
            const calls = this.#pruneNextCalls.all(messagesCut, after.receivedAt, after.receivedAt, after.id, PRUNE_BATCH) as Array<{ id: string; received_at: number }>;
            let deleted = 0;
            if (calls.length > 0) {
              const sets = db.prepare(deleteMessagesOfSql(calls.length)).all(calls.map((c) => c.id)) as Array<{ message_count: number }>;
              for (const set of sets) deleted += set.message_count;
            }
            return { calls, deleted };
          })
          .immediate(),
      );
      messages += batch.deleted;
      const last = batch.calls[batch.calls.length - 1];
      if (last === undefined || batch.calls.length < PRUNE_BATCH) break;
      after = { receivedAt: last.received_at, id: last.id };
      await yieldToEventLoop();
      this.#open();
    }
    let calls = 0;
    for (;;) {
      const deleted = (await this.#locked(() => this.#pruneCalls.run(callsBefore.getTime(), PRUNE_BATCH))).changes;
      calls += deleted;
      if (deleted < PRUNE_BATCH) break;
      await yieldToEventLoop();
      this.#open();
    }
    this.#checkpointer?.poke();
    return { calls, messages };
  }

  async stats(from: Date, to: Date): Promise<CallStats> {
    this.#open();
    return statsFromRows(this.#stats.all(from.getTime(), to.getTime()) as StatsRow[]);
  }

  /** Takes and releases the write lock: resolves only if a write could happen now. */
  async ping(): Promise<void> {
    const db = this.#open();
    await this.#locked(() => db.exec('BEGIN IMMEDIATE'));
    db.exec('ROLLBACK');
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // The worker's connection first: closing the last connection checkpoints and removes the WAL.
    await this.#checkpointer?.close();
    this.#db.close();
  }
}
