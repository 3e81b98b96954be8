/**
 * What the SQLite and PostgreSQL stores share: the column list, record <-> row mapping, the
 * list query (filters, order, cursor), the statements written the same in both dialects, and
 * query validation. SQL is written with `?` placeholders; `toPostgres()` numbers them.
 */
import {
  CALL_OUTCOMES,
  CallQueryError,
  type CallOutcome,
  type CallQuery,
  type CallRecord,
  type CallStats,
  type StoredMedia,
  type StoredSipMessage,
} from './call-record';
import type { SqlDialect } from './migrations';

/** Columns of `calls` in the order recordValues() produces them. */
export const CALL_COLUMNS = [
  'id',
  'instance',
  'a_call_id',
  'b_call_id',
  'caller_user',
  'caller_name',
  'caller_address',
  'caller_port',
  'callee',
  'state',
  'received_at',
  'ringing_at',
  'answered_at',
  'ended_at',
  'post_dial_delay_ms',
  'duration_sec',
  'billable_sec',
  'outcome',
  'hangup_by',
  'a_status',
  'a_reason',
  'b_status',
  'b_reason',
  'transfers',
  'media',
  'updated_at',
  'search',
] as const;

/** Everything a CallRecord is read from (`search` is derived, not read back). */
const SELECT_LIST = CALL_COLUMNS.filter((c) => c !== 'search').join(', ');

/** The separator between the fields of `search`; refused in free text so no match spans two fields. */
const SEARCH_SEPARATOR = '\u001f';

export type SqlValue = string | number | null;

/** A row of `calls` as a driver returns it (pg gives BIGINT as a string). */
export type CallRow = Record<(typeof CALL_COLUMNS)[number], SqlValue>;

/** The text free-text queries look in, lower-cased here so both dialects fold case alike. */
export function searchText(record: CallRecord): string {
  return [record.id, record.aCallId, record.bCallId ?? '', record.callerUser, record.callerName ?? '', record.callerAddress, record.callee]
    .join(SEARCH_SEPARATOR)
    .toLowerCase();
}

function ms(date: Date | null): number | null {
  return date === null ? null : date.getTime();
}

/** The record's values in CALL_COLUMNS order. */
export function recordValues(r: CallRecord): SqlValue[] {
  return [
    r.id,
    r.instance,
    r.aCallId,
    r.bCallId,
    r.callerUser,
    r.callerName,
    r.callerAddress,
    r.callerPort,
    r.callee,
    r.state,
    r.receivedAt.getTime(),
    ms(r.ringingAt),
    ms(r.answeredAt),
    ms(r.endedAt),
    r.postDialDelayMs,
    r.durationSec,
    r.billableSec,
    r.outcome,
    r.hangupBy,
    r.aStatus,
    r.aReason,
    r.bStatus,
    r.bReason,
    JSON.stringify(r.transfers),
    r.media === null ? null : JSON.stringify(r.media),
    r.updatedAt.getTime(),
    searchText(r),
  ];
}

function num(value: SqlValue): number {
  return typeof value === 'number' ? value : Number(value);
}

function numOrNull(value: SqlValue): number | null {
  return value === null ? null : num(value);
}

function dateOrNull(value: SqlValue): Date | null {
  return value === null ? null : new Date(num(value));
}

function textOrNull(value: SqlValue): string | null {
  return value === null ? null : String(value);
}

