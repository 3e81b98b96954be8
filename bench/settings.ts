// Settings of `npm run bench`, from the environment. Every load is bounded: a number of calls, a
// rate and a time limit, and everything goes to 127.0.0.1.

export const PHASES = ['baseline', 'chain', 'cost', 'latency', 'concurrency', 'media', 'drachtio'] as const;
export type Phase = (typeof PHASES)[number];

/** The paths the benchmark compares: phone -> Kamailio -> phone, and the full chain three ways. */
export const PATH_NAMES = ['baseline', 'chain', 'chain-nolog', 'chain-nomedia', 'chain-drachtio'] as const;
export type PathName = (typeof PATH_NAMES)[number];

export const PATH_TITLES: Record<PathName, string> = {
  baseline: 'Kamailio only (phone -> Kamailio -> phone)',
  chain: 'full chain: engine + B2BUA + RTPEngine + call log',
  'chain-nolog': 'full chain, CALL_LOG=off',
  'chain-nomedia': 'full chain, MEDIA=off (call log on)',
  'chain-drachtio': 'full chain on an external drachtio server (DRACHTIO_HOST) instead of the engine',
};

/** An external drachtio server for the chain-drachtio path (phase `drachtio`). */
export interface ExternalDrachtio {
  /** Its wire (control) address, where the B2BUA connects. */
  readonly host: string;
  readonly port: number;
  readonly secret: string;
  /** Its SIP address: Kamailio sends phones' INVITEs there and trusts B legs from there only. */
  readonly sip: { readonly address: string; readonly port: number };
}

export interface BenchSettings {
  readonly quick: boolean;
  readonly phases: ReadonlySet<Phase>;
  /** Chain variants stepped and costed (the concurrency and media phases pick their own). */
  readonly chainVariants: readonly PathName[];
  /** Rate search (RFC 7501/7502): seconds per step, first rate, growth factor, ceiling, bisections. */
  readonly stepSeconds: number;
  readonly rateStart: number;
  readonly rateFactor: number;
  readonly rateMax: number;
  readonly refine: number;
  /** How long each call is held before the caller's BYE in the rate, cost and latency phases. */
  readonly holdMs: number;
  /** Calls per second one SIPp caller is given; a higher offered rate is split over several. */
  readonly uacRate: number;
  /** SIPp processes answering, and the extensions registered on them. */
  readonly uasCount: number;
  readonly callees: number;
  readonly costCalls: number;
  readonly costRate: number;
  readonly latencySeconds: number;
  /** Extra latency rates (calls/s) besides the cost rate and half the chain's maximum. */
  readonly latencyRates: readonly number[];
  readonly concurrencyMax: number;
  /** RTPEngine processes of the full chain in the concurrency phase (each holds ~4,900 calls under a 20,000 open-file limit). */
  readonly concurrencyRtpengines: number;
  /** Ramp rate; lowered to half the path's zero-failure rate when this run measured it. */
  readonly concurrencyRate: number;
  /** Seconds every call stays up after the last one is set up (RSS is read on this plateau). */
  readonly concurrencyPlateau: number;
  readonly concurrencyPaths: readonly PathName[];
  readonly mediaCalls: number;
  readonly mediaRate: number;
  /**
   * Shared memory of the baseline's Kamailio in MB (-m). Stack gives its Kamailio 256 MB, which
   * runs out near 1,600 calls/s on this path (transactions wait 5 s in shared memory); the chain
   * never gets near that, so the baseline gets enough to show Kamailio's CPU limit instead.
   */
  readonly kamailioShmMb: number;
  readonly rtpPortMin: number;
  readonly rtpPortMax: number;
  /** Write V8 CPU profiles of the engine and the B2BUA (node --cpu-prof) for these paths. */
  readonly profilePaths: readonly PathName[];
  /** Set from DRACHTIO_HOST, DRACHTIO_PORT, DRACHTIO_SECRET and DRACHTIO_SIP. */
  readonly drachtio: ExternalDrachtio | undefined;
  /** Calls at the start of each path, not measured: JIT warm-up, first SQLite pages, Kamailio's caches. */
  readonly warmupCalls: number;
  /** Extra B2BUA settings for experiments (BENCH_B2BUA_ENV="UDP_RECV_BUFSIZE=4194304,LOG_LEVEL=warn"). */
  readonly b2buaEnv: Readonly<Record<string, string>>;
  readonly logLevel: string;
  readonly keepVar: boolean;
  /** BENCH_HOPS=1: the chains' cost and latency runs capture every hop and break INVITE->180 down per process. */
  readonly hops: boolean;
}

