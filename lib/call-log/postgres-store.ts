/**
 * The shared call log: PostgreSQL through a `pg` Pool, for several B2BUA instances writing one
 * database. Every statement is parameterised; the schema is migrated at open under an advisory
 * lock, so instances starting together apply each migration once.
 */
import { Pool, type PoolClient } from 'pg';
import type { CallLogBatch, CallPage, CallQuery, CallRecord, CallStats, CallStore, PruneResult, StoredSipMessage } from './call-record';
import {
  APPEND_MESSAGES_SQL,
  CALL_COLUMNS,
  FIND_SQL,
  GET_SQL,
  INTERRUPT_SQL,
  MESSAGES_SQL,
  PRUNE_BATCH,
  PRUNE_CALLS_SQL,
  PRUNE_NEXT_CALLS_SQL,
  STAGED_OF_SQL,
  STATS_SQL,
  UNSTAGE_INSTANCE_SQL,
  deleteMessagesOfSql,
  encodeMessages,
  firstPerCall,
  latestPerId,
  listSql,
  messagesFromSets,
  pageFromRows,
  recordValues,
  rowToRecord,
  stagedRecordValues,
  statsFromRows,
  toPostgres,
  upsertSql,
  validateQuery,
  type CallRow,
  type SqlValue,
  type StatsRow,
} from './call-sql';
import { CallLogSchemaError, MIGRATIONS_TABLE_SQL, pendingMigrations } from './migrations';

export interface PostgresCallStoreOptions {
  /** Pool size (default 10). */
  maxConnections?: number;
  /** Errors of idle pooled connections (the server restarted, the network dropped). */
  onError?: (err: Error) => void;
  /** Shown in pg_stat_activity (default "b2bua-call-log"). */
  applicationName?: string;
}

/** pg_advisory_xact_lock keys: "b2bu" "clog", the same in every instance of this program. */
const MIGRATION_LOCK = [0x62326275, 0x636c6f67] as const;

/** Rows per INSERT in insertMany (27 parameters each, under PostgreSQL's 65535). */
const INSERT_ROWS = 1000;

const UNIQUE_VIOLATION = '23505';