export function rowToRecord(row: CallRow): CallRecord {
  return {
    id: String(row.id),
    instance: String(row.instance),
    aCallId: String(row.a_call_id),
    bCallId: textOrNull(row.b_call_id),
    callerUser: String(row.caller_user),
    callerName: textOrNull(row.caller_name),
    callerAddress: String(row.caller_address),
    callerPort: num(row.caller_port),
    callee: String(row.callee),
    state: String(row.state) as CallRecord['state'],
    receivedAt: new Date(num(row.received_at)),
    ringingAt: dateOrNull(row.ringing_at),
    answeredAt: dateOrNull(row.answered_at),
    endedAt: dateOrNull(row.ended_at),
    postDialDelayMs: numOrNull(row.post_dial_delay_ms),
    durationSec: numOrNull(row.duration_sec),
    billableSec: numOrNull(row.billable_sec),
    outcome: textOrNull(row.outcome) as CallRecord['outcome'],
    hangupBy: textOrNull(row.hangup_by) as CallRecord['hangupBy'],
    aStatus: numOrNull(row.a_status),
    aReason: textOrNull(row.a_reason),
    bStatus: numOrNull(row.b_status),
    bReason: textOrNull(row.b_reason),
    transfers: JSON.parse(String(row.transfers)) as string[],
    media: row.media === null ? null : (JSON.parse(String(row.media)) as StoredMedia),
    updatedAt: new Date(num(row.updated_at)),
  };
}

