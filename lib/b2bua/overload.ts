/**
 * Overload protection: new calls are refused (503 + Retry-After) while the media server's
 * requests wait too long for their replies.
 *
 * Why this signal: every call sends RTPEngine an offer, an answer and a delete, and waits for
 * each reply. When this process (or RTPEngine) falls behind, replies queue in the control socket
 * and the requests behind them wait longer and longer, until they pass RTPENGINE_TIMEOUT_MS and
 * fail their calls. Each failure then adds work (a warning, a 503, a delete that times out too),
 * which slows the replies further: a congestion collapse, measured on the benchmark machine at
 * 475 calls/s, where thousands of calls failed after a queue of 8 MB had built up in the socket.
 * Refusing new calls early keeps the calls already taken inside their timeouts.
 *
 * The trigger needs both a count and an age, so that one lost datagram (its request waits for
 * its retransmission, 500 ms) does not refuse calls: the backlog must hold at least `requests`
 * requests and its oldest must have waited at least `waitMs`. It clears, with hysteresis, when
 * either falls below half of its limit.
 */
import type { Logger } from 'pino';
import type { MediaBacklog } from '../media/media-anchor';

export interface OverloadLimits {
  /** Requests waiting at least (OVERLOAD_MEDIA_REQUESTS). */
  readonly requests: number;
  /** The oldest has waited at least this many ms (OVERLOAD_MEDIA_WAIT_MS); 0 turns protection off. */
  readonly waitMs: number;
}

/** How often, once overloaded, the backlog is looked at to tell when it has cleared. */
const CLEAR_CHECK_MS = 250;

export class OverloadGuard {
  readonly limits: OverloadLimits;
  readonly #backlog: () => MediaBacklog;
  readonly #log: Logger;
  readonly #now: () => number;
  /** Since when we refuse calls (undefined: we take them). */
  #since: number | undefined;
  #refusedNow = 0;
  #refused = 0;
  #episodes = 0;
  #clearCheck: NodeJS.Timeout | undefined;

  constructor(backlog: () => MediaBacklog, limits: OverloadLimits, logger: Logger, now: () => number = Date.now) {
    if (!Number.isInteger(limits.requests) || limits.requests < 1) throw new RangeError(`OverloadGuard: requests must be an integer >= 1, got ${limits.requests}`);
    if (!Number.isInteger(limits.waitMs) || limits.waitMs < 0) throw new RangeError(`OverloadGuard: waitMs must be an integer >= 0, got ${limits.waitMs}`);
    this.limits = limits;
    this.#backlog = backlog;
    this.#log = logger;
    this.#now = now;
  }

  get enabled(): boolean {
    return this.limits.waitMs > 0;
  }

  /** Whether new calls are refused now. */
  get overloaded(): boolean {
    return this.#since !== undefined;
  }

  /** Calls refused since start, and the times we started refusing. */
  get counters(): Readonly<{ refused: number; episodes: number }> {
    return { refused: this.#refused, episodes: this.#episodes };
  }

  /**
   * Asked for each new call: the backlog that refuses it, or undefined when it may be taken.
   * A refusal is counted here.
   */
  admit(): MediaBacklog | undefined {
    if (!this.enabled) return undefined;
    const backlog = this.#update();
    if (this.#since === undefined) return undefined;
    this.#refusedNow++;
    this.#refused++;
    return backlog;
  }

  /** Stops the clear check (at shutdown); the guard still answers admit(). */
  close(): void {
    clearInterval(this.#clearCheck);
    this.#clearCheck = undefined;
  }

  #update(): MediaBacklog {
    const backlog = this.#backlog();
    const { requests, waitMs } = this.limits;
    if (this.#since === undefined) {
      if (backlog.requests >= requests && backlog.oldestWaitMs >= waitMs) this.#enter(backlog);
    } else if (backlog.requests < requests / 2 || backlog.oldestWaitMs < waitMs / 2) {
      this.#leave(backlog);
    }
    return backlog;
  }

  #enter(backlog: MediaBacklog): void {
    this.#since = this.#now();
    this.#refusedNow = 0;
    this.#episodes++;
    this.#log.warn(
      { waiting: backlog.requests, oldestWaitMs: backlog.oldestWaitMs, limits: this.limits },
      'overloaded: the media server\'s replies are queueing; new calls get 503 until the backlog clears',
    );
    // Calls may stop coming while we refuse them: the end of the episode is seen without them.
    this.#clearCheck = setInterval(() => this.#update(), CLEAR_CHECK_MS);
    this.#clearCheck.unref();
  }

  #leave(backlog: MediaBacklog): void {
    const since = this.#since ?? this.#now();
    this.#since = undefined;
    this.close();
    this.#log.info(
      { refused: this.#refusedNow, forMs: this.#now() - since, waiting: backlog.requests, oldestWaitMs: backlog.oldestWaitMs },
      'overload over: taking new calls again',
    );
  }
}
