/**
 * `npm run calls -- <command>`: the call log through the operator HTTP API of a running B2BUA.
 *
 *   list    [filters] [--limit N] [--all] [--json]     a table of calls, newest first
 *   show    <id|Call-ID> [--json] [--ascii]            every field, media both ways, a SIP ladder
 *   tail    [--json]                                   follows /api/events until SIGINT/SIGTERM
 *   export  --csv [filters] [--out FILE]               every matching call as CSV
 *
 * app/calls.ts passes the environment (with .env under it), the working directory, output
 * functions and an AbortSignal fired by SIGINT/SIGTERM; nothing here reads process.env.
 * Exit codes: 0 done, 1 the API refused or could not be reached, 2 bad usage or settings,
 * 130 interrupted (except tail, for which a signal is the normal way to stop: 0).
 * The bearer token is sent only in the Authorization header and never printed.
 */
import { createWriteStream, existsSync, readFileSync, renameSync, rmSync, type WriteStream } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { CALL_OUTCOMES, type CallOutcome } from '../call-log/call-record';
import { ConfigError } from '../config/engine-args';
import { EnvReader, type Env } from '../config/env';
import type { CallRecordJson } from './api-schemas';
import { callCsvRow, callsCsvHeader } from './csv';
import { renderLadder, type LadderMessage } from './ladder-text';

// ---------------------------------------------------------------------------------------------
// The API's JSON shapes (see the operator API contract)

/** A CallRecord with its dates as ISO strings, plus `live` (in progress in the B2BUA). */
export type { CallRecordJson };

/** A stored SIP message with `at` as an ISO string. */
export type MessageJson = LadderMessage;

export interface CallPageJson {
  calls: CallRecordJson[];
  nextCursor: string | null;
}

export interface CallDetailJson {
  call: CallRecordJson;
  messages: MessageJson[];
  truncated: boolean;
}

// ---------------------------------------------------------------------------------------------
// Errors

/** Bad command line or settings: exit 2. */
export class CallsUsageError extends Error {
  override readonly name = 'CallsUsageError';
  readonly code = 'E_CALLS_USAGE';
}

/** The API answered with an error status; `reason` is the API's own words. */
export class OperatorApiError extends Error {
  override readonly name = 'OperatorApiError';
  readonly code = 'E_OPERATOR_API';
  constructor(
    readonly status: number,
    readonly error: string,
    readonly reason: string,
    readonly path: string,
  ) {
    super(`${path}: HTTP ${status} ${error}: ${reason}`);
  }
}

/** No HTTP answer at all: refused, unknown host, timeout, or not an operator API. */
export class OperatorUnreachableError extends Error {
  override readonly name = 'OperatorUnreachableError';
  readonly code = 'E_OPERATOR_UNREACHABLE';
}

// ---------------------------------------------------------------------------------------------
// Usage texts

const COMMON_OPTIONS = `Settings (every command):
  --url <url>          the operator API (default: $OPERATOR_URL, else http://$OPERATOR_ADDRESS:$OPERATOR_PORT
                       with 127.0.0.1 and 8080 when unset; a .env file is read as the B2BUA reads it)
  --token-file <file>  read the bearer token from this file (default: $OPERATOR_TOKEN, else the first of
                       OPERATOR_ADMIN_TOKENS, else $VAR_DIR/operator-token written by npm start, else the
                       first of OPERATOR_TOKENS). The token is never printed.
  -h, --help           this text`;

const FILTERS = `Filters:
  --caller <user>      the caller's user, exact (6001)
  --callee <ext>       the dialled extension, exact (6002)
  --outcome <a,b>      any of ${CALL_OUTCOMES.join(', ')}
  --from <time>        received at or after <time>: ISO-8601 (2024-05-01, 2024-05-01T10:00Z; local time
                       without a zone) or relative to now (-45s, -30m, -1h, -2d, -1w) or "now"
  --to <time>          received before <time>, same forms
  --q <text>           text in the caller's user, name or address, the callee, the id or a Call-ID`;

export const CALLS_USAGE = `Usage: npm run calls -- <command> [options]
       (or: node dist/app/calls.js <command> [options])

The call log of a running B2BUA, through its operator API.

Commands:
  list     calls, newest first, as a table or JSON
  show     one call: every field, media both ways, and a ladder of its SIP messages
  tail     follow calls as they change state, until Ctrl-C
  export   every matching call as CSV
  help <command>   a command's options (or: <command> --help)

${COMMON_OPTIONS}

Exit codes: 0 done, 1 the API refused or could not be reached, 2 bad usage or settings, 130 interrupted.`;

const LIST_USAGE = `Usage: npm run calls -- list [filters] [--limit N] [--all] [--json]

Calls, newest first: time (UTC), id, caller, callee, outcome (or live state), final status sent to
the caller / received from the callee, who hung up, duration, post-dial delay, RTP packets relayed
and MOS, each caller->callee / callee->caller.

${FILTERS}

Options:
  --limit <n>          calls per page, 1-500 (default 50; 500 with --all)
  --all                follow the pages to the last one (at most 10000 calls; use export for more)
  --json               {calls, nextCursor} as the API gives them

${COMMON_OPTIONS}`;

const SHOW_USAGE = `Usage: npm run calls -- show <id | SIP Call-ID> [--json] [--ascii]

One call: every field of its record, media figures both ways, and a ladder of both legs' SIP
messages in time order. Lifelines: Kamailio on leg a (the caller's side), the engine (B2BUA),
Kamailio on leg b (the callee's side); one message per line with the time since the first
message, the arrow, the request or status line, and the CSeq.

Options:
  --json               the API's answer {call, messages, truncated} as it is
  --ascii              draw the ladder with | - < > instead of box-drawing characters

${COMMON_OPTIONS}`;

const TAIL_USAGE = `Usage: npm run calls -- tail [--json]

Follows the API's event stream and prints one line per state change of a call, and one when it
ends (outcome, statuses, who hung up, duration, MOS). Reconnects with back-off when the stream
drops; Ctrl-C (SIGINT) or SIGTERM stops it (exit 0).

Options:
  --json               every event as one JSON line: {"event":"call"|"end","call":{...}}

${COMMON_OPTIONS}`;

