import type { Clock, TimerHandle } from '../../lib/engine/transaction/timers';

/** A controlled clock for unit tests of timer-driven state machines: time moves only by `tick`. */
export class FakeClock implements Clock {
  #now = 0;
  #seq = 0;
  readonly #pending = new Map<number, { at: number; fn: () => void }>();

  now(): number {
    return this.#now;
  }

  schedule(ms: number, fn: () => void): TimerHandle {
    const id = ++this.#seq;
    this.#pending.set(id, { at: this.#now + ms, fn });
    return { cancel: () => this.#pending.delete(id) };
  }

  /** Advances time, firing due timers in time order (timers they schedule fire too, if due). */
  tick(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.#pending) if (e[1].at <= end && (!next || e[1].at < next[1].at || (e[1].at === next[1].at && e[0] < next[0]))) next = e;
      if (!next) break;
      this.#pending.delete(next[0]);
      this.#now = next[1].at;
      next[1].fn();
    }
    this.#now = end;
  }

  get pending(): number {
    return this.#pending.size;
  }
}
