/**
 * SIP, SIPS and tel URIs: RFC 3261 section 19.1 (SIP-URI / SIPS-URI, grammar in section 25.1)
 * and RFC 3966 (tel). Escaped characters (`%41`) are kept exactly as written: comparison rules
 * (RFC 3261 section 19.1.4) are a matter for the caller.
 */
import {
  HEADERCHAR, HOSTCHAR, PARAMCHAR, PASSWORD, SCHEME, USER, escapesOk, formatParams, isDigit, isHex, scanRun,
} from './lex';

export interface SipUri {
  /** lower-case scheme: `sip`, `sips` or `tel` */
  scheme: string;
  /** userinfo user part as written; for `tel` the telephone-subscriber (number) */
  user?: string;
  password?: string;
  /** host as written (RFC 3261 `host`: an IPv6 reference keeps its brackets); '' for `tel` */
  host: string;
  port?: number;
  /** uri-parameters: names lower-cased, values as written, null for a parameter with no value */
  params: Map<string, string | null>;
  /** the text after `?` (RFC 3261 `headers`), as written */
  headers?: string;
}

/** Outcome of `checkUri`, an allocation-free validity check used on every Request-URI. */
export type UriCheck = 'ok' | 'has-headers' | 'unsupported-scheme' | 'bad';

const enum Scheme { Bad, Other, Sip, Sips, Tel }

/** Classifies the scheme of `s` (RFC 3986 section 3.1 syntax) and returns it with the colon index. */
function schemeOf(s: string): [Scheme, number] {
  const colon = s.indexOf(':');
  if (colon < 1) return [Scheme.Bad, -1];
  const c0 = s.charCodeAt(0) | 0x20;
  if (c0 < 0x61 || c0 > 0x7a) return [Scheme.Bad, -1];
  if (scanRun(s, 1, SCHEME) !== colon) return [Scheme.Bad, -1];
  if (colon === 3) {
    const a = s.charCodeAt(0) | 0x20, b = s.charCodeAt(1) | 0x20, c = s.charCodeAt(2) | 0x20;
    if (a === 0x73 && b === 0x69 && c === 0x70) return [Scheme.Sip, colon];
    if (a === 0x74 && b === 0x65 && c === 0x6c) return [Scheme.Tel, colon];
  } else if (colon === 4) {
    const a = s.charCodeAt(0) | 0x20, b = s.charCodeAt(1) | 0x20, c = s.charCodeAt(2) | 0x20;
    const d = s.charCodeAt(3) | 0x20;
    if (a === 0x73 && b === 0x69 && c === 0x70 && d === 0x73) return [Scheme.Sips, colon];
  }
  return [Scheme.Other, colon];
}

/**
 * Scans `*( ";" pname [ "=" pvalue ] )` of a URI (RFC 3261 section 25.1 uri-parameters) from
 * `i` up to `end`. Returns the index where the parameters stop, or -1 on a syntax error.
 */
function scanUriParams(s: string, i: number, end: number, into: Map<string, string | null> | undefined): number {
  while (i < end && s.charCodeAt(i) === 0x3b /* ; */) {
    const ns = i + 1;
    let j = scanRun(s, ns, PARAMCHAR);
    if (j === ns || j > end) return -1;
    const ne = j;
    let value: string | null = null;
    if (j < end && s.charCodeAt(j) === 0x3d /* = */) {
      const vs = j + 1;
      j = scanRun(s, vs, PARAMCHAR);
      if (j > end) return -1;
      if (into !== undefined) value = s.slice(vs, j);
    }
    if (!escapesOk(s, ns, j)) return -1;
    if (into !== undefined) {
      const name = s.slice(ns, ne).toLowerCase();
      if (!into.has(name)) into.set(name, value);
    }
    i = j;
  }
  return i;
}