export class SettingsError extends Error {
  override readonly name = 'SettingsError';
}

type Env = Readonly<Record<string, string | undefined>>;

function num(env: Env, name: string, fallback: number, min: number, max: number, integer = true): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < min || v > max) {
    throw new SettingsError(`${name} must be ${integer ? 'an integer' : 'a number'} from ${min} to ${max}, got ${JSON.stringify(raw)}`);
  }
  return v;
}

function list<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: readonly T[]): T[] {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return [...fallback];
  if (raw.trim() === 'none') return [];
  const out: T[] = [];
  for (const item of raw.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    if (!(allowed as readonly string[]).includes(item)) throw new SettingsError(`${name}: unknown value ${JSON.stringify(item)} (expected some of ${allowed.join(', ')}, or none)`);
    if (!out.includes(item as T)) out.push(item as T);
  }
  return out;
}

function keyValues(env: Env, name: string): Record<string, string> {
  const raw = env[name];
  const out: Record<string, string> = {};
  if (raw === undefined || raw.trim() === '') return out;
  for (const pair of raw.split(',')) {
    const m = /^\s*([A-Z][A-Z0-9_]*)=(.*)$/.exec(pair);
    if (!m) throw new SettingsError(`${name}: expected NAME=value pairs separated by commas, got ${JSON.stringify(pair)}`);
    out[m[1] as string] = (m[2] as string).trim();
  }
  return out;
}

function rates(env: Env, name: string): number[] {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return [];
  return raw.split(',').map((s) => {
    const v = Number(s.trim());
    if (!Number.isInteger(v) || v < 1 || v > 100_000) throw new SettingsError(`${name}: ${JSON.stringify(s.trim())} is not a rate in calls/s (1-100000)`);
    return v;
  });
}

/** chain variant names as BENCH_CHAIN_VARIANTS spells them (full, nolog, nomedia). */
const VARIANTS: Record<string, PathName> = { full: 'chain', nolog: 'chain-nolog', nomedia: 'chain-nomedia' };

function variants(env: Env, name: string, fallback: readonly string[]): PathName[] {
  return list(env, name, Object.keys(VARIANTS), fallback).map((v) => VARIANTS[v] as PathName);
}

function externalDrachtio(env: Env, wanted: boolean): ExternalDrachtio | undefined {
  const host = env.DRACHTIO_HOST?.trim();
  if (!host) {
    if (wanted) throw new SettingsError('BENCH_PHASES has drachtio: set DRACHTIO_HOST, DRACHTIO_PORT, DRACHTIO_SECRET and DRACHTIO_SIP (its SIP address host:port)');
    return undefined;
  }
  if (!/^[A-Za-z0-9.-]+$/.test(host)) throw new SettingsError(`DRACHTIO_HOST: ${JSON.stringify(host)} is not a host name or IPv4 address`);
  const port = num(env, 'DRACHTIO_PORT', 9022, 1, 65535);
  const secret = env.DRACHTIO_SECRET;
  if (!secret) throw new SettingsError('DRACHTIO_SECRET: the external drachtio server\'s shared secret is required with DRACHTIO_HOST');
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(env.DRACHTIO_SIP?.trim() ?? '');
  const sipPort = m ? Number(m[2]) : 0;
  if (!m || sipPort < 1 || sipPort > 65535) {
    throw new SettingsError(`DRACHTIO_SIP: expected the drachtio server's SIP address as IPv4:port (Kamailio sends INVITEs there and trusts only it), got ${JSON.stringify(env.DRACHTIO_SIP ?? '')}`);
  }
  if (m[1] === '127.0.0.1') throw new SettingsError('DRACHTIO_SIP: 127.0.0.1 is the phones\' address; Kamailio trusts the drachtio server by its address, so give it another (e.g. 127.0.0.2)');
  return { host, port, secret, sip: { address: m[1] as string, port: sipPort } };
}

