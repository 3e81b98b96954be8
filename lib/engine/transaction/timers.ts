/**
 * Transaction timers (RFC 3261 section 17 and table 4) behind a small clock interface, so the
 * state machines run on real time in the engine and on a controlled clock in unit tests.
 */

export interface TimerValues {
  /** RTT estimate, default 500 ms */
  readonly T1: number;
  /** maximum retransmit interval for non-INVITE requests and INVITE responses, default 4 s */
  readonly T2: number;
  /** maximum duration a message remains in the network, default 5 s */
  readonly T4: number;
}

export const DEFAULT_TIMERS: TimerValues = { T1: 500, T2: 4000, T4: 5000 };

export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  now(): number;
  schedule(ms: number, fn: () => void): TimerHandle;
}

export const realClock: Clock = {
  now: () => Date.now(),
  schedule(ms, fn) {
    const t = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(t) };
  },
};

/** A named, restartable timer that belongs to one transaction. */
export class NamedTimer {
  #handle: TimerHandle | undefined;
  constructor(
    readonly name: string,
    readonly clock: Clock,
  ) {}

  start(ms: number, fn: () => void): void {
    this.#handle?.cancel();
    this.#handle = this.clock.schedule(ms, () => {
      this.#handle = undefined;
      fn();
    });
  }

  get running(): boolean {
    return this.#handle !== undefined;
  }

  cancel(): void {
    this.#handle?.cancel();
    this.#handle = undefined;
  }
}
