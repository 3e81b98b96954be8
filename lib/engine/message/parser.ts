/**
 * Parses one SIP message from bytes (RFC 3261 section 7, grammar in section 25) and applies the
 * syntax and semantic checks of the RFC 4475 torture tests.
 *
 * The header block is decoded once (UTF-8: header values may carry UTF-8 text, RFC 3261 section
 * 25.1 TEXT-UTF8char; a byte sequence that is not UTF-8 is read as U+FFFD), split at CRLF,
 * unfolded (RFC 3261 section 7.3.1) and kept as raw name/value strings; the typed views (Via,
 * CSeq, name-addr, URI) are parsed later, on demand, by whoever needs them. The checks below
 * only validate, allocating as little as they can, because this runs for every message.
 */
import { type SipHeader, type SipMessage, SipRequest, SipResponse, canonicalName, splitList } from './sip-message';
import { TOKEN, isDigit, isToken, scanRun } from './lex';
import { checkUri } from './uri';
import { isValidNameAddr } from './name-addr';
import { isValidVia, parseViaHead } from './via';
import { parseCSeq } from './cseq';

export interface ParseOptions {
  /** largest acceptable message in bytes (default 65535); larger ones get 513 (RFC 3261 section 18.1.1) */
  maxSize?: number;
  /** true when the bytes were framed by Content-Length on a stream transport (RFC 3261 section 18.3) */
  stream?: boolean;
}

/**
 * On failure `status`/`reason` say what is wrong. `request` is present only when the input was
 * recognisably a request (other than ACK) whose Via, From, To, Call-ID and CSeq allow a
 * response to be built (RFC 3261 section 8.2.6.2), so the caller can answer `status reason`;
 * otherwise the caller drops the message and logs `reason`.
 */
export type ParseResult =
  | { ok: true; message: SipMessage }
  | { ok: false; status: number; reason: string; request?: SipRequest };

export const DEFAULT_MAX_SIZE = 65535;

const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');
const EMPTY = Buffer.alloc(0);
const MAX_INT31 = 0x7fffffff;

/** Methods this layer knows; an unknown method with a CSeq mismatch earns 501 (RFC 4475 section 3.1.2.18). */
const KNOWN_METHODS: ReadonlySet<string> = new Set([
  'INVITE', 'ACK', 'BYE', 'CANCEL', 'OPTIONS', 'REGISTER', 'PRACK', 'SUBSCRIBE', 'NOTIFY',
  'PUBLISH', 'INFO', 'REFER', 'MESSAGE', 'UPDATE',
]);

/** rfc1123-date, GMT only (RFC 3261 section 20.17; RFC 4475 section 3.1.2.12). */
const DATE_RE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

interface Failure {
  status: number;
  reason: string;
}

function bad(what: string): Failure {
  return { status: 400, reason: 'Bad Request - ' + what };
}

/** The canonical key of a header name, or undefined when the name is not a token (RFC 3261 section 7.3.1). */
function headerKey(name: string): string | undefined {
  if (name.length === 0 || scanRun(name, 0, TOKEN) !== name.length) return undefined;
  return canonicalName(name);
}

/** Index range [a, b) of s with SP/HTAB trimmed at both ends (String#trim would also eat U+FEFF and friends). */
function trimWsp(s: string, a: number, b: number): string {
  while (a < b && (s.charCodeAt(a) === 0x20 || s.charCodeAt(a) === 0x09)) a++;
  while (b > a && (s.charCodeAt(b - 1) === 0x20 || s.charCodeAt(b - 1) === 0x09)) b--;
  return s.slice(a, b);
}

/** A non-negative decimal integer made only of digits, or -1 (too long / not digits). */
function parseUint(s: string, max: number): number {
  if (s.length === 0 || s.length > 12) return -1;
  let v = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (!isDigit(c)) return -1;
    v = v * 10 + (c - 0x30);
  }
  return v > max ? -1 : v;
}

/** `SIP/x.y` with digits (RFC 3261 section 25.1 SIP-Version); "SIP" is case-insensitive (section 7.1). */
function versionShape(v: string): boolean {
  if (v.length < 7 || v.slice(0, 4).toUpperCase() !== 'SIP/') return false;
  const dot = v.indexOf('.', 4);
  if (dot < 5 || dot === v.length - 1) return false;
  for (let i = 4; i < v.length; i++) if (i !== dot && !isDigit(v.charCodeAt(i))) return false;
  return true;
}

