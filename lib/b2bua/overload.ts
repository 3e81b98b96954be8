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
 * The trigger is a count of old requests, not the age of the oldest: at least `requests` of them
 * must have waited `waitMs` or longer. A lost datagram makes one request old (it waits for its
 * retransmission, 500 ms; a few when a burst overflowed RTPEngine's socket), a backlog makes all
 * of them old. Each new call is checked on its own, with no hysteresis: as the backlog drains
 * below the limit calls are taken again, so under sustained overload the B2BUA takes calls about
 * as fast as it completes them, with the replies' queue held near `waitMs` (within the timeout).
 * Refusing until the queue had drained to half the limit took fewer calls: at 400 calls/s
 * offered, beyond the ~350-375 the machine sustained, it completed 223-237 calls/s, against 279
 * judged call by call. An episode, for the log and `overloaded`, ends once no call has been refused
 * for EPISODE_END_MS.
 */
import type { Logger } from 'pino';
import type { MediaBacklog } from '../media/media-anchor';

export interface OverloadLimits {
  /** How many requests (OVERLOAD_MEDIA_REQUESTS)... */
  readonly requests: number;
  /** ...have waited at least this many ms (OVERLOAD_MEDIA_WAIT_MS); 0 turns protection off. */
  readonly waitMs: number;
}

/** How often, during an episode, the backlog is looked at to tell when it has ended. */
const CLEAR_CHECK_MS = 250;
/** An episode ends when the backlog has stayed below the limit this long. */
const EPISODE_END_MS = 1000;

export class OverloadGuard {
  readonly limits: OverloadLimits;
  /** The media backlog, with the wait of the rank-th oldest request. */
  readonly #backlog: (rank: number) => MediaBacklog;
  readonly #log: Logger;
  readonly #now: () => number;
  /** Since when the episode in progress (undefined: none) refuses calls, and when it last did. */
  #since: number | undefined;
  #lastOverAt = 0;
  #refusedNow = 0;
  #refused = 0;
  #episodes = 0;
  #clearCheck: NodeJS.Timeout | undefined;

  constructor(backlog: (rank: number) => MediaBacklog, limits: OverloadLimits, logger: Logger, now: () => number = Date.now) {
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

  /** Whether an overload episode is in progress (calls refused within the last second). */
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
    const backlog = this.#backlog(this.limits.requests);
    if (!this.#over(backlog)) return undefined;
    this.#lastOverAt = this.#now();
    if (this.#since === undefined) this.#enter(backlog);
    this.#refusedNow++;
    this.#refused++;
    return backlog;
  }

  /** Stops the episode check (at shutdown); the guard still answers admit(). */
  close(): void {
    clearInterval(this.#clearCheck);
    this.#clearCheck = undefined;
  }

  #over(backlog: MediaBacklog): boolean {
    return backlog.requests >= this.limits.requests && backlog.rankWaitMs >= this.limits.waitMs;
  }

  /** During an episode: has the backlog stayed below the limit long enough to call it over? */
  #check(): void {
    const backlog = this.#backlog(this.limits.requests);
    if (this.#over(backlog)) this.#lastOverAt = this.#now();
    else if (this.#now() - this.#lastOverAt >= EPISODE_END_MS) this.#leave(backlog);
  }

  #enter(backlog: MediaBacklog): void {
    this.#since = this.#now();
    this.#refusedNow = 0;
    this.#episodes++;
    this.#log.warn(
      { waiting: backlog.requests, oldestWaitMs: backlog.oldestWaitMs, limits: this.limits },
      'overloaded: the media server\'s replies are queueing; new calls get 503 while they do',
    );
    // Calls may stop coming: the end of the episode is seen without them.
    this.#clearCheck = setInterval(() => this.#check(), CLEAR_CHECK_MS);
    this.#clearCheck.unref();
  }

  #leave(backlog: MediaBacklog): void {
    const since = this.#since ?? this.#now();
    this.#since = undefined;
    this.close();
    this.#log.info(
      { refused: this.#refusedNow, forMs: this.#now() - since, waiting: backlog.requests, oldestWaitMs: backlog.oldestWaitMs },
      'overload over: the media server\'s replies no longer queue',
    );
  }
}
