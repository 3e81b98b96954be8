import { hostname } from 'node:os';
import { DialPlan, DialPlanError } from '../b2bua/dial-plan';
import type { OverloadLimits } from '../b2bua/overload';
import { RFC_MIN_SE, type SessionTimerConfig } from '../b2bua/session-timer';
import { ConfigError } from './engine-args';
import { EnvReader, type Env } from './env';

export interface OperatorConfig {
  readonly address: string;
  readonly port: number;
  /** Bearer tokens allowed to read. Never logged. */
  readonly readTokens: readonly string[];
  /** Bearer tokens allowed to read and act (hang up). Never logged. */
  readonly adminTokens: readonly string[];
}

export interface B2buaConfig {
  readonly drachtio: { readonly host: string; readonly port: number; readonly secret: string };
  readonly kamailioUri: string;
  readonly dialPlan: DialPlan;
  readonly maxCalls: number;
  readonly maxCallsPerExtension: number;
  readonly retryAfterSec: number;
  readonly noAnswerTimeoutSec: number;
  readonly shutdownTimeoutSec: number;
  /** RFC 4028 session timers: SESSION_EXPIRES (0 = off) and SESSION_MIN_SE, seconds */
  readonly sessionTimer: SessionTimerConfig;
  readonly media:
    | { readonly kind: 'off' }
    | {
        readonly kind: 'rtpengine';
        readonly engines: ReadonlyArray<{ host: string; port: number }>;
        readonly selection: 'least-loaded' | 'round-robin';
        readonly timeoutMs: number;
        /** New calls get 503 while this many requests wait this long (OVERLOAD_MEDIA_*; waitMs 0: off). */
        readonly overload: OverloadLimits;
      };
  readonly instance: string;
  readonly logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
  /** The operator HTTP endpoint (health, live calls, hang-up); undefined when OPERATOR_PORT=0. */
  readonly operator: OperatorConfig | undefined;
  readonly callLog: CallLogConfig;
}

export interface CallLogConfig {
  /** CALL_LOG=off writes no record (for benchmarks); the API then has live calls only. */
  readonly enabled: boolean;
  /** DATABASE_URL when it names PostgreSQL (several instances share one log). Never logged. */
  readonly databaseUrl: string | undefined;
  /** The SQLite file when DATABASE_URL is unset (CALL_LOG_PATH, default var/calls.db). */
  readonly sqlitePath: string;
  /** Calls older than this are deleted (CALL_LOG_RETENTION_DAYS). */
  readonly retentionDays: number;
  /** SIP messages of calls older than this are deleted (SIP_CAPTURE_RETENTION_DAYS). */
  readonly sipRetentionDays: number;
  /** The engine's status endpoint, whose /capture/<Call-ID> gives a call's SIP messages (ENGINE_CAPTURE_URL). */
  readonly captureUrl: string | undefined;
  /** How long after a call ends its messages are fetched, so the last ACK/200 are in (CAPTURE_GRACE_MS). */
  readonly captureGraceMs: number;
  /** State changes are written in one transaction per window of this many ms (CALL_LOG_FLUSH_MS). */
  readonly flushMs: number;
}

/** SESSION_EXPIRES (0, or 90 to 86,400 s) and SESSION_MIN_SE (90 up to SESSION_EXPIRES). */
function sessionTimer(r: EnvReader): SessionTimerConfig {
  const expires = r.integer('SESSION_EXPIRES', 1800, 0, 86_400);
  if (expires !== 0 && expires < RFC_MIN_SE) {
    throw new ConfigError(`SESSION_EXPIRES: ${expires} is below RFC 4028's minimum of ${RFC_MIN_SE} seconds (0 turns session timers off)`);
  }
  const minSE = r.integer('SESSION_MIN_SE', RFC_MIN_SE, RFC_MIN_SE, 86_400);
  if (expires !== 0 && minSE > expires) throw new ConfigError(`SESSION_MIN_SE: ${minSE} is above SESSION_EXPIRES (${expires})`);
  return { expires, minSE };
}

function databaseUrl(reader: EnvReader): string | undefined {
  const v = reader.raw('DATABASE_URL');
  if (v === undefined || v === '') return undefined;
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    throw new ConfigError('DATABASE_URL: not a URL (expected postgres://user:password@host:5432/db)');
  }
  if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
    throw new ConfigError(`DATABASE_URL: scheme ${url.protocol} is not supported (postgres:// or postgresql://; unset it for SQLite)`);
  }
  return v;
}

