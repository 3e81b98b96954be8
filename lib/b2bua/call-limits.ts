/**
 * Concurrent call limits: one global ceiling and one per extension, counting each call against
 * both its caller and its callee. `acquire()` either takes a slot (and returns its release,
 * which is idempotent) or says which limit was hit; the caller then answers 503 with Retry-After.
 */
export interface CallLimitsOptions {
  readonly maxCalls: number;
  readonly maxCallsPerExtension: number;
}

export type LimitRefusal = { readonly limit: 'global'; readonly current: number } | { readonly limit: 'extension'; readonly extension: string; readonly current: number };

export type Acquired = { readonly ok: true; readonly release: () => void } | { readonly ok: false; readonly refusal: LimitRefusal };

export class CallLimits {
  readonly maxCalls: number;
  readonly maxCallsPerExtension: number;
  #total = 0;
  #peak = 0;
  readonly #perExtension = new Map<string, number>();

  constructor(options: CallLimitsOptions) {
    this.maxCalls = options.maxCalls;
    this.maxCallsPerExtension = options.maxCallsPerExtension;
  }

  get current(): number {
    return this.#total;
  }

  get peak(): number {
    return this.#peak;
  }

  /** Calls in progress that involve `extension`, as caller or callee. */
  inUse(extension: string): number {
    return this.#perExtension.get(extension) ?? 0;
  }

  /** `extensions`: the call's parties that have extensions (caller may be absent, e.g. a trunk). */
  acquire(extensions: readonly string[]): Acquired {
    if (this.#total >= this.maxCalls) return { ok: false, refusal: { limit: 'global', current: this.#total } };
    const parties = [...new Set(extensions.filter((e) => e !== ''))];
    for (const ext of parties) {
      const n = this.inUse(ext);
      if (n >= this.maxCallsPerExtension) return { ok: false, refusal: { limit: 'extension', extension: ext, current: n } };
    }
    this.#total++;
    if (this.#total > this.#peak) this.#peak = this.#total;
    for (const ext of parties) this.#perExtension.set(ext, this.inUse(ext) + 1);
    let released = false;
    return {
      ok: true,
      release: () => {
        if (released) return;
        released = true;
        this.#total--;
        for (const ext of parties) {
          const n = this.inUse(ext) - 1;
          if (n <= 0) this.#perExtension.delete(ext);
          else this.#perExtension.set(ext, n);
        }
      },
    };
  }
}
