import { EventEmitter } from 'node:events';
import type Srf from 'drachtio-srf';
import type { Logger } from 'pino';
import type { MediaAnchor } from '../media/media-anchor';
import type { CallLimits } from './call-limits';
import type { OverloadGuard } from './overload';
import { CallSession, HEADER_FROM_APP, type CallSessionContext, type CallSummary } from './call-session';
import { RFC_MIN_SE, type SessionTimerConfig } from './session-timer';
import type { DialPlan } from './dial-plan';
import { coalesceWrites, sendResponse, socketOf, type SrfRequest, type SrfResponse } from './srf-adapter';

export interface B2buaServiceOptions {
  readonly srf: Srf;
  readonly media: MediaAnchor;
  readonly kamailioUri: string;
  readonly instance: string;
  readonly dialPlan: DialPlan;
  readonly limits: CallLimits;
  /** Refuses new calls while the media server's replies queue (absent: never). */
  readonly overload?: OverloadGuard;
  readonly retryAfterSec: number;
  readonly noAnswerTimeoutMs: number;
  /** RFC 4028 session timers (expires 0: off); default off for embedders that set nothing */
  readonly sessionTimer?: SessionTimerConfig;
  readonly logger: Logger;
}

/** Why an INVITE was refused before any work was done on it. */
export type AdmissionRefusal = 'shutting-down' | 'loop' | 'not-in-dial-plan' | 'incomplete' | 'limit-global' | 'limit-extension' | 'overload';

interface B2buaServiceEvents {
  session: [CallSession];
  'call-end': [CallSummary];
  refused: [AdmissionRefusal, SrfRequest];
}

/** The user part of a SIP URI (percent-decoded), or '' when it has none. */
export function userOf(uri: string): string {
  const m = /^sips?:([^@;>?]+)@/i.exec(uri.replace(/^<|>$/g, ''));
  if (!m) return '';
  try {
    return decodeURIComponent(m[1] as string);
  } catch {
    return m[1] as string;
  }
}

/**
 * The B2BUA: admission checks on every new INVITE (shutdown, loop, dial plan, limits) before any
 * work, then one CallSession per admitted call, kept in a registry until it ends.
 */
export class B2buaService extends EventEmitter<B2buaServiceEvents> {
  readonly #opts: B2buaServiceOptions;
  /** What every CallSession needs from the service: one object shared by all of them. */
  readonly #sessionContext: CallSessionContext;
  readonly #sessions = new Map<string, CallSession>();
  #accepting = true;
  #drainWaiters: Array<() => void> = [];
  readonly #counters = { received: 0, admitted: 0, refused: 0 };

