/**
 * The extensions that may be dialled, as PBX-style patterns: `X` any digit, `Z` 1-9, `N` 2-9,
 * `[1-5]` or `[135]` a digit class, other digits literal. `6XXX,7[0-4]XX` allows 6000-6999 and
 * 7000-7499.
 *
 * `classify()` tells a complete match from a number that is the beginning of an allowed one
 * (484 Address Incomplete, RFC 3261 21.4.22) and from one that can never match (404).
 */
export type DialPlanResult = 'match' | 'incomplete' | 'no-match';

export class DialPlanError extends Error {
  override readonly name = 'DialPlanError';
  readonly code = 'ERR_DIAL_PLAN';
}

type DigitSet = ReadonlySet<string>;

const ALL_DIGITS = '0123456789';

function digitRange(from: string, to: string): string[] {
  const out: string[] = [];
  for (let c = from.charCodeAt(0); c <= to.charCodeAt(0); c++) out.push(String.fromCharCode(c));
  return out;
}

function compile(pattern: string): DigitSet[] {
  const sets: DigitSet[] = [];
  let i = 0;
  while (i < pattern.length) {
    const c = pattern[i] as string;
    if (c === 'X' || c === 'x') sets.push(new Set(ALL_DIGITS));
    else if (c === 'Z' || c === 'z') sets.push(new Set(digitRange('1', '9')));
    else if (c === 'N' || c === 'n') sets.push(new Set(digitRange('2', '9')));
    else if (c >= '0' && c <= '9') sets.push(new Set([c]));
    else if (c === '[') {
      const end = pattern.indexOf(']', i);
      if (end < 0) throw new DialPlanError(`"${pattern}": [ without ]`);
      const body = pattern.slice(i + 1, end);
      const set = new Set<string>();
      for (let j = 0; j < body.length; j++) {
        const d = body[j] as string;
        if (!/\d/.test(d)) throw new DialPlanError(`"${pattern}": "${d}" in a digit class`);
        if (body[j + 1] === '-') {
          const to = body[j + 2];
          if (to === undefined || !/\d/.test(to) || to < d) throw new DialPlanError(`"${pattern}": bad range in [${body}]`);
          for (const x of digitRange(d, to)) set.add(x);
          j += 2;
        } else set.add(d);
      }
      if (set.size === 0) throw new DialPlanError(`"${pattern}": empty digit class`);
      sets.push(set);
      i = end;
    } else throw new DialPlanError(`"${pattern}": unexpected "${c}" (use digits, X, Z, N, [..])`);
    i++;
  }
  if (sets.length === 0) throw new DialPlanError('empty pattern');
  return sets;
}

export class DialPlan {
  readonly patterns: readonly string[];
  readonly #compiled: DigitSet[][];

  /** `spec`: comma-separated patterns, e.g. "6XXX,7[0-4]XX". Throws DialPlanError on a bad one. */
  constructor(spec: string) {
    this.patterns = spec.split(',').map((p) => p.trim()).filter((p) => p !== '');
    if (this.patterns.length === 0) throw new DialPlanError('no patterns');
    this.#compiled = this.patterns.map(compile);
  }

  classify(number: string): DialPlanResult {
    if (!/^\d+$/.test(number)) return 'no-match';
    let incomplete = false;
    for (const sets of this.#compiled) {
      if (number.length > sets.length) continue;
      let ok = true;
      for (let i = 0; i < number.length && ok; i++) ok = (sets[i] as DigitSet).has(number[i] as string);
      if (!ok) continue;
      if (number.length === sets.length) return 'match';
      incomplete = true;
    }
    return incomplete ? 'incomplete' : 'no-match';
  }
}