const EXPORT_USAGE = `Usage: npm run calls -- export --csv [filters] [--out FILE]

Every matching call as CSV (RFC 4180: header row, CRLF, quoted where needed; ISO-8601 times; one
column per field, media figures per direction). Pages through the API until the last call.
Text that a spreadsheet would run as a formula (starting with = + - @) gets a leading apostrophe.

${FILTERS}

Options:
  --csv                the format (required; the only one)
  --out <file>         write to this file (replaced only when the export is complete) instead of stdout

${COMMON_OPTIONS}`;

const COMMANDS = ['list', 'show', 'tail', 'export'] as const;
export type CommandName = (typeof COMMANDS)[number];

const USAGES: Record<CommandName, string> = { list: LIST_USAGE, show: SHOW_USAGE, tail: TAIL_USAGE, export: EXPORT_USAGE };

/** The usage text of one command, or the general one. */
export function usageOf(command?: CommandName): string {
  return command === undefined ? CALLS_USAGE : USAGES[command];
}

// ---------------------------------------------------------------------------------------------
// Argument parsing

const OPTION_KINDS = {
  url: 'string',
  'token-file': 'string',
  help: 'boolean',
  caller: 'string',
  callee: 'string',
  outcome: 'string',
  from: 'string',
  to: 'string',
  q: 'string',
  limit: 'string',
  all: 'boolean',
  json: 'boolean',
  ascii: 'boolean',
  csv: 'boolean',
  out: 'string',
} as const;
type OptionName = keyof typeof OPTION_KINDS;

const GLOBAL_OPTIONS: readonly OptionName[] = ['url', 'token-file', 'help'];
const FILTER_OPTIONS: readonly OptionName[] = ['caller', 'callee', 'outcome', 'from', 'to', 'q'];
const COMMAND_OPTIONS: Record<CommandName, readonly OptionName[]> = {
  list: [...FILTER_OPTIONS, 'limit', 'all', 'json'],
  show: ['json', 'ascii'],
  tail: ['json'],
  export: [...FILTER_OPTIONS, 'csv', 'out'],
};

export interface CallFilters {
  caller?: string;
  callee?: string;
  outcomes?: CallOutcome[];
  from?: Date;
  to?: Date;
  q?: string;
}

export type CallsCommand =
  | { name: 'list'; filters: CallFilters; limit: number; all: boolean; json: boolean }
  | { name: 'show'; key: string; json: boolean; ascii: boolean }
  | { name: 'tail'; json: boolean }
  | { name: 'export'; filters: CallFilters; out: string | undefined }
  | { name: 'help'; topic: CommandName | undefined };

export interface ParsedCalls {
  command: CallsCommand;
  /** --url, when given. */
  url?: string;
  /** --token-file, when given. */
  tokenFile?: string;
}

const RELATIVE_UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/**
 * A --from/--to value: "now", a relative time in the past ("-30m", "-1h", "-2d", "-45s", "-1w"),
 * or an ISO-8601 date or date-time (date only: UTC midnight; date-time without a zone: local time).
 */
export function parseTimeArg(value: string, now: Date, option = '--from'): Date {
  const v = value.trim();
  if (v === 'now') return new Date(now.getTime());
  const rel = /^-(\d+(?:\.\d+)?)([smhdw])$/.exec(v);
  if (rel) return new Date(now.getTime() - Number(rel[1]) * (RELATIVE_UNITS[rel[2] as string] as number));
  const iso = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/i.test(v);
  const t = iso ? Date.parse(v) : NaN;
  if (!Number.isFinite(t)) {
    throw new CallsUsageError(`${option} "${value}" is not a time: use ISO-8601 (2024-05-01T10:00:00Z) or a relative time like -30m, -1h, -2d`);
  }
  return new Date(t);
}

function parseOutcomes(value: string): CallOutcome[] {
  const items = value.split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== '');
  if (items.length === 0) throw new CallsUsageError('--outcome needs at least one outcome');
  const bad = items.filter((i) => !(CALL_OUTCOMES as readonly string[]).includes(i));
  if (bad.length > 0) {
    throw new CallsUsageError(`unknown outcome${bad.length > 1 ? 's' : ''} ${bad.map((b) => `"${b}"`).join(', ')} (expected ${CALL_OUTCOMES.join(', ')})`);
  }
  return [...new Set(items)] as CallOutcome[];
}

function parseLimit(value: string): number {
  if (!/^\d+$/.test(value.trim())) throw new CallsUsageError(`--limit must be a whole number from 1 to 500, got "${value}"`);
  const n = Number(value.trim());
  if (n < 1 || n > 500) throw new CallsUsageError(`--limit must be from 1 to 500, got ${n}`);
  return n;
}

function isCommand(name: string): name is CommandName {
  return (COMMANDS as readonly string[]).includes(name);
}

/**
 * Parses the command line (everything after `calls`). Options take their value from the next
 * argument or after "=" (`--from -1h` and `--from=-1h` both work); "--" ends the options.
 * Throws CallsUsageError naming every unknown option, or the unknown command.
 */