  constructor(options: B2buaServiceOptions) {
    super();
    this.#opts = options;
    this.#sessionContext = {
      srf: options.srf,
      media: options.media,
      kamailioUri: options.kamailioUri,
      instance: options.instance,
      noAnswerTimeoutMs: options.noAnswerTimeoutMs,
      sessionTimer: options.sessionTimer ?? { expires: 0, minSE: RFC_MIN_SE },
      dialPlan: options.dialPlan,
      logger: options.logger,
    };
  }

  /** Starts taking INVITEs from the drachtio server. */
  attach(): void {
    this.#opts.srf.invite((req, res) => this.handleInvite(req, res));
  }

  get accepting(): boolean {
    return this.#accepting;
  }

  get sessions(): ReadonlyMap<string, CallSession> {
    return this.#sessions;
  }

  get counters(): Readonly<{ received: number; admitted: number; refused: number }> {
    return { ...this.#counters };
  }

  handleInvite(req: SrfRequest, res: SrfResponse): void {
    this.#counters.received++;
    coalesceWrites(socketOf(req));
    const log = this.#opts.logger;
    const refuse = (why: AdmissionRefusal, status: number, reason: string, headers: Record<string, string> = {}): void => {
      this.#counters.refused++;
      // Under overload a line per refused call would be more work at the worst moment: the guard
      // logs the start and the end of each episode, the metrics count the refusals.
      log[why === 'overload' ? 'debug' : 'info']({ why, status, callId: req.get('Call-ID'), uri: req.uri }, 'INVITE refused');
      this.emit('refused', why, req);
      sendResponse(res, status, reason, { headers }).catch((err: unknown) => log.warn({ err: (err as Error).message }, 'could not send the refusal'));
    };
    const retryAfter = { 'Retry-After': String(this.#opts.retryAfterSec) };
    if (!this.#accepting) return refuse('shutting-down', 503, 'Service Unavailable', retryAfter);
    // Our own B legs come back through Kamailio only if its trust rule failed: never bridge twice.
    if (req.has(HEADER_FROM_APP)) return refuse('loop', 482, 'Loop Detected');
    const callee = userOf(req.uri);
    const plan = this.#opts.dialPlan.classify(callee);
    switch (plan) {
      case 'match':
        break;
      case 'incomplete':
        return refuse('incomplete', 484, 'Address Incomplete');
      case 'no-match':
        return refuse('not-in-dial-plan', 404, 'Not Found');
      default: {
        const never: never = plan;
        throw new Error(`unexpected dial plan result ${String(never)}`);
      }
    }
    if (this.#opts.overload?.admit()) {
      return refuse('overload', 503, 'Service Unavailable', {
        ...retryAfter,
        // The figures go to the log and the metrics, not to phones.
        Warning: '399 b2bua "overloaded"',
      });
    }
    const caller = userOf(req.getParsedHeader('From').uri);
    const slot = this.#opts.limits.acquire([caller, callee]);
    if (!slot.ok) {
      const r = slot.refusal;
      return refuse(r.limit === 'global' ? 'limit-global' : 'limit-extension', 503, 'Service Unavailable', {
        ...retryAfter,
        Warning: r.limit === 'global' ? '399 b2bua "call limit reached"' : `399 b2bua "call limit reached for ${r.extension}"`,
      });
    }
    let session: CallSession;
    try {
      session = new CallSession(this.#sessionContext, req, res, callee);
    } catch (err) {
      slot.release();
      log.warn({ err: (err as Error).message, callId: req.get('Call-ID') }, 'INVITE could not be taken');
      sendResponse(res, 400, 'Bad Request').catch(() => undefined);
      return;
    }
    this.#counters.admitted++;
    this.#track(session, slot.release);
    this.emit('session', session);
    void session.run();
  }

  /**
   * Keeps a session in the registry until it ends. Its own scope on purpose: a listener created
   * in handleInvite would share that function's closure context, and with it the INVITE and its
   * response object, for the whole life of the call.
   */
  #track(session: CallSession, release: () => void): void {
    this.#sessions.set(session.id, session);
    // 'end' comes once: a plain listener (no once-wrapper) for the life of the call.
    session.on('end', (summary) => {
      release();
      this.#sessions.delete(summary.id);
      this.emit('call-end', summary);
      if (this.#sessions.size === 0) this.#notifyDrained();
    });
  }

  /** Stops taking new calls: INVITEs get 503 with Retry-After from now on. */
  stopAccepting(): void {
    this.#accepting = false;
  }

  /** Resolves when no call is in progress. */
  idle(): Promise<void> {
    if (this.#sessions.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  #notifyDrained(): void {
    const waiters = this.#drainWaiters;
    this.#drainWaiters = [];
    for (const w of waiters) w();
  }

  /**
   * Graceful shutdown: refuse new calls, wait up to `timeoutMs` for the calls in progress to end,
   * then hang up what is left. Resolves with the number of calls that had to be hung up.
   */
  async drain(timeoutMs: number): Promise<number> {
    this.stopAccepting();
    const log = this.#opts.logger;
    if (this.#sessions.size > 0) log.info({ calls: this.#sessions.size, timeoutMs }, 'draining: waiting for calls in progress');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.idle().then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!timedOut) return 0;
    const n = await this.hangupAll('system');
    // Ringing calls end when their CANCEL is answered: give them a moment to release their media.
    await Promise.race([this.idle(), new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
    return n;
  }

  /** Hangs up every call in progress; resolves with how many there were. */
  async hangupAll(by: 'system' | 'operator'): Promise<number> {
    const sessions = [...this.#sessions.values()];
    await Promise.all(sessions.map((s) => s.hangup(by)));
    return sessions.length;
  }

  /** The drachtio connection dropped: no signalling is possible on the calls in progress. */
  async abandonAll(): Promise<number> {
    const sessions = [...this.#sessions.values()];
    await Promise.all(sessions.map((s) => s.abandon()));
    return sessions.length;
  }
}
