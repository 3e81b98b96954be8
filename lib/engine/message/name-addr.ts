/**
 * name-addr / addr-spec values of From, To, Contact, Route and friends (RFC 3261 sections
 * 20.10, 20.20, 20.39 and the grammar in section 25.1):
 *
 *   name-addr = [ display-name ] LAQUOT addr-spec RAQUOT
 *   display-name = *(token LWS) / quoted-string
 *
 * followed by `*( SEMI generic-param )`. When the URI is not in angle brackets every `;`
 * parameter belongs to the header, not to the URI (RFC 3261 section 20.10).
 */
import { SCHEME, TOKEN, formatParams, isToken, quote, scanParams, scanQuoted, scanRun, skipWsp, unquote } from './lex';

export interface NameAddr {
  /** display name: a quoted-string's text with quoted-pairs resolved, or the tokens as written */
  display?: string;
  /** the URI as written, without angle brackets */
  uri: string;
  /** header parameters (tag, expires, q...): names lower-cased, values as written, null when valueless */
  params: Map<string, string | null>;
}

function lessThan(i: number, to: number): boolean {
  return i >= 0 && i < to;
}

/**
 * True when s[from, to) looks like an absolute URI: a scheme (RFC 3986 section 3.1), a colon,
 * something after it, and no white space, `<`, `>` or DQUOTE. The URI's own
 * grammar is its scheme's business (see `parseUri`); any scheme is accepted here, as RFC 4475
 * section 3.3.4 requires.
 */
function uriShapeOk(s: string, from: number, to: number): boolean {
  if (to <= from) return false;
  const c0 = s.charCodeAt(from) | 0x20;
  if (c0 < 0x61 || c0 > 0x7a) return false;
  const colon = scanRun(s, from + 1, SCHEME);
  if (colon >= to - 1 || s.charCodeAt(colon) !== 0x3a) return false;
  // native searches rather than a loop over every character: this runs for each To/From/Contact
  return !(
    lessThan(s.indexOf(' ', colon), to) ||
    lessThan(s.indexOf('\t', colon), to) ||
    lessThan(s.indexOf('<', colon), to) ||
    lessThan(s.indexOf('>', colon), to) ||
    lessThan(s.indexOf('"', colon), to)
  );
}

/** Parses a value into `out` (or only validates it when `out` is undefined). */
function scanNameAddr(s: string, out: NameAddr | undefined): boolean {
  const n = s.length;
  let i = skipWsp(s, 0);
  if (i >= n) return false;
  let c = s.charCodeAt(i);
  let display: string | undefined;
  if (c === 0x22 /* " */) {
    const q = scanQuoted(s, i);
    if (q < 0) return false;
    if (out !== undefined) display = unquote(s.slice(i, q));
    i = skipWsp(s, q);
    if (i >= n || s.charCodeAt(i) !== 0x3c) return false;
  } else if (c !== 0x3c /* < */) {
    // either display-name tokens followed by `<`, or a bare addr-spec
    let j = i;
    for (;;) {
      const e = scanRun(s, j, TOKEN);
      if (e === j) break;
      j = skipWsp(s, e);
    }
    if (j < n && s.charCodeAt(j) === 0x3c && j > i) {
      if (out !== undefined) display = s.slice(i, j).trimEnd();
      i = j;
    } else {
      // addr-spec: the URI ends at the first `;`; it must not hold `,` or `?` (RFC 3261 section 20)
      let end = s.indexOf(';', i);
      if (end < 0) end = n;
      let ue = end;
      while (ue > i && (s.charCodeAt(ue - 1) === 0x20 || s.charCodeAt(ue - 1) === 0x09)) ue--;
      if (!uriShapeOk(s, i, ue)) return false;
      for (let k = i; k < ue; k++) {
        c = s.charCodeAt(k);
        if (c === 0x2c || c === 0x3f) return false;
      }
      if (out !== undefined) out.uri = s.slice(i, ue);
      return scanParams(s, end, out?.params);
    }
  }
  // at `<`: the addr-spec runs to `>` with no white space inside (RFC 4475 section 3.1.2.14)
  const close = s.indexOf('>', i + 1);
  if (close < 0 || !uriShapeOk(s, i + 1, close)) return false;
  if (out !== undefined) {
    out.uri = s.slice(i + 1, close);
    if (display !== undefined && display.length > 0) out.display = display;
  }
  return scanParams(s, close + 1, out?.params);
}

/** Parses `"Display" <uri>;p=v`, `Display <uri>`, `<uri>` or a bare `uri;p=v`; undefined when malformed. */
export function parseNameAddr(s: string): NameAddr | undefined {
  const out: NameAddr = { uri: '', params: new Map() };
  return scanNameAddr(s, out) ? out : undefined;
}

/** Validates a name-addr / addr-spec value without allocating (used on every To/From/Contact). */
export function isValidNameAddr(s: string): boolean {
  return scanNameAddr(s, undefined);
}

/**
 * Formats a NameAddr, always with angle brackets (safe whatever the URI holds). A display name
 * made only of tokens is written bare, anything else as a quoted-string.
 */
export function formatNameAddr(n: NameAddr): string {
  let s = '';
  if (n.display !== undefined && n.display.length > 0) {
    const bare = n.display.split(' ').every((w) => isToken(w));
    s = (bare ? n.display : quote(n.display)) + ' ';
  }
  return s + '<' + n.uri + '>' + formatParams(n.params);
}

/**
 * The `tag` parameter of a From/To value (RFC 3261 section 19.3), or undefined. Fast path: the
 * header parameters start after the `>` closing the URI (name-addr, with a quoted display name
 * skipped over) or at the first `;` (addr-spec), and are scanned in place; a quoted parameter
 * value, or anything the fast path cannot place, goes to the full parser.
 */
export function getTag(headerValue: string): string | undefined {
  const s = headerValue;
  let i: number;
  if (s.indexOf('"') >= 0) {
    const end = scanQuoted(s, s.indexOf('"'));
    const gt = end < 0 ? -1 : s.indexOf('>', end);
    if (gt < 0 || s.indexOf('"', gt) >= 0) return tagOf(parseNameAddr(s));
    i = gt + 1;
  } else {
    const gt = s.lastIndexOf('>');
    i = gt >= 0 ? gt + 1 : s.indexOf(';');
    if (i < 0) return undefined;
  }
  const n = s.length;
  for (;;) {
    i = s.indexOf(';', i);
    if (i < 0) return undefined;
    i = skipWsp(s, i + 1);
    if (
      i + 3 <= n &&
      (s.charCodeAt(i) | 0x20) === 0x74 &&
      (s.charCodeAt(i + 1) | 0x20) === 0x61 &&
      (s.charCodeAt(i + 2) | 0x20) === 0x67
    ) {
      let j = skipWsp(s, i + 3);
      if (j < n && s.charCodeAt(j) === 0x3d) {
        j = skipWsp(s, j + 1);
        const e = scanRun(s, j, TOKEN);
        return e > j ? s.slice(j, e) : undefined;
      }
    }
  }
}

function tagOf(na: NameAddr | undefined): string | undefined {
  const t = na?.params.get('tag');
  return t === null || t === undefined ? undefined : t;
}
