/**
 * The call log's schema, as an ordered list of migrations shared by the SQLite and PostgreSQL
 * stores. Each store applies the ones not yet recorded in `schema_migrations`, in one transaction
 * (PostgreSQL: under an advisory lock, so two B2BUA instances starting together do not race).
 *
 * One logical schema in both dialects:
 * - Times are integer epoch milliseconds (BIGINT), so both keep the millisecond and compare fast.
 * - `transfers` (a JSON array of strings) and `media` (a JSON object, or NULL) are TEXT columns:
 *   nobody filters on them and they are written and read whole.
 * - `search` is derived by the store: the lower-cased caller user/name/address, callee, id and
 *   both Call-IDs joined by U+001F, so free text is one LIKE on one column.
 * - Free text is made fast by a trigram index, which each dialect spells its own way: a GIN
 *   `gin_trgm_ops` index in PostgreSQL (extension pg_trgm, shipped with PostgreSQL), an FTS5
 *   `trigram` table kept by triggers in SQLite. SQLite's FTS table needs a stable integer rowid,
 *   hence `row_id INTEGER PRIMARY KEY` there (a VACUUM may renumber an implicit rowid).
 * - `id` compares byte-wise in both (SQLite's default; COLLATE "C" in PostgreSQL), so the page
 *   order and the cursor agree whatever the database's locale.
 *
 * Indexes, for the operator's list (newest first: received_at DESC, id DESC, 50 a page):
 * `(received_at, id)` for the unfiltered list and time ranges, `(callee, received_at, id)`,
 * `(caller_user, received_at, id)` and `(outcome, received_at, id)` for those filters, the
 * Call-ID indexes for find(), and a partial index on open calls for interruptUnfinished().
 *
 * SIP messages (v2): one row per capture written, `call_message_sets`, not one per message. A
 * call's messages are written once, whole, and read whole (the ladder), never searched, so one
 * row of `messages` (a JSON array, see encodeMessages() in call-sql.ts) is the cheapest durable
 * form: one insert and one index entry per call instead of ~28 of each. `seq` orders the sets of
 * one call (addMessages() appends a set); `message_count` lets prune() count messages without
 * reading them. v2 moves v1's `call_messages` rows into it, one set per call in time order.
 *
 * Staged records (v2): `call_records_staged` holds, for a moment, records a crash must not lose
 * (an answer) before their batched write reaches `calls`: one small row, no index but its key,
 * no trigram work, so staging costs a fraction of a write. The store clears a call's row when it
 * writes the call, and applies what is left at recovery (CallStore.stage()).
 *
 * Never edit a migration that has shipped: add the next one.
 */

export type SqlDialect = 'sqlite' | 'postgres';

export interface Migration {
  readonly version: number;
  readonly description: string;
  /** Statements run in order, inside the migration's transaction. */
  readonly statements: Readonly<Record<SqlDialect, readonly string[]>>;
}

/** The table recording applied migrations (the same in both dialects). */
export const MIGRATIONS_TABLE_SQL = `CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY,
  description TEXT NOT NULL,
  applied_at BIGINT NOT NULL
)`;

/** The columns of `calls` that both dialects share, after each dialect's key column(s). */
const CALL_COLUMNS_SQL = `
  instance TEXT NOT NULL,
  a_call_id TEXT NOT NULL,
  b_call_id TEXT,
  caller_user TEXT NOT NULL,
  caller_name TEXT,
  caller_address TEXT NOT NULL,
  caller_port INTEGER NOT NULL,
  callee TEXT NOT NULL,
  state TEXT NOT NULL,
  received_at BIGINT NOT NULL,
  ringing_at BIGINT,
  answered_at BIGINT,
  ended_at BIGINT,
  post_dial_delay_ms INTEGER,
  duration_sec DOUBLE PRECISION,
  billable_sec INTEGER,
  outcome TEXT,
  hangup_by TEXT,
  a_status INTEGER,
  a_reason TEXT,
  b_status INTEGER,
  b_reason TEXT,
  transfers TEXT NOT NULL,
  media TEXT,
  updated_at BIGINT NOT NULL,
  search TEXT NOT NULL`;

