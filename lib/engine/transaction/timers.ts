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

/** Timers at or above this length go on the coarse wheel. */
const COARSE_FROM_MS = 1000;
/** The wheel's granularity: long timers fire up to this much late. */
const COARSE_STEP_MS = 250;

interface WheelEntry {
  fn: (() => void) | undefined;
}

/**
 * Long timers (Timer B, D, F, H, I, J, K, L, M: seconds, where a quarter second of slack does
 * not matter) share one wake-up per 250 ms slot instead of one each: at a steady call rate every
 * call would otherwise wake the process two or three extra times. Retransmission timers stay
 * on precise timeouts (and are usually cancelled before they fire).
 */
class CoarseWheel {
  readonly #slots = new Map<number, WheelEntry[]>();
  #timer: NodeJS.Timeout | undefined;
  #armedFor = Infinity;

  schedule(ms: number, fn: () => void): TimerHandle {
    const slot = Math.ceil((Date.now() + ms) / COARSE_STEP_MS) * COARSE_STEP_MS;
    const entry: WheelEntry = { fn };
    const list = this.#slots.get(slot);
    if (list) list.push(entry);
    else this.#slots.set(slot, [entry]);
    if (slot < this.#armedFor) this.#arm(slot);
    return { cancel: () => (entry.fn = undefined) };
  }

  #arm(slot: number): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#armedFor = slot;
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, slot - Date.now()));
  }

  #fire(): void {
    this.#timer = undefined;
    this.#armedFor = Infinity;
    const now = Date.now();
    let next = Infinity;
    for (const [slot, list] of this.#slots) {
      if (slot > now) {
        if (slot < next) next = slot;
        continue;
      }
      this.#slots.delete(slot);
      for (const e of list) {
        const fn = e.fn;
        e.fn = undefined;
        fn?.();
      }
    }
    // entries added while firing may have armed the wheel already
    if (next < this.#armedFor) this.#arm(next);
  }
}

const wheel = new CoarseWheel();

export const realClock: Clock = {
  now: () => Date.now(),
  schedule(ms, fn) {
    if (ms >= COARSE_FROM_MS) return wheel.schedule(ms, fn);
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
