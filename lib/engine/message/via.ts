/**
 * One Via value (RFC 3261 sections 20.42 and 25.1):
 *
 *   via-parm = sent-protocol LWS sent-by *( SEMI via-params )
 *   sent-protocol = protocol-name SLASH protocol-version SLASH transport
 *   sent-by = host [ COLON port ]
 *
 * LWS is allowed around the slashes and the colon (RFC 4475 section 3.1.1.1). A header line
 * holding several comma-separated values is split first (`splitList` / `getAll('via')`).
 */
import { HOSTCHAR, TOKEN, formatParams, isDigit, isHex, isWsp, scanParams, scanRun, skipWsp } from './lex';

export interface Via {
  /** protocol-name/protocol-version, e.g. `SIP/2.0` (name upper-cased) */
  protocol: string;
  /** transport upper-cased: UDP, TCP, TLS, SCTP, WS, WSS or an extension */
  transport: string;
  /** sent-by host as written (an IPv6 reference keeps its brackets) */
  host: string;
  port?: number;
  /** via-params (branch, received, rport, maddr, ttl...): names lower-cased, values as written */
  params: Map<string, string | null>;
}

/** The part of a Via before its parameters, enough to route a response (RFC 3261 section 18.2.2). */
export interface ViaHead {
  protocol: string;
  transport: string;
  host: string;
  port?: number;
}

/**
 * Scans sent-protocol and sent-by. Returns the index after them (where the parameters start)
 * or -1. Fills `out` when given.
 */
function scanHead(s: string, out: ViaHead | undefined): number {
  const n = s.length;
  let i = skipWsp(s, 0);
  const ns = i;
  i = scanRun(s, i, TOKEN);
  if (i === ns) return -1;
  const ne = i;
  i = skipWsp(s, i);
  if (i >= n || s.charCodeAt(i) !== 0x2f /* / */) return -1;
  i = skipWsp(s, i + 1);
  const vs = i;
  i = scanRun(s, i, TOKEN);
  if (i === vs) return -1;
  const ve = i;
  i = skipWsp(s, i);
  if (i >= n || s.charCodeAt(i) !== 0x2f) return -1;
  i = skipWsp(s, i + 1);
  const ts = i;
  i = scanRun(s, i, TOKEN);
  if (i === ts) return -1;
  const te = i;
  // LWS is mandatory between sent-protocol and sent-by
  if (i >= n || !isWsp(s.charCodeAt(i))) return -1;
  i = skipWsp(s, i);
  const hs = i;
  if (i < n && s.charCodeAt(i) === 0x5b /* [ */) {
    const close = s.indexOf(']', i);
    if (close < 0 || close === i + 1) return -1;
    for (let k = i + 1; k < close; k++) {
      const c = s.charCodeAt(k);
      if (!isHex(c) && c !== 0x3a && c !== 0x2e) return -1;
    }
    i = close + 1;
  } else {
    i = scanRun(s, i, HOSTCHAR);
    if (i === hs) return -1;
  }
  const he = i;
  let port: number | undefined;
  const afterHost = skipWsp(s, i);
  if (afterHost < n && s.charCodeAt(afterHost) === 0x3a /* : */) {
    i = skipWsp(s, afterHost + 1);
    const ps = i;
    let p = 0;
    while (i < n && isDigit(s.charCodeAt(i)) && i - ps < 5) p = p * 10 + (s.charCodeAt(i++) - 0x30);
    if (i === ps || p > 65535) return -1;
    port = p;
  }
  if (out !== undefined) {
    out.protocol = s.slice(ns, ne).toUpperCase() + '/' + s.slice(vs, ve);
    out.transport = s.slice(ts, te).toUpperCase();
    out.host = s.slice(hs, he);
    if (port !== undefined) out.port = port;
  }
  return i;
}

/** Parses one Via value; undefined when malformed (e.g. `;;` empty parameters, RFC 4475 section 3.1.2.1). */
export function parseVia(s: string): Via | undefined {
  const v: Via = { protocol: '', transport: '', host: '', params: new Map() };
  const i = scanHead(s, v);
  if (i < 0 || !scanParams(s, i, v.params)) return undefined;
  return v;
}

/** Validates one Via value without allocating. */
export function isValidVia(s: string): boolean {
  const i = scanHead(s, undefined);
  return i >= 0 && scanParams(s, i, undefined);
}

/**
 * Parses only sent-protocol and sent-by, ignoring whatever follows. Used to decide whether a
 * response can still be sent for a request whose Via parameters are broken.
 */
export function parseViaHead(s: string): ViaHead | undefined {
  const h: ViaHead = { protocol: '', transport: '', host: '' };
  return scanHead(s, h) < 0 ? undefined : h;
}

/** Formats a Via value: `SIP/2.0/UDP host:port;branch=...`. */
export function formatVia(v: Via): string {
  let s = v.protocol + '/' + v.transport + ' ' + v.host;
  if (v.port !== undefined) s += ':' + v.port;
  return s + formatParams(v.params);
}