const MESSAGES_TABLE_SQL = `CREATE TABLE call_messages (
  call_id TEXT NOT NULL,
  leg TEXT NOT NULL,
  seq INTEGER NOT NULL,
  at BIGINT NOT NULL,
  dir TEXT NOT NULL,
  transport TEXT NOT NULL,
  peer TEXT NOT NULL,
  local TEXT NOT NULL,
  text TEXT NOT NULL,
  PRIMARY KEY (call_id, seq)
)`;

const MESSAGE_SETS_TABLE_SQL = `CREATE TABLE call_message_sets (
  call_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  message_count INTEGER NOT NULL,
  messages TEXT NOT NULL,
  PRIMARY KEY (call_id, seq)
)`;

/** A record staged as its CALL_COLUMNS values (a JSON array), with what recovery selects and compares on. */
const STAGED_COLUMNS_SQL = `
  id TEXT PRIMARY KEY,
  instance TEXT NOT NULL,
  updated_at BIGINT NOT NULL,
  record_values TEXT NOT NULL`;

/** Indexes written identically in both dialects (partial indexes included). */
const COMMON_INDEXES_SQL = [
  'CREATE INDEX calls_received ON calls (received_at, id)',
  'CREATE INDEX calls_callee ON calls (callee, received_at, id)',
  'CREATE INDEX calls_caller ON calls (caller_user, received_at, id)',
  'CREATE INDEX calls_outcome ON calls (outcome, received_at, id)',
  'CREATE INDEX calls_a_call_id ON calls (a_call_id)',
  'CREATE INDEX calls_b_call_id ON calls (b_call_id) WHERE b_call_id IS NOT NULL',
  'CREATE INDEX calls_open ON calls (instance) WHERE outcome IS NULL',
];

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'calls and call_messages',
    statements: {
      sqlite: [
        `CREATE TABLE calls (
  row_id INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,${CALL_COLUMNS_SQL}
)`,
        MESSAGES_TABLE_SQL,
        ...COMMON_INDEXES_SQL,
        // Trigram index over `search`; the content stays in `calls`, the triggers keep it in step.
        "CREATE VIRTUAL TABLE calls_search USING fts5(search, content='calls', content_rowid='row_id', tokenize='trigram', detail='none')",
        `CREATE TRIGGER calls_search_insert AFTER INSERT ON calls BEGIN
  INSERT INTO calls_search (rowid, search) VALUES (new.row_id, new.search);
END`,
        `CREATE TRIGGER calls_search_delete AFTER DELETE ON calls BEGIN
  INSERT INTO calls_search (calls_search, rowid, search) VALUES ('delete', old.row_id, old.search);
END`,
        `CREATE TRIGGER calls_search_update AFTER UPDATE OF search ON calls WHEN old.search IS NOT new.search BEGIN
  INSERT INTO calls_search (calls_search, rowid, search) VALUES ('delete', old.row_id, old.search);
  INSERT INTO calls_search (rowid, search) VALUES (new.row_id, new.search);
END`,
        // Fixed query plans. SQLite chooses indexes from sqlite_stat1, which ANALYZE fills from
        // the data; these are the figures of a typical log instead (a million calls, a thousand
        // extensions, seven outcomes, few open calls), so from the first call on the planner
        // makes the choices the benchmark measured (e.g. caller + outcome uses calls_caller, not
        // calls_outcome) and they never change under a running B2BUA.
        // (ANALYZE of the empty table creates sqlite_stat1. Not of FTS5's own tables: statistics
        // from their empty state would mislead FTS5's internal queries as the index grows.)
        'ANALYZE calls',
        "DELETE FROM sqlite_stat1 WHERE tbl IN ('calls', 'call_messages')",
        `INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
  ('calls', 'sqlite_autoindex_calls_1', '1000000 1'),
  ('calls', 'calls_received', '1000000 1 1'),
  ('calls', 'calls_callee', '1000000 1000 1 1'),
  ('calls', 'calls_caller', '1000000 1000 1 1'),
  ('calls', 'calls_outcome', '1000000 142858 1 1'),
  ('calls', 'calls_a_call_id', '1000000 1'),
  ('calls', 'calls_b_call_id', '1000000 1'),
  ('calls', 'calls_open', '20 10'),
  ('call_messages', 'sqlite_autoindex_call_messages_1', '20000000 20 1')`,
      ],
      postgres: [
        // Trusted since PostgreSQL 13: the database's owner may create it without superuser.
        'CREATE EXTENSION IF NOT EXISTS pg_trgm',
        `CREATE TABLE calls (
  id TEXT COLLATE "C" PRIMARY KEY,${CALL_COLUMNS_SQL}
)`,
        MESSAGES_TABLE_SQL,
        ...COMMON_INDEXES_SQL,
        'CREATE INDEX calls_search ON calls USING gin (search gin_trgm_ops)',
        // The planner picks between the trigram index (text in few calls) and walking calls
        // newest first (text in many) from a histogram of `search`. The default 100 buckets miss
        // texts in 1% of calls (an address prefix), which then take the index path over 10,000
        // rows; 1000 buckets see them.
        'ALTER TABLE calls ALTER COLUMN search SET STATISTICS 1000',
      ],
    },
  },
  {
    version: 2,
    description: 'SIP messages as one row per capture (call_message_sets); staged records (call_records_staged)',
    statements: {
      sqlite: [
        MESSAGE_SETS_TABLE_SQL,
        // Each message as [leg, at, dir, transport, peer, local, text], in time order then v1's seq.
        `INSERT INTO call_message_sets (call_id, seq, message_count, messages)
SELECT call_id, 1, COUNT(*), json_group_array(json_array(leg, at, dir, transport, peer, local, text) ORDER BY at, seq)
FROM call_messages GROUP BY call_id`,
        'DROP TABLE call_messages',
        // Fixed statistics as in v1: about one set per call.
        "DELETE FROM sqlite_stat1 WHERE tbl IN ('call_messages', 'call_message_sets')",
        "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ('call_message_sets', 'sqlite_autoindex_call_message_sets_1', '1000000 1 1')",
        // Rows live milliseconds: keyed by id alone (no rowid), so staging touches one b-tree.
        `CREATE TABLE call_records_staged (${STAGED_COLUMNS_SQL}
) WITHOUT ROWID`,
      ],
      postgres: [
        `CREATE TABLE call_records_staged (${STAGED_COLUMNS_SQL}
)`,
        MESSAGE_SETS_TABLE_SQL,
        `INSERT INTO call_message_sets (call_id, seq, message_count, messages)
SELECT call_id, 1, COUNT(*), json_agg(json_build_array(leg, at, dir, transport, peer, local, text) ORDER BY at, seq)::text
FROM call_messages GROUP BY call_id`,
        'DROP TABLE call_messages',
      ],
    },
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** The database was migrated by a newer program, or a migration failed. */
export class CallLogSchemaError extends Error {
  override readonly name = 'CallLogSchemaError';
  readonly code = 'ERR_CALL_LOG_SCHEMA';
}

/**
 * The migrations still to apply given the versions already recorded, in order. Throws when the
 * database records a version this program does not know (it was written by a newer release).
 */
export function pendingMigrations(applied: Iterable<number>, where: string): Migration[] {
  const done = new Set(applied);
  const unknown = [...done].filter((v) => !MIGRATIONS.some((m) => m.version === v));
  if (unknown.length > 0) {
    throw new CallLogSchemaError(
      `${where}: the call log has schema version ${Math.max(...unknown)}, newer than this program's ${SCHEMA_VERSION}; upgrade the program`,
    );
  }
  return MIGRATIONS.filter((m) => !done.has(m.version));
}