/** Rewrites `?` placeholders as `$1, $2, ...` (our SQL has no `?` inside literals). */
export function toPostgres(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

/**
 * INSERT of `rows` records that replaces every field of an existing id; with `onlyNewer`, only
 * of one written before the new record's updated_at (applying staged records at recovery).
 */
export function upsertSql(rows = 1, onlyNewer = false): string {
  const one = `(${CALL_COLUMNS.map(() => '?').join(', ')})`;
  const updates = CALL_COLUMNS.filter((c) => c !== 'id').map((c) => `${c} = excluded.${c}`);
  return `INSERT INTO calls (${CALL_COLUMNS.join(', ')}) VALUES ${Array.from({ length: rows }, () => one).join(', ')}
ON CONFLICT (id) DO UPDATE SET ${updates.join(', ')}${onlyNewer ? '\nWHERE excluded.updated_at > calls.updated_at' : ''}`;
}

/**
 * The columns a call's later states change, in CALL_COLUMNS order; the others (who called whom,
 * when, through which instance, and the Call-IDs) are set by its first record, except the B-leg
 * Call-ID, which comes later, and with it `search`.
 */
const STATE_COLUMNS = [
  'state',
  'ringing_at',
  'answered_at',
  'ended_at',
  'post_dial_delay_ms',
  'duration_sec',
  'billable_sec',
  'outcome',
  'hangup_by',
  'a_status',
  'a_reason',
  'b_status',
  'b_reason',
  'transfers',
  'media',
  'updated_at',
] as const satisfies ReadonlyArray<(typeof CALL_COLUMNS)[number]>;

const STATE_INDEXES = STATE_COLUMNS.map((c) => CALL_COLUMNS.indexOf(c));

/**
 * Params: stateValues(). Updates only what a call's later states change: cheaper than the upsert,
 * which sets every column and so touches every index (SQLite rewrites the entries of each index
 * whose columns are set, changed or not).
 */
export const UPDATE_STATE_SQL = `UPDATE calls SET ${STATE_COLUMNS.map((c) => `${c} = ?`).join(', ')} WHERE id = ?`;

/** UPDATE_STATE_SQL params from a record's values (recordValues()). */
export function stateValues(values: readonly SqlValue[]): SqlValue[] {
  return [...STATE_INDEXES.map((i) => values[i]!), values[0]!];
}

/**
 * What must be unchanged since a call's last write for UPDATE_STATE_SQL to replace every field:
 * the columns it leaves alone (`search` holds the id, the Call-IDs, the caller and the callee).
 */
export function identityKey(values: readonly SqlValue[]): string {
  const at = (c: (typeof CALL_COLUMNS)[number]): SqlValue => values[CALL_COLUMNS.indexOf(c)]!;
  return `${String(at('search'))}\u001f${String(at('instance'))}\u001f${String(at('caller_port'))}\u001f${String(at('received_at'))}`;
}

/** Params: id, instance, updated_at, record values (JSON). Stages a record, replacing the call's earlier one. */
export const STAGE_SQL = `INSERT INTO call_records_staged (id, instance, updated_at, record_values) VALUES (?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET instance = excluded.instance, updated_at = excluded.updated_at, record_values = excluded.record_values`;

/** Params: id. */
export const UNSTAGE_SQL = 'DELETE FROM call_records_staged WHERE id = ?';

/** Params: instance. The records an instance staged and did not write (a crash came first). */
export const STAGED_OF_SQL = 'SELECT record_values FROM call_records_staged WHERE instance = ?';

/** Params: instance. */
export const UNSTAGE_INSTANCE_SQL = 'DELETE FROM call_records_staged WHERE instance = ?';

/** The STAGE_SQL params of a record. */
export function stageValues(r: CallRecord): SqlValue[] {
  return [r.id, r.instance, r.updatedAt.getTime(), JSON.stringify(recordValues(r))];
}

/** The upsert params of a staged record; throws an Error naming it when it is not what stageValues() wrote. */
export function stagedRecordValues(text: SqlValue): SqlValue[] {
  let values: unknown;
  try {
    values = JSON.parse(String(text));
  } catch {
    values = undefined;
  }
  if (!Array.isArray(values) || values.length !== CALL_COLUMNS.length || !values.every((v) => v === null || typeof v === 'string' || typeof v === 'number')) {
    throw new Error(`call log: a staged record is malformed: ${String(text).slice(0, 80)}`);
  }
  return values as SqlValue[];
}

export const GET_SQL = `SELECT ${SELECT_LIST} FROM calls WHERE id = ?`;

/** Params: key x5. The id wins over an A-leg Call-ID, which wins over a B-leg one; then the newest. */
export const FIND_SQL = `SELECT ${SELECT_LIST} FROM calls WHERE id = ? OR a_call_id = ? OR b_call_id = ?
ORDER BY CASE WHEN id = ? THEN 0 WHEN a_call_id = ? THEN 1 ELSE 2 END, received_at DESC LIMIT 1`;

/**
 * Params: at x5, instance. Closes a crashed instance's open calls: an answered one as
 * `ended`, one never answered as `failed`; billable seconds rounded up like a normal end.
 */
export const INTERRUPT_SQL = `UPDATE calls SET
  outcome = 'interrupted',
  hangup_by = 'system',
  state = CASE WHEN answered_at IS NULL THEN 'failed' ELSE 'ended' END,
  ended_at = CAST(? AS BIGINT),
  duration_sec = (CAST(? AS BIGINT) - received_at) / 1000.0,
  billable_sec = CASE WHEN answered_at IS NULL OR answered_at >= CAST(? AS BIGINT) THEN 0
    ELSE (CAST(? AS BIGINT) - answered_at + 999) / 1000 END,
  updated_at = CAST(? AS BIGINT)
WHERE outcome IS NULL AND instance = ?
RETURNING id`;

/** Params: call id. A call's message sets (see migration 2) in the order they were written. */
export const MESSAGES_SQL = 'SELECT messages FROM call_message_sets WHERE call_id = ? ORDER BY seq';

/** Params: call id, message count, encoded messages, call id. Appends a set after the call's last. */
export const APPEND_MESSAGES_SQL = `INSERT INTO call_message_sets (call_id, seq, message_count, messages)
SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ? FROM call_message_sets WHERE call_id = ?`;

/**
 * Params: call id, message count, encoded messages. A call's capture, stored only when the call
 * has no messages yet: its first set always has seq 1 (appends follow it; prune takes them all).
 */
export const STORE_MESSAGES_ONCE_SQL = `INSERT INTO call_message_sets (call_id, seq, message_count, messages) VALUES (?, 1, ?, ?)
ON CONFLICT (call_id, seq) DO NOTHING`;

/**
 * Messages as stored in `call_message_sets.messages`: a JSON array with one array per message,
 * [leg, at (epoch ms), dir, transport, peer, local, text].
 */
export function encodeMessages(messages: readonly StoredSipMessage[]): string {
  return JSON.stringify(messages.map((m) => [m.leg, m.at.getTime(), m.dir, m.transport, m.peer, m.local, m.text]));
}

function malformed(callId: string): Error {
  return new Error(`call log: the stored SIP messages of call ${callId} are malformed`);
}

/** The messages of one stored set; throws an Error naming the call when the text is not what encodeMessages() writes. */
export function decodeMessages(text: string, callId: string): StoredSipMessage[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw malformed(callId);
  }
  if (!Array.isArray(parsed)) throw malformed(callId);
  return parsed.map((m: unknown) => {
    if (!Array.isArray(m) || m.length !== 7) throw malformed(callId);
    const [leg, at, dir, transport, peer, local, body] = m as unknown[];
    if ((leg !== 'a' && leg !== 'b') || typeof at !== 'number' || (dir !== 'in' && dir !== 'out')) throw malformed(callId);
    if (typeof transport !== 'string' || typeof peer !== 'string' || typeof local !== 'string' || typeof body !== 'string') throw malformed(callId);
    return { leg, at: new Date(at), dir, transport, peer, local, text: body };
  });
}

