/**
 * SIP session timers (RFC 4028) for the B2BUA. Each leg has its own: on the caller's leg we are
 * the UAS, on the callee's the UAC. Whoever is the refresher sends a re-INVITE every half
 * interval; when it is the other party and no refresh comes, we end the call a little before the
 * interval runs out (RFC 4028 section 10). This is how a call whose phone vanished (power cut,
 * network gone, a crash before its BYE) stops holding a call slot, a media session and a record.
 *
 * Where a party does not support timers (no `Supported: timer`, or no Session-Expires in its
 * answer), we refresh that leg ourselves: a re-INVITE any UA must answer, whose failure (408,
 * 481, no answer) ends the call.
 *
 * This module is the negotiation (pure functions of the headers) and the per-leg clock.
 */

/** RFC 4028 section 4: no interval below 90 seconds. */
export const RFC_MIN_SE = 90;

export interface SessionTimerConfig {
  /** The interval we ask for and accept at most, seconds (SESSION_EXPIRES); 0 turns timers off. */
  readonly expires: number;
  /** The smallest interval we accept, seconds (SESSION_MIN_SE, at least 90). */
  readonly minSE: number;
}

export type Refresher = 'us' | 'peer';

/** What one leg settled on. */
export interface LegTimerPlan {
  readonly interval: number;
  readonly refresher: Refresher;
}

/** The request headers a negotiation reads (lower-case names, values as received, absent = undefined). */
export interface TimerHeaders {
  readonly sessionExpires: string | undefined;
  readonly minSE: string | undefined;
  /** Supported and Require values joined, as they came */
  readonly supported: string | undefined;
  readonly require?: string | undefined;
}

export interface ParsedSessionExpires {
  readonly interval: number;
  readonly refresher: 'uac' | 'uas' | undefined;
}

/** `Session-Expires: 1800;refresher=uac` (or compact `x:`). Undefined for a malformed value. */
export function parseSessionExpires(value: string): ParsedSessionExpires | undefined {
  const [delta, ...params] = value.split(';').map((p) => p.trim());
  if (delta === undefined || !/^\d{1,10}$/.test(delta)) return undefined;
  const interval = Number(delta);
  let refresher: ParsedSessionExpires['refresher'];
  for (const p of params) {
    const m = /^refresher\s*=\s*(\S+)$/i.exec(p);
    if (!m) continue;
    const r = m[1]!.toLowerCase();
    if (r !== 'uac' && r !== 'uas') return undefined;
    refresher = r;
  }
  return { interval, refresher };
}

/** `Min-SE: 90` (parameters allowed and ignored). Undefined for a malformed value. */
export function parseMinSE(value: string): number | undefined {
  const delta = value.split(';')[0]!.trim();
  return /^\d{1,10}$/.test(delta) ? Number(delta) : undefined;
}

/** True when an option tag list (Supported/Require values) names `timer`. */
export function supportsTimer(list: string | undefined): boolean {
  if (list === undefined) return false;
  return list.split(',').some((t) => t.trim().toLowerCase() === 'timer');
}

export type UasNegotiation =
  | { readonly ok: true; readonly plan: LegTimerPlan | undefined; readonly responseHeaders: Record<string, string>; readonly peerHasTimer: boolean }
  | { readonly ok: false; readonly status: 400 | 422; readonly reason: string; readonly headers: Record<string, string> };

/**
 * The caller's leg (we answer its INVITE, RFC 4028 section 9). From a caller that supports
 * timers, an interval below our Min-SE gets 422 with our Min-SE; from one that does not (it could
 * not act on a 422: the Session-Expires came from a proxy on its way) the interval is raised to
 * our Min-SE instead. Otherwise the interval is the request's (reduced to ours, never below the
 * request's Min-SE) or, without one, ours. The caller refreshes when it supports timers (its
 * choice of refresher is honoured), else we do.
 */
