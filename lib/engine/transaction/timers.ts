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

/** One scheduled callback; it is its own handle, so scheduling allocates one object. */
class Entry implements TimerHandle {
  constructor(
    public fn: (() => void) | undefined,
    /** when it is due, on the owner's clock */
    readonly due: number,
  ) {}

  cancel(): void {
    this.fn = undefined;
  }

  run(): void {
    const fn = this.fn;
    this.fn = undefined;
    fn?.();
  }
}

/**
 * Long timers (Timer B, D, F, H, I, J, K, L, M: seconds, where a quarter second of slack does
 * not matter) share one wake-up per 250 ms slot instead of one each: at a steady call rate every
 * call would otherwise wake the process two or three extra times.
 */
class CoarseWheel {
  readonly #slots = new Map<number, Entry[]>();
  #timer: NodeJS.Timeout | undefined;
  #armedFor = Infinity;

  schedule(ms: number, fn: () => void): TimerHandle {
    const slot = Math.ceil((Date.now() + ms) / COARSE_STEP_MS) * COARSE_STEP_MS;
    const entry = new Entry(fn, slot);
    const list = this.#slots.get(slot);
    if (list) list.push(entry);
    else this.#slots.set(slot, [entry]);
    if (slot < this.#armedFor) this.#arm(slot);
    return entry;
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
      for (const e of list) e.run();
    }
    // entries added while firing may have armed the wheel already
    if (next < this.#armedFor) this.#arm(next);
  }
}

/**
 * Short timers of one length (the 200 ms before 100 Trying, Timers A, E and G at T1, the 2xx
 * retransmission) in arrival order: every entry of a queue has the same delay, so the queue is
 * sorted by due time and one Node timer, armed for the head, serves all of them. Most of these
 * timers are cancelled within milliseconds (the answer or the ACK came); a cancelled entry is
 * only marked, and dropped when the queue reaches it, so a call costs one small object per
 * timer instead of a Node timer set and cleared.
 */
class DelayQueue {
  #entries: Entry[] = [];
  #head = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(readonly ms: number) {}

  schedule(fn: () => void): TimerHandle {
    const entry = new Entry(fn, performance.now() + this.ms);
    this.#entries.push(entry);
    if (!this.#timer) this.#timer = setTimeout(() => this.#fire(), this.ms);
    return entry;
  }

  #fire(): void {
    this.#timer = undefined;
    // setTimeout counts whole milliseconds on the event loop's clock: allow for the rounding
    const now = performance.now() + 1;
    const entries = this.#entries;
    while (this.#head < entries.length) {
      const e = entries[this.#head]!;
      if (e.fn !== undefined && e.due > now) break;
      this.#head++;
      e.run();
    }
    // run() may have scheduled (and armed) again; drop what has been consumed
    if (this.#head === entries.length) {
      entries.length = 0;
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > entries.length) {
      this.#entries = entries.slice(this.#head);
      this.#head = 0;
    }
    if (!this.#timer && this.#head < this.#entries.length) {
      this.#timer = setTimeout(() => this.#fire(), Math.max(1, Math.ceil(this.#entries[this.#head]!.due - performance.now())));
    }
  }
}

const wheel = new CoarseWheel();
const queues = new Map<number, DelayQueue>();

/** Distinct short delays given a queue of their own (T1 multiples); others get a plain timer. */
const MAX_QUEUES = 32;

export const realClock: Clock = {
  now: () => Date.now(),
  schedule(ms, fn) {
    if (ms >= COARSE_FROM_MS) return wheel.schedule(ms, fn);
    let q = queues.get(ms);
    if (!q) {
      if (queues.size >= MAX_QUEUES) {
        const t = setTimeout(fn, ms);
        return { cancel: () => clearTimeout(t) };
      }
      q = new DelayQueue(ms);
      queues.set(ms, q);
    }
    return q.schedule(fn);
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
