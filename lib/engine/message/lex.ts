/**
 * Lexical building blocks of the SIP grammar (RFC 3261 section 25.1): character classes,
 * linear white space, tokens, quoted strings and `;name=value` parameter lists.
 *
 * Everything here scans a string by index and allocates only what the caller asks for, so the
 * same code serves both the typed parsers (which collect parameters into a Map) and the
 * per-message validity checks of the parser (which collect nothing).
 */

/** Builds a 128-entry membership table for ASCII characters. */
function table(chars: string, alnum: boolean): Uint8Array {
  const t = new Uint8Array(128);
  if (alnum) {
    for (let c = 0x30; c <= 0x39; c++) t[c] = 1;
    for (let c = 0x41; c <= 0x5a; c++) t[c] = 1;
    for (let c = 0x61; c <= 0x7a; c++) t[c] = 1;
  }
  for (let i = 0; i < chars.length; i++) t[chars.charCodeAt(i)] = 1;
  return t;
}

/** token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~") */
export const TOKEN = table("-.!%*_+`'~", true);
/** scheme characters after the first ALPHA: ALPHA / DIGIT / "+" / "-" / "." (RFC 3986 section 3.1) */
export const SCHEME = table('+-.', true);
/*
 * The URI tables below include `%` so that a run covers `escaped`; `escapesOk` then checks that
 * each `%` is followed by two hex digits.
 */
/** user = 1*( unreserved / escaped / user-unreserved ) (RFC 3261 section 25.1) */
export const USER = table("-_.!~*'()&=+$,;?/%", true);
/** password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," ) */
export const PASSWORD = table("-_.!~*'()&=+$,%", true);
/** paramchar = param-unreserved / unreserved / escaped (uri-parameter names and values) */
export const PARAMCHAR = table("-_.!~*'()[]/:&+$%", true);
/** hname / hvalue = hnv-unreserved / unreserved / escaped (URI headers, after `?`) */
export const HEADERCHAR = table("-_.!~*'()[]/?:+$%", true);
/** hostname characters; `_` is tolerated because real deployments use it */
export const HOSTCHAR = table('-._', true);
/** a generic-param value: token, host (IPv4, IPv6 with or without brackets) */
const GENVALUE = table("-.!%*_+`'~:[]", true);

export function isWsp(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

/** Skips SP and HTAB (folded line breaks have already been turned into SP). */
export function skipWsp(s: string, i: number): number {
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c !== 0x20 && c !== 0x09) break;
    i++;
  }
  return i;
}

/** End index of a run of characters of table `t` starting at `i` (== i when none). */
export function scanRun(s: string, i: number, t: Uint8Array): number {
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c >= 128 || t[c] !== 1) break;
    i++;
  }
  return i;
}

/** True when the whole of `s` is a token (RFC 3261 section 25.1); the empty string is not. */
export function isToken(s: string): boolean {
  return s.length > 0 && scanRun(s, 0, TOKEN) === s.length;
}

/**
 * Scans a quoted-string whose opening DQUOTE is at `i` (RFC 3261 section 25.1: qdtext and
 * quoted-pair). Returns the index just past the closing DQUOTE, or -1 when it is unterminated
 * or holds a raw control character.
 */
export function scanQuoted(s: string, i: number): number {
  i++;
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c === 0x22) return i + 1;
    if (c === 0x5c) {
      // quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
      if (i + 1 >= s.length) return -1;
      const n = s.charCodeAt(i + 1);
      if (n === 0x0a || n === 0x0d || n > 0x7f) return -1;
      i += 2;
      continue;
    }
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return -1;
    i++;
  }
  return -1;
}

/** The text of a quoted-string (including its quotes) with quoted-pairs resolved. */
export function unquote(q: string): string {
  const inner = q.slice(1, -1);
  if (inner.indexOf('\\') < 0) return inner;
  let out = '';
  for (let i = 0; i < inner.length; i++) {
    const c = inner[i]!;
    if (c === '\\' && i + 1 < inner.length) {
      out += inner[i + 1];
      i++;
    } else out += c;
  }
  return out;
}

/** Wraps text in DQUOTEs, escaping `"` and `\` as quoted-pairs. */
export function quote(text: string): string {
  return '"' + text.replace(/["\\]/g, (m) => '\\' + m) + '"';
}

/** True when `%` escapes in s[from, to) are each followed by two hex digits (RFC 3261 `escaped`). */
export function escapesOk(s: string, from: number, to: number): boolean {
  for (let i = s.indexOf('%', from); i >= 0 && i < to; i = s.indexOf('%', i + 3)) {
    if (i + 2 >= to) return false;
    if (!isHex(s.charCodeAt(i + 1)) || !isHex(s.charCodeAt(i + 2))) return false;
  }
  return true;
}

export function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

export function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/**
 * Scans `*( SEMI generic-param )` from `i` to the end of `s` (RFC 3261 section 25.1:
 * generic-param = token [ EQUAL gen-value ], gen-value = token / host / quoted-string),
 * allowing LWS around `;` and `=`. Names are stored lower-cased (parameter names are
 * case-insensitive, RFC 3261 section 7.3.1); values are kept as written, quoted strings with
 * their quotes. With `into` undefined nothing is allocated. Returns false on a syntax error
 * (an empty name such as `;;`, a missing value after `=`, stray text).
 */
export function scanParams(s: string, i: number, into: Map<string, string | null> | undefined): boolean {
  const n = s.length;
  for (;;) {
    i = skipWsp(s, i);
    if (i >= n) return true;
    if (s.charCodeAt(i) !== 0x3b /* ; */) return false;
    i = skipWsp(s, i + 1);
    const nameStart = i;
    i = scanRun(s, i, TOKEN);
    if (i === nameStart) return false;
    const nameEnd = i;
    i = skipWsp(s, i);
    let value: string | null = null;
    if (i < n && s.charCodeAt(i) === 0x3d /* = */) {
      i = skipWsp(s, i + 1);
      const vs = i;
      if (i < n && s.charCodeAt(i) === 0x22) {
        i = scanQuoted(s, i);
        if (i < 0) return false;
      } else {
        i = scanRun(s, i, GENVALUE);
        if (i === vs) return false;
      }
      if (into !== undefined) value = s.slice(vs, i);
    }
    if (into !== undefined) {
      const name = s.slice(nameStart, nameEnd).toLowerCase();
      if (!into.has(name)) into.set(name, value);
    }
  }
}

/** Formats a parameter map as `;name=value;flag` (values written back as stored). */
export function formatParams(params: ReadonlyMap<string, string | null>): string {
  let out = '';
  for (const [k, v] of params) out += v === null ? ';' + k : ';' + k + '=' + v;
  return out;
}