function isSip20(v: string): boolean {
  return v === 'SIP/2.0' || (v.length === 7 && v.toUpperCase() === 'SIP/2.0');
}

/** A Call-ID must be a non-empty run without white space or controls (RFC 3261 section 25.1 callid). */
function callIdOk(v: string): boolean {
  if (v.length === 0) return false;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (c <= 0x20 || c === 0x7f) return false;
  }
  return true;
}

/** Validates every element of a list header with `check`, splitting at commas only when there are some. */
function everyElement(value: string, check: (s: string) => boolean): boolean {
  if (value.indexOf(',') < 0) return check(value);
  const parts = splitList(value);
  if (parts.length === 0) return false;
  for (const p of parts) if (!check(p)) return false;
  return true;
}

function contactOk(v: string): boolean {
  return v === '*' || isValidNameAddr(v);
}

interface StartLine {
  request: boolean;
  method: string;
  uri: string;
  version: string;
  status: number;
  reason: string;
  error?: Failure;
}

/** Request-Line = Method SP Request-URI SP SIP-Version (RFC 3261 section 7.1), exactly one SP each. */
function parseRequestLine(line: string): StartLine {
  const r: StartLine = { request: true, method: '', uri: '', version: '', status: 0, reason: '' };
  const sp1 = line.indexOf(' ');
  const sp2 = line.lastIndexOf(' ');
  if (sp1 > 0 && sp2 > sp1 + 1 && sp2 < line.length - 1) {
    const method = line.slice(0, sp1);
    const uri = line.slice(sp1 + 1, sp2);
    const version = line.slice(sp2 + 1);
    if (isToken(method) && uri.indexOf(' ') < 0 && uri.indexOf('\t') < 0 && version.indexOf('\t') < 0) {
      r.method = method;
      r.uri = uri;
      r.version = version;
      if (!isSip20(version)) {
        r.error = versionShape(version)
          ? { status: 505, reason: 'Version Not Supported' }
          : bad('Malformed SIP-Version');
      }
      return r;
    }
  }
  // Malformed: recover method / URI / version leniently so that a 400 can still be sent.
  const parts = line.split(/[ \t]+/).filter((p) => p.length > 0);
  if (parts.length >= 1 && isToken(parts[0]!)) r.method = parts[0]!;
  if (parts.length >= 3) {
    r.version = parts[parts.length - 1]!;
    r.uri = parts.slice(1, -1).join(' ');
  } else if (parts.length === 2) r.uri = parts[1]!;
  if (r.method === '') r.error = bad('Malformed Request-Line');
  else if (parts.length >= 3 && !isSip20(r.version) && versionShape(r.version)) {
    r.error = { status: 505, reason: 'Version Not Supported' };
  } else if (parts.length === 3 && /[ \t]$/.test(line)) r.error = bad('Trailing white space in Request-Line');
  else if (parts.length === 3 && /^[^ \t]+[ \t]{2,}|[ \t]{2,}[^ \t]+$/.test(line)) r.error = bad('Extra white space in Request-Line');
  else if (parts.length > 3) r.error = bad('Malformed Request-URI (white space)');
  else r.error = bad('Malformed Request-Line');
  return r;
}

/** Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (RFC 3261 section 7.2). */
function parseStatusLine(line: string): StartLine {
  const r: StartLine = { request: false, method: '', uri: '', version: '', status: 0, reason: '' };
  const sp1 = line.indexOf(' ');
  if (sp1 < 0) {
    r.error = bad('Malformed Status-Line');
    return r;
  }
  r.version = line.slice(0, sp1);
  const cs = sp1 + 1;
  let ce = cs;
  while (ce < line.length && isDigit(line.charCodeAt(ce))) ce++;
  const code = ce - cs === 3 ? Number(line.slice(cs, ce)) : 0;
  if (code < 100 || code > 699 || (ce < line.length && line.charCodeAt(ce) !== 0x20)) {
    r.error = bad('Malformed Status-Code');
    return r;
  }
  r.status = code;
  // a missing Reason-Phrase (even without its SP) is tolerated: RFC 4475 section 3.1.1.13
  r.reason = ce < line.length ? line.slice(ce + 1) : '';
  if (!isSip20(r.version)) {
    r.error = versionShape(r.version) ? { status: 505, reason: 'Version Not Supported' } : bad('Malformed SIP-Version');
  }
  return r;
}