export function parseCallsArgs(argv: readonly string[], now: Date = new Date()): ParsedCalls {
  const given = new Map<OptionName, string | true>();
  const unknown: string[] = [];
  const positionals: string[] = [];
  let optionsEnded = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (optionsEnded || arg === '-' || !arg.startsWith('-')) {
      positionals.push(arg);
      continue;
    }
    if (arg === '--') {
      optionsEnded = true;
      continue;
    }
    if (arg === '-h') {
      given.set('help', true);
      continue;
    }
    if (!arg.startsWith('--')) {
      unknown.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    const inline = eq === -1 ? undefined : arg.slice(eq + 1);
    if (!Object.hasOwn(OPTION_KINDS, name)) {
      unknown.push(`--${name}`);
      continue;
    }
    const option = name as OptionName;
    if (OPTION_KINDS[option] === 'boolean') {
      if (inline !== undefined) throw new CallsUsageError(`--${option} takes no value (got "--${option}=${inline}")`);
      given.set(option, true);
      continue;
    }
    if (inline !== undefined) {
      given.set(option, inline);
      continue;
    }
    const next = argv[i + 1];
    if (next === undefined) throw new CallsUsageError(`--${option} needs a value`);
    given.set(option, next);
    i++;
  }

  const [first, ...rest] = positionals;
  let commandName: CommandName | 'help' | undefined;
  if (first !== undefined) {
    if (first === 'help') commandName = 'help';
    else if (isCommand(first)) commandName = first;
    else throw new CallsUsageError(`unknown command "${first}" (expected ${COMMANDS.join(', ')})`);
  }
  const allowed = new Set<OptionName>([...GLOBAL_OPTIONS, ...(commandName && commandName !== 'help' ? COMMAND_OPTIONS[commandName] : [])]);
  const notHere = [...given.keys()].filter((o) => !allowed.has(o)).map((o) => `--${o}`);
  if (unknown.length > 0 || notHere.length > 0) {
    const parts: string[] = [];
    if (unknown.length > 0) parts.push(`unknown option${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}`);
    if (notHere.length > 0) {
      const where = commandName && commandName !== 'help' ? `for ${commandName}` : 'without a command';
      parts.push(`option${notHere.length > 1 ? 's' : ''} ${notHere.join(', ')} not valid ${where}`);
    }
    throw new CallsUsageError(parts.join('; '));
  }

  const str = (o: OptionName): string | undefined => {
    const v = given.get(o);
    return typeof v === 'string' ? v : undefined;
  };
  const flag = (o: OptionName): boolean => given.get(o) === true;
  const base: Omit<ParsedCalls, 'command'> = {};
  const url = str('url');
  if (url !== undefined) base.url = url;
  const tokenFile = str('token-file');
  if (tokenFile !== undefined) base.tokenFile = tokenFile;

  if (commandName === 'help') {
    const topic = rest[0];
    if (topic !== undefined && !isCommand(topic)) throw new CallsUsageError(`unknown command "${topic}" (expected ${COMMANDS.join(', ')})`);
    if (rest.length > 1) throw new CallsUsageError(`unexpected argument "${rest[1]}"`);
    return { ...base, command: { name: 'help', topic } };
  }
  if (flag('help')) return { ...base, command: { name: 'help', topic: commandName } };
  if (commandName === undefined) throw new CallsUsageError(`a command is required: ${COMMANDS.join(', ')}`);

  const filters = (): CallFilters => {
    const f: CallFilters = {};
    for (const o of ['caller', 'callee', 'q'] as const) {
      const v = str(o);
      if (v === undefined) continue;
      if (v.trim() === '') throw new CallsUsageError(`--${o} needs a non-empty value`);
      f[o] = v.trim();
    }
    const outcome = str('outcome');
    if (outcome !== undefined) f.outcomes = parseOutcomes(outcome);
    const from = str('from');
    if (from !== undefined) f.from = parseTimeArg(from, now, '--from');
    const to = str('to');
    if (to !== undefined) f.to = parseTimeArg(to, now, '--to');
    if (f.from && f.to && f.from.getTime() >= f.to.getTime()) {
      throw new CallsUsageError(`--from (${f.from.toISOString()}) must be before --to (${f.to.toISOString()})`);
    }
    return f;
  };

  switch (commandName) {
    case 'show': {
      if (rest.length === 0) throw new CallsUsageError('show needs a call id or a SIP Call-ID, e.g. show 3f2a9c1e-...');
      if (rest.length > 1) throw new CallsUsageError(`unexpected argument "${rest[1]}" (show takes one call id)`);
      const key = (rest[0] as string).trim();
      if (key === '') throw new CallsUsageError('show needs a non-empty call id');
      return { ...base, command: { name: 'show', key, json: flag('json'), ascii: flag('ascii') } };
    }
    case 'list':
    case 'tail':
    case 'export': {
      if (rest.length > 0) throw new CallsUsageError(`unexpected argument "${rest[0]}" (${commandName} takes options only)`);
      if (commandName === 'tail') return { ...base, command: { name: 'tail', json: flag('json') } };
      if (commandName === 'list') {
        const limitText = str('limit');
        const all = flag('all');
        const limit = limitText === undefined ? (all ? 500 : 50) : parseLimit(limitText);
        return { ...base, command: { name: 'list', filters: filters(), limit, all, json: flag('json') } };
      }
      if (!flag('csv')) throw new CallsUsageError('export needs --csv (the only format)');
      const out = str('out');
      if (out !== undefined && out.trim() === '') throw new CallsUsageError('--out needs a file name');
      return { ...base, command: { name: 'export', filters: filters(), out } };
    }
    default: {
      const never: never = commandName;
      throw new Error(`unhandled command ${String(never)}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Settings: where the API is and which token to send

export const DEFAULT_OPERATOR_PORT = 8080;

export interface CallsSettings {
  /** Base URL of the operator API, ending with "/". */
  readonly url: string;
  readonly token: string;
  /** Where the token came from ("OPERATOR_TOKEN", a file name), for error messages. */
  readonly tokenSource: string;
}

/** The URL without credentials, query or fragment, for messages. */
export function displayUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname.replace(/\/$/, '')}`;
  } catch {
    return '(invalid URL)';
  }
}

function baseUrl(text: string, source: string): string {
  let u: URL;
  try {
    u = new URL(text.trim());
  } catch {
    throw new CallsUsageError(`${source} "${text}" is not a URL (expected e.g. http://127.0.0.1:8080)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new CallsUsageError(`${source} must be an http:// or https:// URL, got "${u.protocol}"`);
  if (u.username !== '' || u.password !== '') throw new CallsUsageError(`${source} must not hold a user or password (the bearer token comes from --token-file or OPERATOR_TOKEN)`);
  u.search = '';
  u.hash = '';
  if (!u.pathname.endsWith('/')) u.pathname = `${u.pathname}/`;
  return u.toString();
}

function readTokenFile(file: string, cwd: string, label: string): string {
  const path = isAbsolute(file) ? file : resolve(cwd, file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new CallsUsageError(`cannot read the token file ${label} (${e.code ?? e.message})`);
  }
  const token = text.trim();
  if (token === '') throw new CallsUsageError(`the token file ${label} is empty`);
  return token;
}

/**
 * The API's URL and the token to send. URL: --url, else OPERATOR_URL, else
 * http://OPERATOR_ADDRESS:OPERATOR_PORT (0.0.0.0 reached as 127.0.0.1). Token: --token-file,
 * else OPERATOR_TOKEN, else the first OPERATOR_ADMIN_TOKENS (npm start then writes no token
 * file), else $VAR_DIR/operator-token (written by npm start), else the first OPERATOR_TOKENS.
 */
export function resolveSettings(parsed: Pick<ParsedCalls, 'url' | 'tokenFile'>, env: Env, cwd: string): CallsSettings {
  const r = new EnvReader(env);
  let url: string;
  try {
    if (parsed.url !== undefined) url = baseUrl(parsed.url, '--url');
    else if (r.raw('OPERATOR_URL') !== undefined) url = baseUrl(r.raw('OPERATOR_URL') as string, 'OPERATOR_URL');
    else {
      const port = r.integer('OPERATOR_PORT', DEFAULT_OPERATOR_PORT, 0, 65535);
      if (port === 0) throw new CallsUsageError('the operator endpoint is off (OPERATOR_PORT=0); give its address with --url or OPERATOR_URL');
      let host = r.host('OPERATOR_ADDRESS', '127.0.0.1');
      if (host === '0.0.0.0') host = '127.0.0.1';
      url = baseUrl(`http://${host}:${port}`, 'OPERATOR_ADDRESS/OPERATOR_PORT');
    }
  } catch (err) {
    if (err instanceof ConfigError) throw new CallsUsageError(err.message);
    throw err;
  }

  const firstOf = (name: string): string | undefined =>
    r.raw(name)?.split(',').map((s) => s.trim()).find((s) => s !== '');
  let token: string | undefined;
  let tokenSource = '';
  if (parsed.tokenFile !== undefined) {
    token = readTokenFile(parsed.tokenFile, cwd, parsed.tokenFile);
    tokenSource = parsed.tokenFile;
  } else if (r.raw('OPERATOR_TOKEN') !== undefined) {
    token = r.raw('OPERATOR_TOKEN');
    tokenSource = 'OPERATOR_TOKEN';
  } else if (firstOf('OPERATOR_ADMIN_TOKENS') !== undefined) {
    token = firstOf('OPERATOR_ADMIN_TOKENS');
    tokenSource = 'OPERATOR_ADMIN_TOKENS';
  } else {
    const varDir = r.raw('VAR_DIR') ?? 'var';
    const file = resolve(isAbsolute(varDir) ? varDir : resolve(cwd, varDir), 'operator-token');
    if (existsSync(file)) {
      token = readTokenFile(file, cwd, file);
      tokenSource = file;
    } else if (firstOf('OPERATOR_TOKENS') !== undefined) {
      token = firstOf('OPERATOR_TOKENS');
      tokenSource = 'OPERATOR_TOKENS';
    }
  }
  if (token === undefined) {
    throw new CallsUsageError('no operator token: use --token-file <file>, set OPERATOR_TOKEN, or start the stack with `npm start` (it writes var/operator-token)');
  }
  if (!/^[\x21-\x7e]+$/.test(token)) throw new CallsUsageError(`the token from ${tokenSource} has spaces or characters a bearer token cannot have`);
  return { url, token, tokenSource };
}

// ---------------------------------------------------------------------------------------------
// HTTP client

export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

const REQUEST_TIMEOUT_MS = 30_000;

function networkDetail(err: unknown): string {
  const e = err as { name?: string; message?: string; code?: string; cause?: unknown; errors?: unknown[] };
  if (e?.name === 'TimeoutError') return 'no answer in time';
  const cause = e?.cause as { code?: string; message?: string; errors?: Array<{ code?: string }> } | undefined;
  const code = cause?.code ?? cause?.errors?.find((x) => x.code)?.code ?? e?.code;
  const words: Record<string, string> = {
    ECONNREFUSED: 'connection refused',
    ENOTFOUND: 'host not found',
    EAI_AGAIN: 'host name lookup failed',
    ECONNRESET: 'connection reset',
    EHOSTUNREACH: 'host unreachable',
    ENETUNREACH: 'network unreachable',
    ETIMEDOUT: 'timed out',
    UND_ERR_CONNECT_TIMEOUT: 'connect timed out',
    UND_ERR_SOCKET: 'connection closed',
  };
  if (code) return words[code] ? `${code}: ${words[code]}` : code;
  // fetch() will not connect to ports on the Fetch standard's "bad port" list (5060, 6000, ...).
  if (cause?.message === 'bad port') return 'fetch() refuses this port (the Fetch standard\'s bad-port list); use another OPERATOR_PORT';
  return cause?.message ?? e?.message ?? String(err);
}

function isAbort(err: unknown, signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true && (err as { name?: string })?.name === 'AbortError';
}

/** Reads the operator API with a bearer token; the token is kept private and never formatted. */
export class OperatorClient {
  readonly #token: string;
  readonly #fetch: FetchLike;
  readonly baseUrl: string;

  constructor(baseUrl: string, token: string, fetchImpl: FetchLike = fetch) {
    this.baseUrl = baseUrl.endsWith('/') ? baseUrl : `${baseUrl}/`;
    this.#token = token;
    this.#fetch = fetchImpl;
  }

  /** The full URL of an API path ("api/calls") with the query parameters that are set. */
  urlOf(path: string, query: Readonly<Record<string, string | undefined>> = {}): string {
    const u = new URL(path.replace(/^\//, ''), this.baseUrl);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) u.searchParams.set(k, v);
    return u.toString();
  }

  unreachable(err: unknown): OperatorUnreachableError {
    return new OperatorUnreachableError(`cannot reach the operator API at ${displayUrl(this.baseUrl)} (${networkDetail(err)}); is the B2BUA running? Set --url or OPERATOR_URL`);
  }

  async #request(path: string, query: Readonly<Record<string, string | undefined>>, init: RequestInit, signal: AbortSignal | undefined): Promise<Response> {
    try {
      return await this.#fetch(this.urlOf(path, query), {
        ...init,
        headers: { authorization: `Bearer ${this.#token}`, ...(init.headers as Record<string, string> | undefined) },
        signal,
      });
    } catch (err) {
      if (isAbort(err, signal)) throw err;
      throw this.unreachable(err);
    }
  }

  /** An error for a non-2xx answer, with the API's {error, reason} when it sent them. */
  async #failure(res: Response, path: string): Promise<OperatorApiError> {
    let error = res.statusText || 'error';
    let reason = '';
    const text = await res.text().catch(() => '');
    try {
      const body = JSON.parse(text) as { error?: unknown; reason?: unknown; message?: unknown };
      if (typeof body.error === 'string') error = body.error;
      if (typeof body.reason === 'string') reason = body.reason;
      else if (typeof body.message === 'string') reason = body.message;
    } catch {
      reason = text.slice(0, 200).trim();
    }
    return new OperatorApiError(res.status, error, reason || '(no reason given)', `/${path.replace(/^\//, '')}`);
  }

  /** GET a JSON document; throws OperatorApiError for an error status, OperatorUnreachableError without an answer. */
  async getJson<T>(path: string, query: Readonly<Record<string, string | undefined>> = {}, signal?: AbortSignal): Promise<T> {
    const timeout = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
    const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
    let res: Response;
    try {
      res = await this.#request(path, query, { headers: { accept: 'application/json' } }, combined);
    } catch (err) {
      if (signal?.aborted) throw err;
      if (timeout.aborted) throw new OperatorUnreachableError(`the operator API at ${displayUrl(this.baseUrl)} did not answer ${path} in ${REQUEST_TIMEOUT_MS / 1000} s`);
      throw err;
    }
    if (!res.ok) throw await this.#failure(res, path);
    const text = await res.text();
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new OperatorUnreachableError(`${displayUrl(this.baseUrl)} answered ${path} with something other than JSON (HTTP ${res.status}); is --url the operator API?`);
    }
  }

  /** Opens the event stream; resolves with the response once its headers are in (status 2xx). */
  async openEvents(signal: AbortSignal, lastEventId?: string): Promise<Response> {
    const headers: Record<string, string> = { accept: 'text/event-stream' };
    if (lastEventId !== undefined) headers['last-event-id'] = lastEventId;
    const res = await this.#request('api/events', {}, { headers }, signal);
    if (!res.ok) throw await this.#failure(res, 'api/events');
    if (!res.body) throw new OperatorUnreachableError('the event stream has no body');
    return res;
  }
}

// ---------------------------------------------------------------------------------------------
// Server-Sent Events parsing (WHATWG HTML, "event stream interpretation")

export interface SseEvent {
  readonly event: string;
  readonly data: string;
  readonly id: string | undefined;
}

/** Feeds text chunks in, gets whole events out. Comments (": ping") are dropped. */
export class SseParser {
  #buffer = '';
  #event = '';
  #data: string[] = [];
  #id: string | undefined;
  /** The last `id:` the stream sent (for Last-Event-ID on reconnect). */
  lastEventId: string | undefined;
  /** The last `retry:` (ms) the stream asked for. */
  retryMs: number | undefined;

  push(chunk: string): SseEvent[] {
    this.#buffer += chunk;
    const out: SseEvent[] = [];
    for (;;) {
      const m = /\r\n|\n|\r/.exec(this.#buffer);
      if (!m) break;
      // A CR at the very end may be the first half of CRLF: wait for the next chunk.
      if (m[0] === '\r' && m.index === this.#buffer.length - 1) break;
      const line = this.#buffer.slice(0, m.index);
      this.#buffer = this.#buffer.slice(m.index + m[0].length);
      const ev = this.#line(line);
      if (ev) out.push(ev);
    }
    return out;
  }

  #line(line: string): SseEvent | undefined {
    if (line === '') {
      const data = this.#data;
      const event = this.#event || 'message';
      this.#data = [];
      this.#event = '';
      if (this.#id !== undefined) this.lastEventId = this.#id;
      if (data.length === 0) return undefined;
      return { event, data: data.join('\n'), id: this.lastEventId };
    }
    if (line.startsWith(':')) return undefined;
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'event':
        this.#event = value;
        break;
      case 'data':
        this.#data.push(value);
        break;
      case 'id':
        if (!value.includes('\0')) this.#id = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.retryMs = Number(value);
        break;
      default:
        break;
    }
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------
// Text formatting (pure)

function pad2(n: number): string {
  return String(n).padStart(2, '0');
}

/** "2024-05-01 10:00:03" in UTC; "-" for a missing or bad time. */
export function utcTime(iso: string | null | undefined): string {
  const t = iso ? Date.parse(iso) : NaN;
  if (!Number.isFinite(t)) return '-';
  const d = new Date(t);
  return `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())} ${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}`;
}

/** "12.3s" below a minute, "4:05" below an hour, "1:02:03" above; "-" when unknown. */
export function formatDuration(sec: number | null | undefined): string {
  if (sec === null || sec === undefined || !Number.isFinite(sec)) return '-';
  if (sec < 60) return `${sec.toFixed(1)}s`;
  const whole = Math.round(sec);
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = whole % 60;
  return h > 0 ? `${h}:${pad2(m)}:${pad2(s)}` : `${m}:${pad2(s)}`;
}

function formatMs(ms: number | null | undefined): string {
  return ms === null || ms === undefined || !Number.isFinite(ms) ? '-' : `${Math.round(ms)}ms`;
}

function mosOf(call: Pick<CallRecordJson, 'media'>): string {
  const m = call.media;
  if (!m) return '-';
  const one = (v: number | null | undefined): string => (v === null || v === undefined ? '-' : v.toFixed(1));
  return `${one(m.callerToCallee?.mos)}/${one(m.calleeToCaller?.mos)}`;
}

/** RTP packets relayed caller->callee / callee->caller. */
function packetsOf(call: Pick<CallRecordJson, 'media'>): string {
  const m = call.media;
  if (!m) return '-';
  return `${m.callerToCallee?.packets ?? '-'}/${m.calleeToCaller?.packets ?? '-'}`;
}

function outcomeOf(call: Pick<CallRecordJson, 'outcome' | 'live' | 'state'>): string {
  if (call.outcome) return call.outcome;
  return call.live ? `live ${call.state}` : String(call.state ?? '-');
}

function statuses(call: Pick<CallRecordJson, 'aStatus' | 'bStatus'>): string {
  return `${call.aStatus ?? '-'}/${call.bStatus ?? '-'}`;
}

/** Left-aligned columns separated by two spaces; the last column is not padded. */
export function formatColumns(rows: readonly (readonly string[])[]): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ').trimEnd());
}

/** The `list` table: a header and one line per call. */
export function formatCallsTable(calls: readonly CallRecordJson[]): string[] {
  const rows: string[][] = [['TIME (UTC)', 'ID', 'CALLER', 'CALLEE', 'OUTCOME', 'A/B', 'HANGUP', 'DURATION', 'PDD', 'RTP PKTS', 'MOS']];
  for (const c of calls) {
    rows.push([
      utcTime(c.receivedAt),
      String(c.id ?? '').slice(0, 8),
      c.callerUser || '-',
      c.callee || '-',
      outcomeOf(c),
      statuses(c),
      c.hangupBy ?? '-',
      formatDuration(c.durationSec),
      formatMs(c.postDialDelayMs),
      packetsOf(c),
      mosOf(c),
    ]);
  }
  return formatColumns(rows);
}

function since(iso: string | null | undefined, zero: string | null | undefined): string {
  const a = iso ? Date.parse(iso) : NaN;
  const b = zero ? Date.parse(zero) : NaN;
  return Number.isFinite(a) && Number.isFinite(b) ? `  (+${((a - b) / 1000).toFixed(3)} s)` : '';
}

function valueText(v: unknown): string {
  if (v === null || v === undefined) return '-';
  return typeof v === 'string' ? v : JSON.stringify(v);
}

const RECORD_FIELDS = new Set([
  'id', 'instance', 'aCallId', 'bCallId', 'callerUser', 'callerName', 'callerAddress', 'callerPort', 'callee', 'state',
  'receivedAt', 'ringingAt', 'answeredAt', 'endedAt', 'postDialDelayMs', 'durationSec', 'billableSec', 'outcome',
  'hangupBy', 'aStatus', 'aReason', 'bStatus', 'bReason', 'transfers', 'media', 'updatedAt', 'live',
]);

/** Every field of a call record, labelled, with media figures as a small table. */
export function formatCallRecord(call: CallRecordJson): string[] {
  const status = (s: number | null, reason: string | null): string => (s === null || s === undefined ? 'no final status' : `final ${s}${reason ? ` ${reason}` : ''}`);
  const rows: string[][] = [
    ['instance', valueText(call.instance)],
    ['state', `${valueText(call.state)}${call.live ? ' (live)' : ''}`],
    ['outcome', call.outcome ? `${call.outcome}${call.hangupBy ? `, hung up by ${call.hangupBy}` : ''}` : call.hangupBy ? `-, hung up by ${call.hangupBy}` : '-'],
    ['caller', `${valueText(call.callerUser)}${call.callerName ? ` "${call.callerName}"` : ''} from ${valueText(call.callerAddress)}:${valueText(call.callerPort)}`],
    ['callee', valueText(call.callee)],
    ['A leg', `Call-ID ${valueText(call.aCallId)}   ${status(call.aStatus, call.aReason)}`],
    ['B leg', `Call-ID ${valueText(call.bCallId)}   ${status(call.bStatus, call.bReason)}`],
    ['received', valueText(call.receivedAt)],
    ['ringing', `${valueText(call.ringingAt)}${since(call.ringingAt, call.receivedAt)}`],
    ['answered', `${valueText(call.answeredAt)}${since(call.answeredAt, call.receivedAt)}`],
    ['ended', `${valueText(call.endedAt)}${since(call.endedAt, call.receivedAt)}`],
    ['post-dial delay', call.postDialDelayMs === null || call.postDialDelayMs === undefined ? '-' : `${call.postDialDelayMs} ms`],
    ['duration', call.durationSec === null || call.durationSec === undefined ? '-' : `${call.durationSec.toFixed(3)} s`],
    ['billable', call.billableSec === null || call.billableSec === undefined ? '-' : `${call.billableSec} s`],
    ['transfers', Array.isArray(call.transfers) && call.transfers.length > 0 ? call.transfers.join(', ') : 'none'],
    ['updated', valueText(call.updatedAt)],
  ];
  for (const [k, v] of Object.entries(call)) if (!RECORD_FIELDS.has(k)) rows.push([k, valueText(v)]);
  const media = call.media;
  if (!media) rows.push(['media', 'none']);
  else rows.push(['media', `RTPEngine ${valueText(media.engine)}`]);
  const lines = [`call ${call.id}`, ...formatColumns(rows).map((l) => `  ${l}`)];
  if (media) {
    const n = (v: number | null | undefined, unit = '', digits = 0): string => (v === null || v === undefined ? '-' : `${v.toFixed(digits)}${unit}`);
    const table = formatColumns([
      ['direction', 'packets', 'bytes', 'lost', 'jitter', 'MOS'],
      ...([['caller -> callee', media.callerToCallee], ['callee -> caller', media.calleeToCaller]] as const).map(([label, d]) => [
        label,
        n(d?.packets),
        n(d?.bytes),
        n(d?.packetsLost),
        n(d?.jitterMs, ' ms', 1),
        n(d?.mos, '', 1),
      ]),
    ]);
    lines.push(...table.map((l) => `      ${l}`));
  }
  return lines;
}

/** "10:00:03.123Z": the UTC time of day with milliseconds. */
function timeOfDay(iso: string | null | undefined): string {
  const t = iso ? Date.parse(iso) : NaN;
  return Number.isFinite(t) ? `${new Date(t).toISOString().slice(11, 23)}Z` : '--:--:--.---Z';
}

/** One `tail` line: a state change (`call`) or the end of a call (`end`). */
export function formatTailLine(event: 'call' | 'end', call: CallRecordJson): string {
  const who = `${String(call.id ?? '').slice(0, 8)}  ${call.callerUser || '?'} -> ${call.callee || '?'}`;
  if (event === 'call') return `${timeOfDay(call.updatedAt)}  ${who}  ${call.state}`;
  const parts = [
    `end ${call.outcome ?? call.state}`,
    `A ${call.aStatus ?? '-'} / B ${call.bStatus ?? '-'}`,
    call.hangupBy ? `hung up by ${call.hangupBy}` : 'no hang-up side',
    formatDuration(call.durationSec),
  ];
  if (call.media) parts.push(`MOS ${mosOf(call)}`);
  return `${timeOfDay(call.endedAt ?? call.updatedAt)}  ${who}  ${parts.join(' · ')}`;
}

// ---------------------------------------------------------------------------------------------
// Running the commands

export interface CallsIo {
  /** Standard output; a returned promise means "wait before writing more" (back-pressure). */
  readonly out: (text: string) => void | Promise<void>;
  readonly err: (text: string) => void;
  /** Terminal width, when stdout is one (the ladder fits itself to it). */
  readonly columns?: number;
}

export interface CallsDeps {
  readonly env: Env;
  readonly cwd: string;
  readonly io: CallsIo;
  /** Fired by SIGINT/SIGTERM: tail stops (exit 0), other commands give up (exit 130). */
  readonly signal?: AbortSignal;
  readonly fetch?: FetchLike;
  readonly now?: () => Date;
  /** tail's reconnect delays in ms (default 500 ms doubling to 15 s); tests shorten them. */
  readonly backoffMs?: readonly number[];
  /** tail reconnects when nothing (not even a ping) arrives for this long (default 45 s). */
  readonly stallMs?: number;
}

const MAX_LIST_ALL = 10_000;
const EXPORT_PAGE = 500;
const DEFAULT_BACKOFF = [500, 1000, 2000, 4000, 8000, 15_000];

function queryOf(f: CallFilters): Record<string, string | undefined> {
  return {
    caller: f.caller,
    callee: f.callee,
    outcome: f.outcomes?.join(','),
    from: f.from?.toISOString(),
    to: f.to?.toISOString(),
    q: f.q,
  };
}

function checkPage(body: unknown, path: string): CallPageJson {
  const b = body as Partial<CallPageJson> | null;
  if (!b || !Array.isArray(b.calls)) throw new OperatorUnreachableError(`the answer to ${path} has no "calls" list; is --url the operator API?`);
  return { calls: b.calls, nextCursor: typeof b.nextCursor === 'string' && b.nextCursor !== '' ? b.nextCursor : null };
}

async function runList(client: OperatorClient, cmd: Extract<CallsCommand, { name: 'list' }>, deps: CallsDeps): Promise<number> {
  const { io, signal } = deps;
  const calls: CallRecordJson[] = [];
  let cursor: string | undefined;
  let next: string | null = null;
  for (;;) {
    const page = checkPage(await client.getJson<unknown>('api/calls', { ...queryOf(cmd.filters), limit: String(cmd.limit), cursor }, signal), '/api/calls');
    calls.push(...page.calls);
    next = page.nextCursor;
    if (!cmd.all || next === null) break;
    if (calls.length >= MAX_LIST_ALL) {
      io.err(`calls: stopped after ${calls.length} calls (the --all bound); narrow with --from/--to or use export --csv\n`);
      break;
    }
    if (next === cursor) break; // a server repeating its cursor would loop forever
    cursor = next;
  }
  if (cmd.json) {
    await io.out(`${JSON.stringify({ calls, nextCursor: next }, null, 2)}\n`);
    return 0;
  }
  if (calls.length === 0) {
    io.err('calls: no call matches\n');
    return 0;
  }
  await io.out(`${formatCallsTable(calls).join('\n')}\n`);
  if (next !== null && !cmd.all) io.err(`calls: showing the newest ${calls.length}; more match (--all, or narrow with --from/--to)\n`);
  return 0;
}

async function runShow(client: OperatorClient, cmd: Extract<CallsCommand, { name: 'show' }>, deps: CallsDeps): Promise<number> {
  const path = `api/calls/${encodeURIComponent(cmd.key)}`;
  const body = await client.getJson<Partial<CallDetailJson> | null>(path, {}, deps.signal);
  if (!body || typeof body.call !== 'object' || body.call === null) throw new OperatorUnreachableError(`the answer to /${path} has no "call"; is --url the operator API?`);
  if (cmd.json) {
    await deps.io.out(`${JSON.stringify(body, null, 2)}\n`);
    return 0;
  }
  const messages = Array.isArray(body.messages) ? body.messages : [];
  const columns = deps.io.columns;
  // time (9) + gap (3) + three lifelines; notes after it need ~26 more.
  const laneWidth = columns === undefined ? 36 : Math.max(24, Math.min(44, Math.floor((columns - 15 - 26) / 2)));
  const lines = [
    ...formatCallRecord(body.call),
    '',
    `SIP messages (${messages.length}${body.truncated ? ', truncated: the oldest are shown' : ''}):`,
    ...renderLadder(messages, { laneWidth, ascii: cmd.ascii }),
  ];
  await deps.io.out(`${lines.join('\n')}\n`);
  return 0;
}

/** Writes to a file that replaces `target` only when complete (or to stdout when `target` is undefined). */
class ExportSink {
  readonly #io: CallsIo;
  readonly #target: string | undefined;
  readonly #temp: string | undefined;
  readonly #stream: WriteStream | undefined;
  #failure: Error | undefined;

  constructor(io: CallsIo, target: string | undefined) {
    this.#io = io;
    this.#target = target;
    if (target !== undefined) {
      this.#temp = `${target}.partial-${process.pid}`;
      this.#stream = createWriteStream(this.#temp, { flags: 'wx', mode: 0o600 });
      this.#stream.on('error', (err) => {
        this.#failure = err;
      });
    }
  }

  /** Resolves once the file is open (so a bad --out is reported before any request). */
  async ready(): Promise<void> {
    const s = this.#stream;
    if (!s || s.pending === false) return;
    await new Promise<void>((resolveOpen, reject) => {
      if (this.#failure) return reject(this.#failure);
      s.once('ready', () => resolveOpen());
      s.once('error', reject);
    });
  }

  async write(text: string): Promise<void> {
    if (this.#failure) throw this.#failure;
    const s = this.#stream;
    if (!s) {
      await this.#io.out(text);
      return;
    }
    if (!s.write(text)) {
      await new Promise<void>((resolveDrain, reject) => {
        const onError = (err: Error): void => reject(err);
        s.once('error', onError);
        s.once('drain', () => {
          s.off('error', onError);
          resolveDrain();
        });
      });
    }
  }

  async commit(): Promise<void> {
    const s = this.#stream;
    if (!s || this.#temp === undefined || this.#target === undefined) return;
    await new Promise<void>((resolveEnd, reject) => {
      s.once('error', reject);
      s.end(() => resolveEnd());
    });
    if (this.#failure) throw this.#failure;
    renameSync(this.#temp, this.#target);
  }

  discard(): void {
    if (this.#temp === undefined) return;
    this.#stream?.destroy();
    rmSync(this.#temp, { force: true });
  }
}

async function runExport(client: OperatorClient, cmd: Extract<CallsCommand, { name: 'export' }>, deps: CallsDeps): Promise<number> {
  const target = cmd.out === undefined ? undefined : isAbsolute(cmd.out) ? cmd.out : resolve(deps.cwd, cmd.out);
  let sink: ExportSink;
  try {
    sink = new ExportSink(deps.io, target);
  } catch (err) {
    deps.io.err(`calls: cannot write ${cmd.out}: ${(err as Error).message}\n`);
    return 1;
  }
  let count = 0;
  try {
    await sink.ready();
    await sink.write(callsCsvHeader());
    let cursor: string | undefined;
    for (;;) {
      const page = checkPage(await client.getJson<unknown>('api/calls', { ...queryOf(cmd.filters), limit: String(EXPORT_PAGE), cursor }, deps.signal), '/api/calls');
      let chunk = '';
      for (const c of page.calls) chunk += callCsvRow(c);
      if (chunk !== '') await sink.write(chunk);
      count += page.calls.length;
      if (page.nextCursor === null || page.nextCursor === cursor) break;
      cursor = page.nextCursor;
    }
    await sink.commit();
  } catch (err) {
    sink.discard();
    const e = err as NodeJS.ErrnoException;
    if (target !== undefined && typeof e.code === 'string' && e.syscall !== undefined) {
      deps.io.err(`calls: cannot write ${cmd.out}: ${e.message}\n`);
      return 1;
    }
    throw err;
  }
  deps.io.err(`calls: exported ${count} call${count === 1 ? '' : 's'}${target ? ` to ${cmd.out}` : ''}\n`);
  return 0;
}

function delayText(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 100) / 10} s`;
}

/** Resolves after `ms`, or at once when `signal` fires. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((done) => {
    if (signal?.aborted) return done();
    const timer = setTimeout(finish, ms);
    function finish(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', finish);
      done();
    }
    signal?.addEventListener('abort', finish, { once: true });
  });
}

async function runTail(client: OperatorClient, cmd: Extract<CallsCommand, { name: 'tail' }>, deps: CallsDeps): Promise<number> {
  const { io, signal } = deps;
  const backoff = deps.backoffMs ?? DEFAULT_BACKOFF;
  const stallMs = deps.stallMs ?? 45_000;
  const lastState = new Map<string, string>();
  const parser = new SseParser();
  let attempt = 0;
  let connectedOnce = false;

  const handle = async (ev: SseEvent): Promise<void> => {
    if (ev.event !== 'call' && ev.event !== 'end') return;
    let call: CallRecordJson;
    try {
      call = JSON.parse(ev.data) as CallRecordJson;
    } catch {
      io.err(`calls: ignored an ${ev.event} event that is not JSON\n`);
      return;
    }
    if (!call || typeof call !== 'object' || typeof call.id !== 'string') return;
    if (cmd.json) {
      await io.out(`${JSON.stringify({ event: ev.event, call })}\n`);
      return;
    }
    if (ev.event === 'end') {
      lastState.delete(call.id);
      await io.out(`${formatTailLine('end', call)}\n`);
      return;
    }
    // One line per state change: repeated updates in the same state (media figures, a
    // re-INVITE) are not printed; final states are left to the `end` event that follows.
    if (lastState.get(call.id) === call.state) return;
    if (call.state === 'ended' || call.state === 'failed' || call.state === 'cancelled') {
      lastState.set(call.id, call.state);
      return;
    }
    if (lastState.size >= 10_000) lastState.delete(lastState.keys().next().value as string);
    lastState.set(call.id, call.state);
    await io.out(`${formatTailLine('call', call)}\n`);
  };

  while (!signal?.aborted) {
    const connection = new AbortController();
    const stop = (): void => connection.abort();
    signal?.addEventListener('abort', stop, { once: true });
    let stall: NodeJS.Timeout | undefined;
    const armStall = (): void => {
      clearTimeout(stall);
      stall = setTimeout(() => connection.abort(new Error('stalled')), stallMs);
    };
    const openedAt = Date.now();
    let gotEvent = false;
    let why = 'the stream ended';
    try {
      armStall();
      const res = await client.openEvents(connection.signal, parser.lastEventId);
      if (!connectedOnce) io.err(`calls: following ${displayUrl(client.baseUrl)} events (Ctrl-C stops)\n`);
      else io.err('calls: reconnected\n');
      connectedOnce = true;
      const reader = (res.body as ReadableStream<Uint8Array>).getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        armStall();
        for (const ev of parser.push(decoder.decode(value, { stream: true }))) {
          gotEvent = true;
          await handle(ev);
        }
      }
    } catch (err) {
      if (signal?.aborted) break;
      if (err instanceof OperatorApiError) {
        // A refused token or a server without the route will not fix itself by retrying.
        if (err.status === 400 || err.status === 401 || err.status === 403 || err.status === 404) throw err;
        why = `HTTP ${err.status}`;
      } else if (err instanceof OperatorUnreachableError) {
        if (!connectedOnce) throw err;
        why = err.message.replace(/; is the B2BUA running.*$/, '');
      } else if (connection.signal.aborted) {
        why = `nothing received for ${delayText(stallMs)}`;
      } else {
        why = (err as Error).message;
      }
    } finally {
      clearTimeout(stall);
      signal?.removeEventListener('abort', stop);
      connection.abort();
    }
    if (signal?.aborted) break;
    if (gotEvent || Date.now() - openedAt > 5000) attempt = 0;
    const delay = backoff[Math.min(attempt, backoff.length - 1)] ?? 1000;
    attempt++;
    io.err(`calls: ${why}; reconnecting in ${delayText(delay)}\n`);
    await pause(delay, signal);
  }
  return 0;
}

function describeApiError(err: OperatorApiError, settings: CallsSettings): string {
  const base = `calls: the operator API refused ${err.path}: ${err.status} ${err.error}: ${err.reason}`;
  if (err.status === 401) return `${base} (the token came from ${settings.tokenSource})`;
  return base;
}

/**
 * Runs one `calls` command and resolves with the exit code. Errors are reported on io.err;
 * nothing throws for bad input, a refusing API or an unreachable one.
 */
export async function runCallsCli(argv: readonly string[], deps: CallsDeps): Promise<number> {
  const { io } = deps;
  const now = deps.now ?? (() => new Date());
  let parsed: ParsedCalls;
  let settings: CallsSettings;
  try {
    parsed = parseCallsArgs(argv, now());
    if (parsed.command.name === 'help') {
      await io.out(`${usageOf(parsed.command.topic)}\n`);
      return 0;
    }
    settings = resolveSettings(parsed, deps.env, deps.cwd);
  } catch (err) {
    if (err instanceof CallsUsageError) {
      io.err(`calls: ${err.message}\n(calls --help shows the commands and options)\n`);
      return 2;
    }
    throw err;
  }
  const client = new OperatorClient(settings.url, settings.token, deps.fetch);
  const cmd = parsed.command;
  try {
    switch (cmd.name) {
      case 'list':
        return await runList(client, cmd, deps);
      case 'show':
        return await runShow(client, cmd, deps);
      case 'tail':
        return await runTail(client, cmd, deps);
      case 'export':
        return await runExport(client, cmd, deps);
      default: {
        const never: never = cmd;
        throw new Error(`unhandled command ${JSON.stringify(never)}`);
      }
    }
  } catch (err) {
    if (deps.signal?.aborted) {
      io.err('calls: interrupted\n');
      return cmd.name === 'tail' ? 0 : 130;
    }
    if (err instanceof OperatorApiError) {
      io.err(`${describeApiError(err, settings)}\n`);
      return 1;
    }
    if (err instanceof OperatorUnreachableError) {
      io.err(`calls: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