export function negotiateAsUas(h: TimerHeaders, cfg: SessionTimerConfig): UasNegotiation {
  const callerHasTimer = supportsTimer(h.supported) || supportsTimer(h.require);
  if (cfg.expires === 0) return { ok: true, plan: undefined, responseHeaders: {}, peerHasTimer: callerHasTimer };
  const se = h.sessionExpires !== undefined ? parseSessionExpires(h.sessionExpires) : undefined;
  if (h.sessionExpires !== undefined && se === undefined) return { ok: false, status: 400, reason: 'Bad Request - malformed Session-Expires', headers: {} };
  const theirMin = h.minSE !== undefined ? parseMinSE(h.minSE) : undefined;
  if (h.minSE !== undefined && theirMin === undefined) return { ok: false, status: 400, reason: 'Bad Request - malformed Min-SE', headers: {} };
  if (se !== undefined && se.interval < cfg.minSE && callerHasTimer) {
    return { ok: false, status: 422, reason: 'Session Interval Too Small', headers: { 'Min-SE': String(cfg.minSE) } };
  }
  const floor = Math.max(theirMin ?? RFC_MIN_SE, cfg.minSE);
  const interval = se !== undefined ? Math.max(Math.min(se.interval, cfg.expires), floor) : Math.max(cfg.expires, floor);
  const refresherParam: 'uac' | 'uas' = callerHasTimer ? (se?.refresher ?? 'uac') : 'uas';
  const responseHeaders: Record<string, string> = { 'Session-Expires': `${interval};refresher=${refresherParam}`, Supported: 'timer' };
  // Require: timer only towards a party that said it supports the extension (RFC 4028 section 9)
  if (callerHasTimer) responseHeaders.Require = 'timer';
  return { ok: true, plan: { interval, refresher: refresherParam === 'uac' ? 'peer' : 'us' }, responseHeaders, peerHasTimer: callerHasTimer };
}

/**
 * Headers for an INVITE we send (the callee's leg, RFC 4028 section 7.1); none when timers are
 * off. After a 422, `interval` is the Min-SE it gave, and so is our Min-SE (section 7.4: the
 * largest Min-SE received).
 */
export function uacRequestHeaders(cfg: SessionTimerConfig, interval = cfg.expires): Record<string, string> {
  if (cfg.expires === 0) return {};
  const minSE = interval > cfg.expires ? interval : cfg.minSE;
  return { Supported: 'timer', 'Session-Expires': String(interval), 'Min-SE': String(minSE) };
}

/**
 * The interval to retry with after a 422 to our INVITE (RFC 4028 section 7.4): the callee's
 * Min-SE, if it is a number above what we asked and not absurd (a day at most). Undefined: do
 * not retry.
 */
export function retryIntervalAfter422(minSEHeader: string | undefined, asked: number): number | undefined {
  const min = minSEHeader !== undefined ? parseMinSE(minSEHeader) : undefined;
  if (min === undefined || min <= asked || min > 86_400) return undefined;
  return min;
}

/**
 * The callee's leg once its 2xx is in (RFC 4028 section 7.2): the 2xx's Session-Expires decides
 * the interval and who refreshes (refresher=uac is us). Without one the callee does not do
 * timers, and we refresh it ourselves at the interval we asked for.
 */
export function planFromUacAnswer(sessionExpires: string | undefined, asked: number): LegTimerPlan {
  const se = sessionExpires !== undefined ? parseSessionExpires(sessionExpires) : undefined;
  if (se === undefined) return { interval: asked, refresher: 'us' };
  return { interval: Math.max(se.interval, RFC_MIN_SE), refresher: se.refresher === 'uas' ? 'peer' : 'us' };
}

/**
 * A leg's plan after a re-INVITE or UPDATE its party sent (section 9, we are the UAS of it): the
 * request's Session-Expires may shorten the interval (never below our Min-SE; we may not answer
 * with more than it asked) and move the refresher role (refresher=uac: the party, when it does
 * timers). A request without one, or with a malformed one, keeps the plan.
 */
export function planFromRefresh(current: LegTimerPlan, sessionExpires: string | undefined, minSE: number, peerHasTimer: boolean): LegTimerPlan {
  const se = sessionExpires !== undefined ? parseSessionExpires(sessionExpires) : undefined;
  if (se === undefined) return current;
  const interval = Math.max(Math.min(se.interval, current.interval), minSE);
  let refresher = current.refresher;
  if (se.refresher === 'uac' && peerHasTimer) refresher = 'peer';
  else if (se.refresher === 'uas') refresher = 'us';
  return interval === current.interval && refresher === current.refresher ? current : { interval, refresher };
}