/** True when `headers` carry what a response to the request needs (RFC 3261 section 8.2.6.2). */
function canRespond(headers: readonly SipHeader[]): boolean {
  let via = false, from = false, to = false, callId = false, cseq = false;
  for (const h of headers) {
    switch (h.key) {
      case 'via':
        if (!via) {
          const first = h.value.indexOf(',') < 0 ? h.value : splitList(h.value)[0];
          if (first === undefined || parseViaHead(first) === undefined) return false;
          via = true;
        }
        break;
      case 'from': from = from || h.value.length > 0; break;
      case 'to': to = to || h.value.length > 0; break;
      case 'call-id': callId = callId || h.value.length > 0; break;
      case 'cseq': cseq = cseq || h.value.length > 0; break;
    }
  }
  return via && from && to && callId && cseq;
}

function fail(f: Failure, start: StartLine, headers: SipHeader[], body: Buffer): ParseResult {
  if (start.request && start.method !== '' && start.method !== 'ACK' && start.uri !== '' && canRespond(headers)) {
    const request = new SipRequest(start.method, start.uri);
    if (start.version !== '') request.version = start.version;
    request.headers = headers;
    request.body = body;
    return { ok: false, status: f.status, reason: f.reason, request };
  }
  return { ok: false, status: f.status, reason: f.reason };
}

/**
 * Parses a SIP message. Leading CRLFs are skipped (RFC 3261 section 7.5). On a datagram a missing
 * Content-Length means the body is the rest of the packet, a larger one is an error and a smaller
 * one truncates the body (RFC 3261 section 18.3); with `stream` the caller has framed the bytes
 * and Content-Length is mandatory. The message body is a view into `buf`, not a copy.
 */
