/**
 * The shared call log: PostgreSQL through a `pg` Pool, for several B2BUA instances writing one
 * database. Every statement is parameterised; the schema is migrated at open under an advisory
 * lock, so instances starting together apply each migration once.
 */
import { Pool, type PoolClient } from 'pg';
import type { CallPage, CallQuery, CallRecord, CallStats, CallStore, PruneResult, StoredSipMessage } from './call-record';
import {
  FIND_SQL,
  GET_SQL,
  INTERRUPT_SQL,
  MESSAGES_SQL,
  PRUNE_BATCH,
  PRUNE_CALLS_SQL,
  PRUNE_NEXT_CALLS_SQL,
  STATS_SQL,
  deleteMessagesOfSql,
  listSql,
  pageFromRows,
  recordValues,
  rowToMessage,
  rowToRecord,
  statsFromRows,
  toPostgres,
  upsertSql,
  validateQuery,
  type CallRow,
  type MessageRow,
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
const PRUNE_NEXT_CALLS = toPostgres(PRUNE_NEXT_CALLS_SQL);
const PRUNE_CALLS = toPostgres(PRUNE_CALLS_SQL);
const STATS = toPostgres(STATS_SQL);

/** Messages appended in one statement: seq continues from the call's highest. */
const ADD_MESSAGES_SQL = `INSERT INTO call_messages (call_id, leg, seq, at, dir, transport, peer, local, text)
SELECT $1, m.leg, (SELECT COALESCE(MAX(seq), 0) FROM call_messages WHERE call_id = $1) + m.n, m.at, m.dir, m.transport, m.peer, m.local, m.text
FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
  WITH ORDINALITY AS m(leg, at, dir, transport, peer, local, text, n)`;

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
    const values = [
      callId,
      messages.map((m) => m.leg),
      messages.map((m) => m.at.getTime()),
      messages.map((m) => m.dir),
      messages.map((m) => m.transport),
      messages.map((m) => m.peer),
      messages.map((m) => m.local),
      messages.map((m) => m.text),
    ];
    // Two appends to one call at once may pick the same seq: the loser's statement fails whole
    // on the primary key and runs again.
    for (let attempt = 1; ; attempt += 1) {
      try {
        await pool.query({ name: 'call-add-messages', text: ADD_MESSAGES_SQL, values });
        return;
      } catch (err) {
        if ((err as { code?: string }).code !== UNIQUE_VIOLATION || attempt >= 5) throw err;
      }
    }
  }

  async messages(callId: string): Promise<StoredSipMessage[]> {
    const { rows } = await this.#open().query<MessageRow>({ name: 'call-messages', text: MESSAGES, values: [callId] });
    return rows.map(rowToMessage);
  }

  async interruptUnfinished(instance: string, at: Date): Promise<string[]> {
    const t = at.getTime();
    const { rows } = await this.#open().query<{ id: string }>(INTERRUPT, [t, t, t, t, t, instance]);
    return rows.map((r) => r.id);
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
      if (rows.length > 0) messages += (await pool.query(toPostgres(deleteMessagesOfSql(rows.length)), rows.map((r) => r.id))).rowCount ?? 0;
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