export function loadSettings(env: Env): BenchSettings {
  const quick = env.BENCH_QUICK === '1' || env.BENCH_QUICK === 'true';
  const phases = new Set<Phase>(list(env, 'BENCH_PHASES', PHASES, PHASES.filter((p) => p !== 'drachtio')));
  if (env.DRACHTIO_HOST && env.BENCH_PHASES === undefined) phases.add('drachtio');
  // 10,000 anchored calls need 40,000 media ports (RTP and RTCP on both sides), below the SIP
  // ports the bench picks (61000 and up).
  const rtpPortMin = num(env, 'BENCH_RTP_PORT_MIN', 20000, 1024, 65000);
  const rtpPortMax = num(env, 'BENCH_RTP_PORT_MAX', 60999, rtpPortMin + 100, 65535);
  const concurrencyPaths = variants(env, 'BENCH_CONCURRENCY_PATHS', ['nomedia', 'full']);
  const drachtio = externalDrachtio(env, phases.has('drachtio'));
  return {
    quick,
    phases,
    chainVariants: variants(env, 'BENCH_CHAIN_VARIANTS', ['full', 'nolog', 'nomedia']),
    stepSeconds: num(env, 'BENCH_STEP_SECONDS', quick ? 2 : 10, 1, 600),
    rateStart: num(env, 'BENCH_RATE_START', quick ? 50 : 200, 1, 100_000),
    rateFactor: num(env, 'BENCH_RATE_FACTOR', quick ? 2 : 1.5, 1.05, 10, false),
    rateMax: num(env, 'BENCH_RATE_MAX', quick ? 200 : 6000, 1, 100_000),
    refine: num(env, 'BENCH_REFINE', quick ? 1 : 3, 0, 10),
    holdMs: num(env, 'BENCH_HOLD_MS', 100, 0, 600_000),
    uacRate: num(env, 'BENCH_UAC_RATE', 1000, 10, 10_000),
    uasCount: num(env, 'BENCH_UAS', 2, 1, 16),
    callees: num(env, 'BENCH_CALLEES', quick ? 10 : 50, 1, 900),
    costCalls: num(env, 'BENCH_COST_CALLS', quick ? 100 : 3000, 10, 1_000_000),
    costRate: num(env, 'BENCH_COST_RATE', 100, 1, 100_000),
    latencySeconds: num(env, 'BENCH_LATENCY_SECONDS', quick ? 3 : 20, 1, 600),
    latencyRates: rates(env, 'BENCH_LATENCY_RATES'),
    concurrencyMax: num(env, 'BENCH_CONCURRENCY_MAX', quick ? 200 : 10_000, 1, 1_000_000),
    concurrencyRtpengines: num(env, 'BENCH_CONCURRENCY_RTPENGINES', quick ? 1 : 3, 1, 16),
    concurrencyRate: num(env, 'BENCH_CONCURRENCY_RATE', quick ? 100 : 200, 1, 10_000),
    concurrencyPaths,
    concurrencyPlateau: num(env, 'BENCH_CONCURRENCY_PLATEAU', quick ? 4 : 15, 1, 3600),
    mediaCalls: num(env, 'BENCH_MEDIA_CALLS', quick ? 20 : 200, 1, 5000),
    mediaRate: num(env, 'BENCH_MEDIA_RATE', quick ? 20 : 100, 1, 5000),
    kamailioShmMb: num(env, 'BENCH_KAMAILIO_SHM_MB', 1024, 64, 16_384),
    rtpPortMin,
    rtpPortMax,
    profilePaths: variants(env, 'BENCH_CPU_PROFILE', []),
    drachtio,
    warmupCalls: num(env, 'BENCH_WARMUP_CALLS', quick ? 50 : 500, 0, 100_000),
    b2buaEnv: keyValues(env, 'BENCH_B2BUA_ENV'),
    logLevel: env.BENCH_LOG ?? 'warn',
    keepVar: env.BENCH_KEEP_VAR === '1',
    hops: env.BENCH_HOPS === '1',
  };
}