export function parseMessage(buf: Buffer, opts?: ParseOptions): ParseResult {
  const maxSize = opts?.maxSize ?? DEFAULT_MAX_SIZE;
  const stream = opts?.stream === true;
  const len = buf.length;
  let start = 0;
  while (start < len && (buf[start] === 0x0d || buf[start] === 0x0a)) start++;
  if (start >= len) return { ok: false, status: 400, reason: 'Bad Request - Empty message' };

  let err: Failure | undefined;
  let headEnd: number;
  let bodyStart: number;
  const sep = buf.indexOf(CRLFCRLF, start);
  if (sep >= 0) {
    headEnd = sep;
    bodyStart = sep + 4;
  } else if (len - start >= 2 && buf[len - 2] === 0x0d && buf[len - 1] === 0x0a) {
    // header block ended by a single CRLF at the end of the packet: no body
    headEnd = len - 2;
    bodyStart = len;
  } else {
    headEnd = len;
    bodyStart = len;
    err = bad('Header block not terminated');
  }

  const head = buf.toString('utf8', start, headEnd);
  let eol = head.indexOf('\r\n');
  if (eol < 0) eol = head.length;
  const firstLine = head.slice(0, eol);
  const startLine =
    firstLine.length >= 4 && firstLine.slice(0, 4).toUpperCase() === 'SIP/'
      ? parseStatusLine(firstLine)
      : parseRequestLine(firstLine);
  if (startLine.error !== undefined) err = startLine.error;

  // Header lines, unfolding continuation lines (RFC 3261 section 7.3.1).
  const headers: SipHeader[] = [];
  let last: SipHeader | undefined;
  let pos = eol + 2;
  const hl = head.length;
  while (pos < hl) {
    const lf = head.indexOf('\n', pos);
    let le: number; // end of the line's content (before CRLF)
    let next: number;
    if (lf < 0) {
      le = hl;
      next = hl;
    } else {
      next = lf + 1;
      if (lf > pos && head.charCodeAt(lf - 1) === 0x0d) le = lf - 1;
      else {
        err ??= bad('Bare LF in header');
        le = lf;
      }
    }
    const cr = head.indexOf('\r', pos);
    if (cr >= 0 && cr < le) err ??= bad('Bare CR in header');
    const c = head.charCodeAt(pos);
    if (c === 0x20 || c === 0x09) {
      const cont = trimWsp(head, pos, le);
      if (last === undefined) err ??= bad('Continuation line before any header');
      else if (cont.length > 0) last.value = last.value.length > 0 ? last.value + ' ' + cont : cont;
    } else {
      const colon = head.indexOf(':', pos);
      if (colon < 0 || colon >= le) {
        err ??= bad('Malformed header line');
        last = undefined;
      } else {
        let ne = colon;
        while (ne > pos && (head.charCodeAt(ne - 1) === 0x20 || head.charCodeAt(ne - 1) === 0x09)) ne--;
        const name = head.slice(pos, ne);
        const key = headerKey(name);
        if (key === undefined) {
          err ??= bad('Malformed header name');
          last = undefined;
        } else {
          last = { key, name, value: trimWsp(head, colon + 1, le) };
          headers.push(last);
        }
      }
    }
    pos = next;
  }

  // Header semantics (RFC 4475 sections 3.1.2 and 3.3).
  let from = 0, to = 0, callId = 0, cseqN = 0, via = 0;
  let cseqValue = '';
  let contentLength = -1;
  let maxForwards = -1;
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i]!;
    const v = h.value;
    switch (h.key) {
      case 'via':
        via++;
        if (!everyElement(v, isValidVia)) err ??= bad('Malformed Via');
        break;
      case 'from':
        if (++from > 1) err ??= bad('Multiple From headers');
        else if (!isValidNameAddr(v)) err ??= bad('Malformed From');
        break;
      case 'to':
        if (++to > 1) err ??= bad('Multiple To headers');
        else if (!isValidNameAddr(v)) err ??= bad('Malformed To');
        break;
      case 'call-id':
        if (++callId > 1) err ??= bad('Multiple Call-ID headers');
        else if (!callIdOk(v)) err ??= bad('Malformed Call-ID');
        break;
      case 'cseq':
        if (++cseqN > 1) err ??= bad('Multiple CSeq headers');
        cseqValue = cseqN === 1 ? v : cseqValue;
        break;
      case 'contact':
        if (!everyElement(v, contactOk)) err ??= bad('Malformed Contact');
        break;
      case 'content-length': {
        const n = parseUint(v, MAX_INT31);
        if (n < 0) err ??= bad('Malformed Content-Length');
        else if (contentLength >= 0 && n !== contentLength) err ??= bad('Conflicting Content-Length headers');
        else contentLength = n;
        break;
      }
      case 'max-forwards': {
        const n = parseUint(v, 255);
        if (n < 0) err ??= bad('Malformed Max-Forwards');
        else if (maxForwards >= 0 && n !== maxForwards) err ??= bad('Conflicting Max-Forwards headers');
        else maxForwards = n;
        break;
      }
      case 'date':
        if (!DATE_RE.test(v)) err ??= bad('Malformed Date');
        break;
    }
  }
  if (via === 0) err ??= bad('Missing Via');
  if (from === 0) err ??= bad('Missing From');
  if (to === 0) err ??= bad('Missing To');
  if (callId === 0) err ??= bad('Missing Call-ID');
  let cseqMethod = '';
  if (cseqN === 0) err ??= bad('Missing CSeq');
  else {
    const cs = parseCSeq(cseqValue);
    if (cs === undefined) err ??= bad('Malformed CSeq');
    else cseqMethod = cs.method;
  }

  // Body (RFC 3261 sections 18.3 and 20.14).
  let bodyLen = len - bodyStart;
  if (contentLength >= 0) {
    if (contentLength > bodyLen) err ??= bad('Content-Length larger than body');
    else bodyLen = contentLength;
  } else if (stream) err ??= bad('Missing Content-Length');
  const body = bodyLen > 0 ? buf.subarray(bodyStart, bodyStart + bodyLen) : EMPTY;

  if (startLine.request && err === undefined) {
    switch (checkUri(startLine.uri)) {
      case 'ok': break;
      case 'unsupported-scheme': err = { status: 416, reason: 'Unsupported URI Scheme' }; break;
      case 'has-headers': err = bad('Headers in Request-URI'); break;
      default: err = bad('Malformed Request-URI');
    }
    if (err === undefined && cseqMethod !== startLine.method) {
      err = KNOWN_METHODS.has(startLine.method)
        ? bad('CSeq method does not match Request-Line')
        : { status: 501, reason: 'Not Implemented' };
    }
  }

  if (len > maxSize) return fail({ status: 513, reason: 'Message Too Large' }, startLine, headers, body);
  if (err !== undefined) return fail(err, startLine, headers, body);

  let message: SipMessage;
  if (startLine.request) message = new SipRequest(startLine.method, startLine.uri);
  else message = new SipResponse(startLine.status, startLine.reason);
  message.version = 'SIP/2.0'; // case-insensitive on input, always sent upper-case (RFC 3261 section 7.1)
  message.headers = headers;
  message.body = body;
  return { ok: true, message };
}
