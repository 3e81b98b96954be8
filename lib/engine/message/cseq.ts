/**
 * CSeq (RFC 3261 section 20.16): `CSeq = 1*DIGIT LWS Method`. The sequence number must be
 * below 2**31 (RFC 3261 section 8.1.1.5); leading zeros are allowed (RFC 4475 section 3.1.1.1).
 */
import { TOKEN, isDigit, isWsp, scanRun, skipWsp } from './lex';

export interface CSeq {
  seq: number;
  method: string;
}

const MAX_SEQ = 0x7fffffff;

/** Parses a CSeq value; undefined when malformed or when the number is out of 0..2**31-1. */
export function parseCSeq(s: string): CSeq | undefined {
  const n = s.length;
  let i = skipWsp(s, 0);
  const ds = i;
  let seq = 0;
  while (i < n && isDigit(s.charCodeAt(i))) {
    seq = seq * 10 + (s.charCodeAt(i) - 0x30);
    if (seq > MAX_SEQ) return undefined;
    i++;
  }
  if (i === ds || i >= n || !isWsp(s.charCodeAt(i))) return undefined;
  i = skipWsp(s, i);
  const ms = i;
  i = scanRun(s, i, TOKEN);
  if (i === ms || skipWsp(s, i) !== n) return undefined;
  return { seq, method: s.slice(ms, i) };
}

/** Formats a CSeq value. */
export function formatCSeq(c: CSeq): string {
  return c.seq + ' ' + c.method;
}