/** Headers on a refresh re-INVITE we send (we are its UAC, so refresher=uac is us). */
export function refreshHeaders(plan: LegTimerPlan): Record<string, string> {
  return { Supported: 'timer', 'Session-Expires': `${plan.interval};refresher=${plan.refresher === 'us' ? 'uac' : 'uas'}` };
}

/**
 * Headers on our 2xx to a re-INVITE or UPDATE a party sent us (section 9). The leg keeps the
 * interval and refresher it settled at answer; the 2xx restates them (refresher=uac: the party
 * that sent this request).
 */
export function refreshAnswerHeaders(plan: LegTimerPlan, peerHasTimer: boolean): Record<string, string> {
  const h: Record<string, string> = { 'Session-Expires': `${plan.interval};refresher=${plan.refresher === 'peer' ? 'uac' : 'uas'}` };
  if (peerHasTimer) h.Require = 'timer';
  return h;
}

/** When we send a refresh: half the interval (section 10). */
export function refreshDelayMs(plan: LegTimerPlan): number {
  return (plan.interval * 1000) / 2;
}

/**
 * When the side that does not refresh gives up waiting: before the interval runs out, by a third
 * of it or 32 seconds, whichever is less (section 10).
 */
export function expiryDelayMs(plan: LegTimerPlan): number {
  return (plan.interval - Math.min(32, plan.interval / 3)) * 1000;
}

/** Timers as the leg clock needs them; the real one is setTimeout, tests pass their own. */
export interface TimerScheduler {
  now(): number;
  set(ms: number, fn: () => void): unknown;
  clear(handle: unknown): void;
}

export const realScheduler: TimerScheduler = {
  now: () => Date.now(),
  set: (ms, fn) => setTimeout(fn, ms),
  clear: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/**
 * One leg's clock: with us as refresher it asks for a refresh every half interval; with the peer
 * as refresher it reports expiry when none came in time. Every refresh seen or sent restarts it.
 */
export class LegSessionTimer {
  #plan: LegTimerPlan;
  #handle: unknown;
  #stopped = false;
  /** when the interval started: the answer, or the last refresh */
  #since: number;

  constructor(
    plan: LegTimerPlan,
    readonly onRefreshDue: () => void,
    readonly onExpired: () => void,
    readonly scheduler: TimerScheduler = realScheduler,
  ) {
    this.#plan = plan;
    this.#since = scheduler.now();
    this.#arm();
  }

  get plan(): LegTimerPlan {
    return this.#plan;
  }

  /** A refresh went through (either way), perhaps with a new plan: start the interval again. */
  refreshed(plan: LegTimerPlan = this.#plan): void {
    if (this.#stopped) return;
    this.#plan = plan;
    this.#since = this.scheduler.now();
    this.#arm();
  }

  /** Milliseconds until the session expires if no refresh goes through. */
  get msLeft(): number {
    return this.#since + this.#plan.interval * 1000 - this.scheduler.now();
  }

  /** Try again in `ms` (a refresh we sent failed without ending the dialog), within the interval. */
  retryIn(ms: number): void {
    if (this.#stopped) return;
    this.#clear();
    this.#handle = this.scheduler.set(ms, () => this.#fire());
  }

  stop(): void {
    this.#stopped = true;
    this.#clear();
  }

  #arm(): void {
    this.#clear();
    const ms = this.#plan.refresher === 'us' ? refreshDelayMs(this.#plan) : expiryDelayMs(this.#plan);
    this.#handle = this.scheduler.set(ms, () => this.#fire());
  }

  #fire(): void {
    this.#handle = undefined;
    if (this.#stopped) return;
    if (this.#plan.refresher === 'us') this.onRefreshDue();
    else this.onExpired();
  }

  #clear(): void {
    if (this.#handle !== undefined) this.scheduler.clear(this.#handle);
    this.#handle = undefined;
  }
}