/** A call's messages from its sets (in seq order): time order, equal times in the order written. */
export function messagesFromSets(rows: ReadonlyArray<{ messages: SqlValue }>, callId: string): StoredSipMessage[] {
  const all: StoredSipMessage[] = [];
  for (const row of rows) all.push(...decodeMessages(String(row.messages), callId));
  // Array.prototype.sort is stable.
  return all.sort((x, y) => x.at.getTime() - y.at.getTime());
}

/** A batch's records with one per id, the last given (PostgreSQL refuses to update a row twice in one statement). */
export function latestPerId(records: readonly CallRecord[]): CallRecord[] {
  const byId = new Map<string, CallRecord>();
  for (const r of records) {
    byId.delete(r.id);
    byId.set(r.id, r);
  }
  return byId.size === records.length ? [...records] : [...byId.values()];
}

/** A batch's message entries with one per call, the first given (later ones would be ignored anyway), and none empty. */
export function firstPerCall<T extends { callId: string; messages: readonly unknown[] }>(entries: readonly T[]): T[] {
  const seen = new Set<string>();
  const out: T[] = [];
  for (const e of entries) {
    if (e.messages.length === 0 || seen.has(e.callId)) continue;
    seen.add(e.callId);
    out.push(e);
  }
  return out;
}

/** Calls handled per statement when pruning, so no transaction holds the write lock for long. */
export const PRUNE_BATCH = 1000;

/**
 * Params: before, after-key received_at x2, after-key id, batch. The next batch of calls received
 * before `before`, oldest first, after the key (received_at, id) of the previous batch's last one.
 */
export const PRUNE_NEXT_CALLS_SQL = `SELECT id, received_at FROM calls
WHERE received_at < ? AND received_at >= ? AND (received_at > ? OR id > ?)
ORDER BY received_at, id LIMIT ?`;

/** Deletes the message sets of `calls` calls (params: their ids), returning each set's message count. */
export function deleteMessagesOfSql(calls: number): string {
  return `DELETE FROM call_message_sets WHERE call_id IN (${Array.from({ length: calls }, () => '?').join(', ')}) RETURNING message_count`;
}

/** Params: before, batch. */
export const PRUNE_CALLS_SQL = 'DELETE FROM calls WHERE id IN (SELECT id FROM calls WHERE received_at < ? ORDER BY received_at LIMIT ?)';

/** Params: from, to. One row per outcome (NULL for calls still going). */
export const STATS_SQL = `SELECT outcome,
  COUNT(*) AS calls,
  COUNT(answered_at) AS answered,
  SUM(CASE WHEN answered_at IS NOT NULL THEN billable_sec END) AS billable_sum,
  COUNT(CASE WHEN answered_at IS NOT NULL THEN billable_sec END) AS billable_count
FROM calls WHERE received_at >= ? AND received_at < ? GROUP BY outcome`;

export interface StatsRow {
  outcome: SqlValue;
  calls: SqlValue;
  answered: SqlValue;
  billable_sum: SqlValue;
  billable_count: SqlValue;
}

