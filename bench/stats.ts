/** p50 / p95 / p99 / max of a set of samples (the nearest-rank method), in their own unit. */
export interface Percentiles {
  readonly samples: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly max: number;
}

/** Nearest-rank percentiles of `values`; NaN when there are none. */
export function percentiles(values: readonly number[]): Percentiles {
  const v = [...values].sort((a, b) => a - b);
  const at = (q: number): number => (v.length === 0 ? NaN : (v[Math.min(v.length - 1, Math.max(0, Math.ceil(q * v.length) - 1))] as number));
  return { samples: v.length, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: v.length ? (v[v.length - 1] as number) : NaN };
}