/**
 * The URL with its password (in the authority or a `password=` parameter) replaced by ***, for
 * logs and error messages.
 */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    if (parsed.searchParams.has('password')) parsed.searchParams.set('password', '***');
    return parsed.toString().replace('password=%2A%2A%2A', 'password=***');
  } catch {
    // Not parseable as a URL: hide everything between "user:" and the last "@", and any password=.
    return url.replace(/^([^:/?#]+:\/\/[^:@/?#]*:).*@/, '$1***@').replace(/(password=)[^&]*/gi, '$1***');
  }
}

const UPSERT = toPostgres(upsertSql());
const GET = toPostgres(GET_SQL);
const FIND = toPostgres(FIND_SQL);
const MESSAGES = toPostgres(MESSAGES_SQL);
const INTERRUPT = toPostgres(INTERRUPT_SQL);
const UPSERT_IF_NEWER = toPostgres(upsertSql(1, true));
const STAGED_OF = toPostgres(STAGED_OF_SQL);
const UNSTAGE_INSTANCE = toPostgres(UNSTAGE_INSTANCE_SQL);
const PRUNE_NEXT_CALLS = toPostgres(PRUNE_NEXT_CALLS_SQL);
const PRUNE_CALLS = toPostgres(PRUNE_CALLS_SQL);
const STATS = toPostgres(STATS_SQL);

const APPEND_MESSAGES = toPostgres(APPEND_MESSAGES_SQL);

/** PostgreSQL types of the columns of `calls`, for unnest(). */
const CALL_COLUMN_TYPES: Record<(typeof CALL_COLUMNS)[number], string> = {
  id: 'text',
  instance: 'text',
  a_call_id: 'text',
  b_call_id: 'text',
  caller_user: 'text',
  caller_name: 'text',
  caller_address: 'text',
  caller_port: 'integer',
  callee: 'text',
  state: 'text',
  received_at: 'bigint',
  ringing_at: 'bigint',
  answered_at: 'bigint',
  ended_at: 'bigint',
  post_dial_delay_ms: 'integer',
  duration_sec: 'double precision',
  billable_sec: 'integer',
  outcome: 'text',
  hangup_by: 'text',
  a_status: 'integer',
  a_reason: 'text',
  b_status: 'integer',
  b_reason: 'text',
  transfers: 'text',
  media: 'text',
  updated_at: 'bigint',
  search: 'text',
};

/**
 * One statement for a write() chunk, the same text whatever its size (prepared once per
 * connection): the records upserted from one array per column, then the message sets stored
 * unless the call has some (seq 1 taken). One statement is one transaction.
 */
const WRITE_SQL = (() => {
  const arrays = CALL_COLUMNS.map((c, i) => `$${i + 1}::${CALL_COLUMN_TYPES[c]}[]`).join(', ');
  const updates = CALL_COLUMNS.filter((c) => c !== 'id').map((c) => `${c} = excluded.${c}`);
  const m = CALL_COLUMNS.length;
  return `WITH written AS (
  INSERT INTO calls (${CALL_COLUMNS.join(', ')}) SELECT * FROM unnest(${arrays})
  ON CONFLICT (id) DO UPDATE SET ${updates.join(', ')}
  RETURNING 1
)
INSERT INTO call_message_sets (call_id, seq, message_count, messages)
SELECT m.call_id, 1, m.message_count, m.messages FROM unnest($${m + 1}::text[], $${m + 2}::integer[], $${m + 3}::text[]) AS m(call_id, message_count, messages)
ON CONFLICT (call_id, seq) DO NOTHING`;
})();

/** Records, and characters of encoded messages, per write() statement. */
const WRITE_ROWS = 1000;
const WRITE_CHARS = 8 * 1024 * 1024;

/** The parameters of WRITE_SQL. */
function writeValues(records: readonly CallRecord[], sets: ReadonlyArray<{ callId: string; count: number; text: string }>): unknown[] {
  const columns: SqlValue[][] = CALL_COLUMNS.map(() => []);
  for (const r of records) {
    const values = recordValues(r);
    for (let i = 0; i < values.length; i += 1) columns[i]!.push(values[i]!);
  }
  return [...columns, sets.map((s) => s.callId), sets.map((s) => s.count), sets.map((s) => s.text)];
}

async function migrate(pool: Pool, where: string): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    // A migration on a large log, or the wait for another instance's, may outlast the pool's timeout.
    await client.query('SET LOCAL statement_timeout = 0');
    await client.query('SELECT pg_advisory_xact_lock($1, $2)', [...MIGRATION_LOCK]);
    await client.query(MIGRATIONS_TABLE_SQL);
    const applied = (await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version);
    for (const migration of pendingMigrations(applied, where)) {
      try {
        for (const statement of migration.statements.postgres) await client.query(statement);
      } catch (err) {
        const hint = /pg_trgm|extension/i.test((err as Error).message)
          ? ' (the call log needs the pg_trgm extension, shipped with PostgreSQL: have a superuser run CREATE EXTENSION pg_trgm, or let this user create it)'
          : '';
        throw new CallLogSchemaError(`${where}: migration ${migration.version} (${migration.description}) failed: ${(err as Error).message}${hint}`, { cause: err });
      }
      await client.query('INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)', [migration.version, migration.description, Date.now()]);
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  } finally {
    client.release();
  }
}

export class PostgresCallStore implements CallStore {
  readonly kind = 'postgres';
  /** The URL with its password hidden. */
  readonly where: string;
  readonly #pool: Pool;
  #closing: Promise<void> | undefined;

  private constructor(where: string, pool: Pool) {
    this.where = where;
    this.#pool = pool;
  }

  /**
   * Connects to `url` (postgres:// or postgresql://) and applies any migration not yet recorded.
   * Errors name the URL with its password hidden.
   */
  static async open(url: string, options: PostgresCallStoreOptions = {}): Promise<PostgresCallStore> {
    const where = redactUrl(url);
    const pool = new Pool({
      connectionString: url,
      max: options.maxConnections ?? 10,
      application_name: options.applicationName ?? 'b2bua-call-log',
      connectionTimeoutMillis: 10_000,
      statement_timeout: 30_000,
    });
    pool.on('error', (err) => options.onError?.(err));
    try {
      await migrate(pool, where);
    } catch (err) {
      await pool.end().catch(() => undefined);
      if (err instanceof CallLogSchemaError) throw err;
      throw new Error(`call log at ${where}: ${(err as Error).message}`, { cause: err });
    }
    return new PostgresCallStore(where, pool);
  }

  #open(): Pool {
    if (this.#closing !== undefined) throw new Error(`call store ${this.where} is closed`);
    return this.#pool;
  }

  async upsert(record: CallRecord): Promise<void> {
    await this.#open().query({ name: 'call-upsert', text: UPSERT, values: recordValues(record) });
  }

  async write(batch: CallLogBatch): Promise<void> {
    const pool = this.#open();
    const records = latestPerId(batch.records);
    const sets = firstPerCall(batch.messages).map((e) => ({ callId: e.callId, count: e.messages.length, text: encodeMessages(e.messages) }));
    const chunks: unknown[][] = [];
    let r = 0;
    let m = 0;
    while (r < records.length || m < sets.length) {
      const chunkRecords = records.slice(r, r + WRITE_ROWS);
      r += chunkRecords.length;
      let chars = 0;
      const first = m;
      while (m < sets.length && m - first < WRITE_ROWS && (m === first || chars + sets[m]!.text.length <= WRITE_CHARS)) chars += sets[m++]!.text.length;
      chunks.push(writeValues(chunkRecords, sets.slice(first, m)));
    }
    if (chunks.length === 0) return;
    if (chunks.length === 1) {
      await pool.query({ name: 'call-write', text: WRITE_SQL, values: chunks[0] });
      return;
    }
    await this.#transaction(async (client) => {
      for (const values of chunks) await client.query({ name: 'call-write', text: WRITE_SQL, values });
    });
  }

  /**
   * Inserts or replaces many records in one transaction, a thousand to a statement (imports,
   * benchmarks). The ids must be distinct.
   */
  async insertMany(records: readonly CallRecord[]): Promise<void> {
    await this.#transaction(async (client) => {
      for (let i = 0; i < records.length; i += INSERT_ROWS) {
        const chunk = records.slice(i, i + INSERT_ROWS);
        await client.query(toPostgres(upsertSql(chunk.length)), chunk.flatMap(recordValues));
      }
    });
  }

  async get(id: string): Promise<CallRecord | undefined> {
    const { rows } = await this.#open().query<CallRow>({ name: 'call-get', text: GET, values: [id] });
    return rows[0] === undefined ? undefined : rowToRecord(rows[0]);
  }

  async find(key: string): Promise<CallRecord | undefined> {
    const { rows } = await this.#open().query<CallRow>({ name: 'call-find', text: FIND, values: [key, key, key, key, key] });
    return rows[0] === undefined ? undefined : rowToRecord(rows[0]);
  }

  async list(query: CallQuery): Promise<CallPage> {
    const pool = this.#open();
    const filters = validateQuery(query);
    const { sql, params } = listSql(filters);
    // Unnamed on purpose: each page is planned for its own values (a rare outcome or a rare
    // text wants an index a common one does not).
    const { rows } = await pool.query<CallRow>(toPostgres(sql), params);
    return pageFromRows(rows, filters.limit);
  }

  async addMessages(callId: string, messages: readonly StoredSipMessage[]): Promise<void> {
    const pool = this.#open();
    if (messages.length === 0) return;
    const values = [callId, messages.length, encodeMessages(messages), callId];
    // Two appends to one call at once may pick the same seq: the loser's statement fails whole
    // on the primary key and runs again.
    for (let attempt = 1; ; attempt += 1) {
      try {
        await pool.query({ name: 'call-append-messages', text: APPEND_MESSAGES, values });
        return;
      } catch (err) {
        if ((err as { code?: string }).code !== UNIQUE_VIOLATION || attempt >= 5) throw err;
      }
    }
  }

  async messages(callId: string): Promise<StoredSipMessage[]> {
    const { rows } = await this.#open().query<{ messages: string }>({ name: 'call-messages', text: MESSAGES, values: [callId] });
    return messagesFromSets(rows, callId);
  }

  /** Writes the records: a round trip either way, and the server's work is not the B2BUA's. */
  async stage(records: readonly CallRecord[]): Promise<void> {
    await this.write({ records, messages: [] });
  }

  async interruptUnfinished(instance: string, at: Date): Promise<string[]> {
    const t = at.getTime();
    let ids: string[] = [];
    await this.#transaction(async (client) => {
      // Staged records never written, where newer, as every store of this schema does (this one
      // writes what it stages, so none come from it).
      const staged = await client.query<{ record_values: string }>(STAGED_OF, [instance]);
      for (const row of staged.rows) await client.query(UPSERT_IF_NEWER, stagedRecordValues(row.record_values));
      if (staged.rows.length > 0) await client.query(UNSTAGE_INSTANCE, [instance]);
      ids = (await client.query<{ id: string }>(INTERRUPT, [t, t, t, t, t, instance])).rows.map((r) => r.id);
    });
    return ids;
  }

  async prune(callsBefore: Date, messagesBefore: Date): Promise<PruneResult> {
    const pool = this.#open();
    // Messages first, of every call about to go as well, so none is left without its call.
    const messagesCut = Math.max(callsBefore.getTime(), messagesBefore.getTime());
    let messages = 0;
    let after: { receivedAt: number; id: string } = { receivedAt: Number.MIN_SAFE_INTEGER, id: '' };
    for (;;) {
      const { rows } = await pool.query<{ id: string; received_at: string }>(PRUNE_NEXT_CALLS, [
        messagesCut,
        after.receivedAt,
        after.receivedAt,
        after.id,
        PRUNE_BATCH,
      ]);
      if (rows.length > 0) {
        const sets = await pool.query<{ message_count: number }>(toPostgres(deleteMessagesOfSql(rows.length)), rows.map((r) => r.id));
        for (const set of sets.rows) messages += set.message_count;
      }
      const last = rows[rows.length - 1];
      if (last === undefined || rows.length < PRUNE_BATCH) break;
      after = { receivedAt: Number(last.received_at), id: last.id };
    }
    let calls = 0;
    for (;;) {
      const deleted = (await pool.query(PRUNE_CALLS, [callsBefore.getTime(), PRUNE_BATCH])).rowCount ?? 0;
      calls += deleted;
      if (deleted < PRUNE_BATCH) break;
    }
    return { calls, messages };
  }

  async stats(from: Date, to: Date): Promise<CallStats> {
    const { rows } = await this.#open().query<StatsRow>(STATS, [from.getTime(), to.getTime()]);
    return statsFromRows(rows);
  }

  /** Resolves when a pooled connection answers and the server accepts writes (not a standby). */
  async ping(): Promise<void> {
    const { rows } = await this.#open().query<{ standby: boolean }>('SELECT pg_is_in_recovery() AS standby');
    if (rows[0]?.standby !== false) throw new Error(`call log at ${this.where} is a read-only standby`);
  }

  async close(): Promise<void> {
    this.#closing ??= this.#pool.end();
    await this.#closing;
  }

  async #transaction(work: (client: PoolClient) => Promise<void>): Promise<void> {
    const client = await this.#open().connect();
    try {
      await client.query('BEGIN');
      await work(client);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }
}