/**
 * Figures from STATS_SQL rows. `calls` counts every call received in the range, finished or
 * not; `answered` those that were answered (answered_at set, whatever their outcome, so an
 * answered call later interrupted still counts); ACD averages their billable seconds once known.
 */
export function statsFromRows(rows: readonly StatsRow[]): CallStats {
  let calls = 0;
  let answered = 0;
  let billableSum = 0;
  let billableCount = 0;
  const byOutcome: Partial<Record<CallOutcome, number>> = {};
  for (const row of rows) {
    const n = num(row.calls);
    calls += n;
    answered += num(row.answered);
    billableSum += numOrNull(row.billable_sum) ?? 0;
    billableCount += num(row.billable_count);
    if (row.outcome !== null) byOutcome[String(row.outcome) as CallOutcome] = n;
  }
  return {
    calls,
    answered,
    asr: calls === 0 ? null : answered / calls,
    acdSec: billableCount === 0 ? null : billableSum / billableCount,
    byOutcome,
  };
}

// ---------------------------------------------------------------------------------------------
// The list query

export const MAX_LIMIT = 500;
/** Free text length bounds (characters). */
export const MIN_TEXT = 3;
const MAX_TEXT = 200;
const MAX_KEY = 256;

interface Cursor {
  receivedAt: number;
  id: string;
}

/** The cursor after `record`: base64url of "<receivedAt ms>:<id>". */
export function encodeCursor(record: CallRecord): string {
  return Buffer.from(`${record.receivedAt.getTime()}:${record.id}`, 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): Cursor {
  const bad = (): CallQueryError => new CallQueryError('invalid cursor: pass nextCursor from a previous page unchanged');
  if (typeof cursor !== 'string' || cursor.length === 0 || cursor.length > 512 || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw bad();
  const text = Buffer.from(cursor, 'base64url').toString('utf8');
  const match = /^(\d{1,15}):(.+)$/s.exec(text);
  if (match === null) throw bad();
  const receivedAt = Number(match[1]);
  if (!Number.isSafeInteger(receivedAt)) throw bad();
  return { receivedAt, id: match[2]! };
}

function checkKey(name: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_KEY) {
    throw new CallQueryError(`invalid ${name}: expected a non-empty string of at most ${MAX_KEY} characters`);
  }
  return value;
}

function checkDate(name: string, value: unknown): number {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) throw new CallQueryError(`invalid ${name}: expected a valid date`);
  return value.getTime();
}

/**
 * Free text, lower-cased like `search`; undefined when empty. At least 3 characters: the
 * trigram indexes cannot help a shorter text, and one matching few calls would scan them all.
 */
function checkText(value: unknown): string | undefined {
  if (typeof value !== 'string') throw new CallQueryError('invalid text: expected a string');
  if (value.length === 0) return undefined;
  if ([...value].length < MIN_TEXT) throw new CallQueryError(`invalid text ${JSON.stringify(value)}: at least ${MIN_TEXT} characters`);
  if (value.length > MAX_TEXT) throw new CallQueryError(`invalid text: at most ${MAX_TEXT} characters`);
  // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
  if (/[\u0000-\u001f\u007f]/.test(value)) throw new CallQueryError('invalid text: control characters are not allowed');
  return value.toLowerCase();
}

/** A validated CallQuery. */
export interface ListFilters {
  caller?: string;
  callee?: string;
  outcomes?: CallOutcome[];
  from?: number;
  to?: number;
  /** Lower-cased. */
  text?: string;
  instance?: string;
  limit: number;
  cursor?: Cursor;
}