/** Scans a SIP/SIPS URI body from `i` (just past the colon). Returns -1 when invalid, else 0 or 1 (1 = has headers). */
function scanSip(s: string, i: number, out: SipUri | undefined): number {
  const n = s.length;
  const at = s.indexOf('@', i);
  let hostStart = i;
  if (at >= 0) {
    // userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"
    const pc = s.indexOf(':', i);
    const userEnd = pc >= 0 && pc < at ? pc : at;
    if (userEnd === i || scanRun(s, i, USER) < userEnd || !escapesOk(s, i, userEnd)) return -1;
    if (userEnd < at) {
      if (scanRun(s, userEnd + 1, PASSWORD) < at || !escapesOk(s, userEnd + 1, at)) return -1;
      if (out !== undefined) out.password = s.slice(userEnd + 1, at);
    }
    if (out !== undefined) out.user = s.slice(i, userEnd);
    hostStart = at + 1;
  }
  let j = hostStart;
  if (j < n && s.charCodeAt(j) === 0x5b /* [ */) {
    // IPv6reference = "[" IPv6address "]"
    const close = s.indexOf(']', j);
    if (close < 0 || close === j + 1) return -1;
    for (let k = j + 1; k < close; k++) {
      const c = s.charCodeAt(k);
      if (!isHex(c) && c !== 0x3a && c !== 0x2e) return -1;
    }
    j = close + 1;
  } else {
    j = scanRun(s, j, HOSTCHAR);
    if (j === hostStart) return -1;
  }
  if (out !== undefined) out.host = s.slice(hostStart, j);
  if (j < n && s.charCodeAt(j) === 0x3a /* : */) {
    const ps = j + 1;
    let port = 0;
    j = ps;
    while (j < n && isDigit(s.charCodeAt(j)) && j - ps < 5) port = port * 10 + (s.charCodeAt(j++) - 0x30);
    if (j === ps || port > 65535) return -1;
    if (out !== undefined) out.port = port;
  }
  j = scanUriParams(s, j, n, out?.params);
  if (j < 0) return -1;
  if (j === n) return 0;
  if (s.charCodeAt(j) !== 0x3f /* ? */) return -1;
  // headers = "?" header *( "&" header ), header = hname "=" hvalue
  const hs = j + 1;
  if (hs === n) return -1;
  for (let k = hs; k < n; k++) {
    const c = s.charCodeAt(k);
    if (c !== 0x3d && c !== 0x26 && (c >= 128 || HEADERCHAR[c] !== 1)) return -1;
  }
  if (!escapesOk(s, hs, n)) return -1;
  if (out !== undefined) out.headers = s.slice(hs);
  return 1;
}

/** tel URI (RFC 3966 section 3): telephone-subscriber followed by `;` parameters. */
function scanTel(s: string, i: number, out: SipUri | undefined): number {
  const n = s.length;
  let j = i;
  while (j < n) {
    const c = s.charCodeAt(j);
    // digits, hex digits of local numbers, visual separators, * # + and the pause characters
    if (isHex(c) || c === 0x2b || c === 0x2d || c === 0x2e || c === 0x28 || c === 0x29 ||
      c === 0x2a || c === 0x23 || (c | 0x20) === 0x70 || (c | 0x20) === 0x77) j++;
    else break;
  }
  if (j === i) return -1;
  if (out !== undefined) out.user = s.slice(i, j);
  j = scanUriParams(s, j, n, out?.params);
  return j === n ? 0 : -1;
}

/**
 * Parses a sip, sips or tel URI; undefined for anything else or anything malformed
 * (white space, unescaped `<>"`, a bad escape, an empty host, a port over 65535...).
 */
export function parseUri(s: string): SipUri | undefined {
  const [kind, colon] = schemeOf(s);
  if (kind === Scheme.Bad || kind === Scheme.Other) return undefined;
  const out: SipUri = { scheme: s.slice(0, colon).toLowerCase(), host: '', params: new Map() };
  const r = kind === Scheme.Tel ? scanTel(s, colon + 1, out) : scanSip(s, colon + 1, out);
  return r < 0 ? undefined : out;
}

/**
 * Checks a Request-URI without building anything (RFC 3261 sections 8.2.2.1 and 19.1.1):
 * `unsupported-scheme` for a syntactically fine scheme other than sip/sips/tel (answer 416),
 * `has-headers` for a SIP URI carrying `?headers` (not allowed in a Request-URI, RFC 3261
 * section 19.1.1 table 1), `bad` for anything malformed.
 */
export function checkUri(s: string): UriCheck {
  const [kind, colon] = schemeOf(s);
  if (kind === Scheme.Bad) return 'bad';
  if (kind === Scheme.Other) {
    // still reject what can never be a URI: white space, controls, <, >, DQUOTE
    for (let k = colon + 1; k < s.length; k++) {
      const c = s.charCodeAt(k);
      if (c <= 0x20 || c === 0x7f || c === 0x3c || c === 0x3e || c === 0x22) return 'bad';
    }
    return colon + 1 < s.length ? 'unsupported-scheme' : 'bad';
  }
  const r = kind === Scheme.Tel ? scanTel(s, colon + 1, undefined) : scanSip(s, colon + 1, undefined);
  return r < 0 ? 'bad' : r === 1 ? 'has-headers' : 'ok';
}

/** Formats a URI back to text (RFC 3261 section 19.1.1 order: userinfo, host, port, params, headers). */
export function formatUri(u: SipUri): string {
  let s = u.scheme + ':';
  if (u.scheme === 'tel') return s + (u.user ?? '') + formatParams(u.params);
  if (u.user !== undefined) {
    s += u.user;
    if (u.password !== undefined) s += ':' + u.password;
    s += '@';
  }
  s += u.host;
  if (u.port !== undefined) s += ':' + u.port;
  s += formatParams(u.params);
  if (u.headers !== undefined && u.headers.length > 0) s += '?' + u.headers;
  return s;
}
