/**
 * CSV for `calls export`: RFC 4180 fields and rows (CRLF line ends, a field quoted when it holds
 * a comma, a double quote, CR or LF, quotes doubled), and the call record's columns. Pure.
 *
 * Text that came from the network (a caller's display name, a reason phrase) could start with
 * "=", "+", "-" or "@" and be run as a formula by a spreadsheet that opens the file; such text
 * fields get a leading apostrophe (OWASP's advice on CSV injection). Numbers are written as they are.
 */
import type { StoredMediaDirection } from '../call-log/call-record';
import type { CallRecordJson } from './api-schemas';

export type CsvValue = string | number | boolean | null | undefined;

export interface CsvOptions {
  /** Prefix text starting with = + - @ TAB or CR with an apostrophe (default true). */
  readonly guardFormulas?: boolean;
}

const FORMULA_START = /^[=+\-@\t\r]/;

/** One field: empty for null/undefined, numbers and booleans as written, text quoted when needed. */
export function csvField(value: CsvValue, options: CsvOptions = {}): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') return Number.isFinite(value) ? String(value) : '';
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  const text = (options.guardFormulas ?? true) && FORMULA_START.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** One record, ending with CRLF. */
export function csvRow(values: readonly CsvValue[], options: CsvOptions = {}): string {
  return `${values.map((v) => csvField(v, options)).join(',')}\r\n`;
}

/** A date field: the ISO-8601 form, whatever ISO form the API used; other text as it is. */
function isoTime(value: string | null | undefined): string | null {
  if (value === null || value === undefined || value === '') return null;
  const t = Date.parse(value);
  return Number.isFinite(t) ? new Date(t).toISOString() : value;
}

type Column = readonly [name: string, get: (c: CallRecordJson) => CsvValue];

function mediaColumns(prefix: string, pick: (c: CallRecordJson) => StoredMediaDirection | undefined): Column[] {
  return [
    [`${prefix}Packets`, (c) => pick(c)?.packets],
    [`${prefix}Bytes`, (c) => pick(c)?.bytes],
    [`${prefix}PacketsLost`, (c) => pick(c)?.packetsLost],
    [`${prefix}JitterMs`, (c) => pick(c)?.jitterMs],
    [`${prefix}Mos`, (c) => pick(c)?.mos],
  ];
}

/** Every field of the call record, media figures flattened, in this order. */
export const CALL_CSV_COLUMNS: readonly Column[] = [
  ['id', (c) => c.id],
  ['instance', (c) => c.instance],
  ['live', (c) => c.live],
  ['state', (c) => c.state],
  ['outcome', (c) => c.outcome],
  ['hangupBy', (c) => c.hangupBy],
  ['callerUser', (c) => c.callerUser],
  ['callerName', (c) => c.callerName],
  ['callerAddress', (c) => c.callerAddress],
  ['callerPort', (c) => c.callerPort],
  ['callee', (c) => c.callee],
  ['aCallId', (c) => c.aCallId],
  ['bCallId', (c) => c.bCallId],
  ['receivedAt', (c) => isoTime(c.receivedAt)],
  ['ringingAt', (c) => isoTime(c.ringingAt)],
  ['answeredAt', (c) => isoTime(c.answeredAt)],
  ['endedAt', (c) => isoTime(c.endedAt)],
  ['postDialDelayMs', (c) => c.postDialDelayMs],
  ['durationSec', (c) => c.durationSec],
  ['billableSec', (c) => c.billableSec],
  ['aStatus', (c) => c.aStatus],
  ['aReason', (c) => c.aReason],
  ['bStatus', (c) => c.bStatus],
  ['bReason', (c) => c.bReason],
  ['transfers', (c) => (Array.isArray(c.transfers) ? c.transfers.join(' ') : null)],
  ['mediaEngine', (c) => c.media?.engine],
  ...mediaColumns('callerToCallee', (c) => c.media?.callerToCallee),
  ...mediaColumns('calleeToCaller', (c) => c.media?.calleeToCaller),
  ['updatedAt', (c) => isoTime(c.updatedAt)],
];

export function callsCsvHeader(options: CsvOptions = {}): string {
  return csvRow(CALL_CSV_COLUMNS.map(([name]) => name), options);
}

export function callCsvRow(call: CallRecordJson, options: CsvOptions = {}): string {
  return csvRow(CALL_CSV_COLUMNS.map(([, get]) => get(call)), options);
}