/** Checks a query as it may come from an HTTP client; throws CallQueryError naming the problem. */
export function validateQuery(query: CallQuery): ListFilters {
  if (typeof query !== 'object' || query === null) throw new CallQueryError('invalid query: expected an object');
  const { limit } = query;
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) throw new CallQueryError(`invalid limit ${String(limit)}: expected an integer from 1 to ${MAX_LIMIT}`);
  const filters: ListFilters = { limit };
  if (query.caller !== undefined) filters.caller = checkKey('caller', query.caller);
  if (query.callee !== undefined) filters.callee = checkKey('callee', query.callee);
  if (query.instance !== undefined) filters.instance = checkKey('instance', query.instance);
  if (query.outcomes !== undefined) {
    if (!Array.isArray(query.outcomes)) throw new CallQueryError('invalid outcomes: expected a list');
    for (const o of query.outcomes) {
      if (!CALL_OUTCOMES.includes(o)) throw new CallQueryError(`invalid outcome ${JSON.stringify(o)}: expected one of ${CALL_OUTCOMES.join(', ')}`);
    }
    filters.outcomes = [...new Set(query.outcomes)];
  }
  if (query.from !== undefined) filters.from = checkDate('from', query.from);
  if (query.to !== undefined) filters.to = checkDate('to', query.to);
  if (query.text !== undefined) {
    const text = checkText(query.text);
    if (text !== undefined) filters.text = text;
  }
  if (query.cursor !== undefined) filters.cursor = decodeCursor(query.cursor);
  return filters;
}

/** LIKE pattern for a substring, with the wildcards % and _ and the escape \ taken literally. */
export function likeSubstring(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

export interface SqlStatement {
  sql: string;
  params: SqlValue[];
}

export interface ListSqlOptions {
  /**
   * Extra conditions on `text` for the dialect's trigram index (SQLite: a MATCH on calls_search);
   * the LIKE on `search` is always there and is what decides.
   */
  textIndexCondition?: (text: string) => SqlStatement | undefined;
}

/**
 * The page query: filters, then (received_at, id) below the cursor, newest first, one row more
 * than the limit so the caller knows whether there is a next page.
 */
export function listSql(filters: ListFilters, options: ListSqlOptions = {}): SqlStatement {
  const where: string[] = [];
  const params: SqlValue[] = [];
  if (filters.caller !== undefined) {
    where.push('caller_user = ?');
    params.push(filters.caller);
  }
  if (filters.callee !== undefined) {
    where.push('callee = ?');
    params.push(filters.callee);
  }
  if (filters.outcomes !== undefined) {
    if (filters.outcomes.length === 0) {
      where.push('1 = 0');
    } else {
      where.push(`outcome IN (${filters.outcomes.map(() => '?').join(', ')})`);
      params.push(...filters.outcomes);
    }
  }
  if (filters.from !== undefined) {
    where.push('received_at >= ?');
    params.push(filters.from);
  }
  if (filters.to !== undefined) {
    where.push('received_at < ?');
    params.push(filters.to);
  }
  if (filters.instance !== undefined) {
    where.push('instance = ?');
    params.push(filters.instance);
  }
  if (filters.text !== undefined) {
    const indexed = options.textIndexCondition?.(filters.text);
    if (indexed !== undefined) {
      where.push(indexed.sql);
      params.push(...indexed.params);
    }
    where.push("search LIKE ? ESCAPE '\\'");
    params.push(likeSubstring(filters.text));
  }
  if (filters.cursor !== undefined) {
    // (received_at, id) < (cursor): written so the first term alone can bound an index range.
    where.push('received_at <= ? AND (received_at < ? OR id < ?)');
    params.push(filters.cursor.receivedAt, filters.cursor.receivedAt, filters.cursor.id);
  }
  params.push(filters.limit + 1);
  const sql = `SELECT ${SELECT_LIST} FROM calls${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''}
ORDER BY received_at DESC, id DESC LIMIT ?`;
  return { sql, params };
}

/** The page from the rows of listSql (limit + 1 at most). */
export function pageFromRows(rows: readonly CallRow[], limit: number): { calls: CallRecord[]; nextCursor: string | null } {
  const calls = rows.slice(0, limit).map(rowToRecord);
  const last = calls[calls.length - 1];
  return { calls, nextCursor: rows.length > limit && last !== undefined ? encodeCursor(last) : null };
}

export function placeholders(dialect: SqlDialect, sql: string): string {
  return dialect === 'postgres' ? toPostgres(sql) : sql;
}
