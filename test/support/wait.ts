// Waiting for a condition with a deadline, instead of sleeping a fixed time.

export interface WaitUntilOptions {
  /** Give up after this long (default 5000 ms). */
  timeoutMs?: number;
  /** Time between probes (default 25 ms). */
  intervalMs?: number;
  /** Names the condition in the timeout error. */
  description?: string;
}

export class WaitTimeoutError extends Error {
  override readonly name = 'WaitTimeoutError';
  readonly code = 'E_WAIT_TIMEOUT';
  readonly lastValue: unknown;
  constructor(message: string, lastValue: unknown) {
    super(message);
    this.lastValue = lastValue;
  }
}

function show(value: unknown): string {
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/**
 * Calls `probe` until `accept(value)` holds and returns that value. A probe that throws counts as
 * "not yet" (the error is reported if the deadline passes). Rejects with WaitTimeoutError naming
 * the condition and the last value seen.
 */
export async function waitUntil<T>(
  probe: () => T | Promise<T>,
  accept: (value: T) => boolean,
  options: WaitUntilOptions = {},
): Promise<T> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const intervalMs = options.intervalMs ?? 25;
  const deadline = Date.now() + timeoutMs;
  let last: unknown = undefined;
  for (;;) {
    try {
      const value = await probe();
      last = value;
      if (accept(value)) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) {
      throw new WaitTimeoutError(
        `timed out after ${timeoutMs} ms waiting for ${options.description ?? 'a condition'}; last value: ${show(last)}`,
        last,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** Settles like `promise`, or rejects with WaitTimeoutError after timeoutMs. */
export function withTimeout<T>(promise: Promise<T>, timeoutMs: number, description: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new WaitTimeoutError(`timed out after ${timeoutMs} ms waiting for ${description}`, undefined)), timeoutMs);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

/** A promise with its resolve/reject exposed, for turning events into awaitables. */
export interface Deferred<T> {
  promise: Promise<T>;
  resolve(value: T): void;
  reject(err: Error): void;
  readonly settled: boolean;
}

export function deferred<T>(): Deferred<T> {
  let resolveFn: (value: T) => void = () => undefined;
  let rejectFn: (err: Error) => void = () => undefined;
  let settled = false;
  const promise = new Promise<T>((resolve, reject) => {
    resolveFn = resolve;
    rejectFn = reject;
  });
  // A deferred nobody awaits must not become an unhandled rejection.
  promise.catch(() => undefined);
  return {
    promise,
    resolve(value: T) {
      if (settled) return;
      settled = true;
      resolveFn(value);
    },
    reject(err: Error) {
      if (settled) return;
      settled = true;
      rejectFn(err);
    },
    get settled() {
      return settled;
    },
  };
}