function httpUrl(reader: EnvReader, name: string): string | undefined {
  const v = reader.raw(name);
  if (v === undefined || v === '') return undefined;
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    throw new ConfigError(`${name}: not a URL (expected http://host:port)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError(`${name}: expected an http:// URL`);
  return v.replace(/\/+$/, '');
}

/**
 * OVERLOAD_MEDIA_REQUESTS (default 20) and OVERLOAD_MEDIA_WAIT_MS (default a sixth of
 * RTPENGINE_TIMEOUT_MS, 250 ms; 0 = off). The wait must be below the timeout: a request is given
 * up on at the timeout, so it would never have waited longer. Why a sixth: under sustained
 * overload the guard holds the replies' queue near this wait, and a call waits for two replies
 * in turn (offer, then answer) before it is answered, so the two together stay within a third of
 * one timeout. At half the timeout (the first default) the calls taken had 750 ms of margin left
 * and some still timed out: in 10 s steps of 450 calls/s beyond the machine's limit, NG requests
 * of calls already taken timed out in 2 of 4 runs at 750 ms (one a cascade of 1,637), in none of
 * 3 at 250 ms, which completed as many calls.
 */
function overloadLimits(r: EnvReader, timeoutMs: number): OverloadLimits {
  const requests = r.integer('OVERLOAD_MEDIA_REQUESTS', 20, 1, 1_000_000);
  const waitMs = r.integer('OVERLOAD_MEDIA_WAIT_MS', Math.floor(timeoutMs / 6), 0, 60_000);
  if (waitMs >= timeoutMs) {
    throw new ConfigError(`OVERLOAD_MEDIA_WAIT_MS: ${waitMs} ms must be below RTPENGINE_TIMEOUT_MS (${timeoutMs} ms), or 0 to turn overload protection off`);
  }
  return { requests, waitMs };
}

function tokens(reader: EnvReader, name: string): string[] {
  const v = reader.raw(name);
  if (v === undefined) return [];
  const list = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const t of list) if (t.length < 16) throw new ConfigError(`${name}: every token must be at least 16 characters`);
  return list;
}

/** Reads and checks the B2BUA's settings (see .env.example). Throws ConfigError naming the variable. */
export function loadB2buaConfig(env: Env): B2buaConfig {
  const r = new EnvReader(env);
  const secret = r.raw('DRACHTIO_SECRET');
  if (secret === undefined) throw new ConfigError('DRACHTIO_SECRET is required (the drachtio server\'s shared secret)');
  let dialPlan: DialPlan;
  try {
    dialPlan = new DialPlan(r.string('DIAL_PLAN', '6XXX'));
  } catch (err) {
    if (err instanceof DialPlanError) throw new ConfigError(`DIAL_PLAN: ${err.message}`);
    throw err;
  }
  const mediaKind = r.oneOf('MEDIA', ['rtpengine', 'off'] as const, 'rtpengine');
  let media: B2buaConfig['media'] = { kind: 'off' };
  if (mediaKind === 'rtpengine') {
    const timeoutMs = r.integer('RTPENGINE_TIMEOUT_MS', 1500, 50, 60_000);
    media = {
      kind: 'rtpengine',
      engines: r.hostPorts('RTPENGINE_NG', '127.0.0.1:22222'),
      selection: r.oneOf('RTPENGINE_SELECTION', ['least-loaded', 'round-robin'] as const, 'least-loaded'),
      timeoutMs,
      overload: overloadLimits(r, timeoutMs),
    };
  }
  const operatorPort = r.integer('OPERATOR_PORT', 8080, 0, 65535);
  const readTokens = tokens(r, 'OPERATOR_TOKENS');
  const adminTokens = tokens(r, 'OPERATOR_ADMIN_TOKENS');
  const operator: OperatorConfig | undefined =
    operatorPort === 0 ? undefined : { address: r.host('OPERATOR_ADDRESS', '127.0.0.1'), port: operatorPort, readTokens, adminTokens };
  return {
    drachtio: { host: r.host('DRACHTIO_HOST', '127.0.0.1'), port: r.port('DRACHTIO_PORT', 9022), secret },
    kamailioUri: r.sipUri('KAMAILIO_SIP_URI', 'sip:127.0.0.1:5060'),
    dialPlan,
    maxCalls: r.integer('MAX_CALLS', 12_000, 1, 1_000_000),
    maxCallsPerExtension: r.integer('MAX_CALLS_PER_EXTENSION', 8, 1, 1_000_000),
    retryAfterSec: r.integer('RETRY_AFTER', 5, 1, 3600),
    noAnswerTimeoutSec: r.integer('NO_ANSWER_TIMEOUT', 60, 1, 3600),
    shutdownTimeoutSec: r.integer('SHUTDOWN_TIMEOUT', 30, 0, 86_400),
    sessionTimer: sessionTimer(r),
    media,
    instance: r.string('B2BUA_INSTANCE', hostname()),
    logLevel: r.oneOf('LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const, 'info'),
    operator,
    callLog: {
      enabled: r.oneOf('CALL_LOG', ['on', 'off'] as const, 'on') === 'on',
      databaseUrl: databaseUrl(r),
      sqlitePath: r.string('CALL_LOG_PATH', 'var/calls.db'),
      retentionDays: r.integer('CALL_LOG_RETENTION_DAYS', 90, 1, 36_500),
      sipRetentionDays: r.integer('SIP_CAPTURE_RETENTION_DAYS', 7, 0, 36_500),
      captureUrl: httpUrl(r, 'ENGINE_CAPTURE_URL'),
      captureGraceMs: r.integer('CAPTURE_GRACE_MS', 1000, 0, 60_000),
      flushMs: r.integer('CALL_LOG_FLUSH_MS', 50, 0, 1000),
    },
  };
}
