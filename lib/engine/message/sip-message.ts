/**
 * The SIP message model (RFC 3261 section 7): a start line, an ordered header list and a body.
 *
 * Headers keep the order and the spelling they arrived with, so a relayed message looks like the
 * one received. Look-ups use the canonical lower-case long name (compact forms expanded, see
 * `canonicalName`). Values are kept as raw strings; the typed views (Via, CSeq, name-addr) are
 * parsed on demand by the helpers in this folder.
 */

export interface SipHeader {
  /** canonical lower-case long name, e.g. `call-id` for `i` or `Call-ID` */
  readonly key: string;
  /** the name as written on the wire (or as the application gave it) */
  name: string;
  value: string;
}

/** Compact forms (RFC 3261 section 7.3.3 and later RFCs) to canonical long names. */
const COMPACT: Readonly<Record<string, string>> = {
  a: 'accept-contact',
  b: 'referred-by',
  c: 'content-type',
  d: 'request-disposition',
  e: 'content-encoding',
  f: 'from',
  i: 'call-id',
  j: 'reject-contact',
  k: 'supported',
  l: 'content-length',
  m: 'contact',
  n: 'identity-info',
  o: 'event',
  r: 'refer-to',
  s: 'subject',
  t: 'to',
  u: 'allow-events',
  v: 'via',
  x: 'session-expires',
  y: 'identity',
};

/** Canonical display names for headers the engine itself adds. */
const DISPLAY: Readonly<Record<string, string>> = {
  'call-id': 'Call-ID',
  cseq: 'CSeq',
  'www-authenticate': 'WWW-Authenticate',
  'mime-version': 'MIME-Version',
  rseq: 'RSeq',
  rack: 'RAck',
  'min-se': 'Min-SE',
  'sip-etag': 'SIP-ETag',
  'sip-if-match': 'SIP-If-Match',
};

/**
 * Headers whose value is a comma-separated list (RFC 3261 section 7.3.1), so several header
 * lines and one line with commas mean the same thing.
 */
const LIST_HEADERS: ReadonlySet<string> = new Set([
  'via', 'route', 'record-route', 'contact', 'allow', 'supported', 'require', 'proxy-require',
  'unsupported', 'accept', 'accept-encoding', 'accept-language', 'allow-events', 'path',
  'content-encoding', 'in-reply-to', 'reason', 'p-asserted-identity',
]);

export function canonicalName(name: string): string {
  const lower = name.toLowerCase();
  return lower.length === 1 ? (COMPACT[lower] ?? lower) : lower;
}

export function displayName(key: string): string {
  const d = DISPLAY[key];
  if (d !== undefined) return d;
  return key.replace(/(^|-)([a-z])/g, (_m: string, dash: string, c: string) => dash + c.toUpperCase());
}

export function isListHeader(key: string): boolean {
  return LIST_HEADERS.has(key);
}

/**
 * Splits a header value at the commas that separate list elements: commas inside a quoted
 * string or inside <...> do not count (RFC 3261 section 7.3.1).
 */
export function splitList(value: string): string[] {
  const out: string[] = [];
  let start = 0;
  let inQuote = false;
  let inAngle = false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (inQuote) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inQuote = false;
    } else if (c === 0x22) inQuote = true;
    else if (c === 0x3c /* < */) inAngle = true;
    else if (c === 0x3e /* > */) inAngle = false;
    else if (c === 0x2c /* , */ && !inAngle) {
      const part = value.slice(start, i).trim();
      if (part.length > 0) out.push(part);
      start = i + 1;
    }
  }
  const last = value.slice(start).trim();
  if (last.length > 0) out.push(last);
  return out;
}

/** Index of the first comma that separates list elements (none inside quotes or <...>), or -1. */
export function firstListComma(v: string): number {
  if (v.indexOf(',') < 0) return -1;
  let inQuote = false;
  let inAngle = false;
  for (let i = 0; i < v.length; i++) {
    const c = v.charCodeAt(i);
    if (inQuote) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inQuote = false;
    } else if (c === 0x22) inQuote = true;
    else if (c === 0x3c) inAngle = true;
    else if (c === 0x3e) inAngle = false;
    else if (c === 0x2c && !inAngle) return i;
  }
  return -1;
}

/** The first list element of a header value (the top Via, the first Route), trimmed. */
export function firstListElement(value: string): string {
  const comma = firstListComma(value);
  return comma < 0 ? value : value.slice(0, comma).trim();
}

/**
 * A copy of a string that does not keep its source alive. Header values are slices of the
 * decoded header block of their message, so a short value kept for a dialog's life (a tag, a
 * URI) would otherwise hold the whole message text in memory.
 */
export function detach(s: string): string {
  // V8 copies slices shorter than 13 characters anyway. For longer ones, slicing a fresh
  // concatenation makes V8 flatten it into a new string, and the slice points into that copy.
  return s.length < 13 ? s : (' ' + s).slice(1);
}

/**
 * An exact copy of a string in memory of its own, for strings kept as long as a call lasts
 * (`detach` is cheaper but leaves a small slice in front of the copy).
 */
export function ownString(s: string): string {
  return s.length < 13 ? s : Buffer.from(s, 'utf8').toString('utf8');
}

abstract class SipMessageBase {
  version = 'SIP/2.0';
  headers: SipHeader[] = [];
  body: Buffer = EMPTY;

  /** First value of a header, or undefined. */
  get(key: string): string | undefined {
    const k = canonicalName(key);
    for (const h of this.headers) if (h.key === k) return h.value;
    return undefined;
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  /** Every value of a header; list headers are split at their commas. */
  getAll(key: string): string[] {
    const k = canonicalName(key);
    const list = isListHeader(k);
    const out: string[] = [];
    for (const h of this.headers) {
      if (h.key !== k) continue;
      if (list) for (const v of splitList(h.value)) out.push(v);
      else out.push(h.value);
    }
    return out;
  }

  /** Replaces every occurrence of a header with one line (added at the end when absent). */
  set(name: string, value: string): this {
    const k = canonicalName(name);
    const i = this.headers.findIndex((h) => h.key === k);
    if (i < 0) {
      this.headers.push({ key: k, name: name.length === 1 ? displayName(k) : name, value });
      return this;
    }
    this.headers[i] = { key: k, name: this.headers[i]!.name, value };
    this.headers = this.headers.filter((h, j) => j <= i || h.key !== k);
    return this;
  }

  /** Appends a header line after any existing ones. */
  append(name: string, value: string): this {
    this.headers.push({ key: canonicalName(name), name, value });
    return this;
  }

  /** Inserts a header line before every other line of that header (Via, Record-Route). */
  prepend(name: string, value: string): this {
    const k = canonicalName(name);
    const i = this.headers.findIndex((h) => h.key === k);
    const h = { key: k, name, value };
    if (i < 0) this.headers.push(h);
    else this.headers.splice(i, 0, h);
    return this;
  }

  remove(key: string): this {
    const k = canonicalName(key);
    this.headers = this.headers.filter((h) => h.key !== k);
    return this;
  }

  /** Removes the first list element of a header (the top Via, the first Route). */
  shift(key: string): string | undefined {
    const k = canonicalName(key);
    const i = this.headers.findIndex((h) => h.key === k);
    if (i < 0) return undefined;
    const h = this.headers[i]!;
    const parts = splitList(h.value);
    const first = parts.shift();
    if (parts.length === 0) this.headers.splice(i, 1);
    else this.headers[i] = { key: k, name: h.name, value: parts.join(', ') };
    return first;
  }

  /** The first list element of a header (the top Via, the first Route), or undefined. */
  first(key: string): string | undefined {
    const k = canonicalName(key);
    for (const h of this.headers) if (h.key === k) return firstListElement(h.value);
    return undefined;
  }

  get callId(): string {
    return this.get('call-id') ?? '';
  }
}

const EMPTY = Buffer.alloc(0);

export class SipRequest extends SipMessageBase {
  readonly type = 'request' as const;
  constructor(public method: string, public uri: string) {
    super();
  }
}

export class SipResponse extends SipMessageBase {
  readonly type = 'response' as const;
  constructor(public status: number, public reason: string) {
    super();
  }
}

export type SipMessage = SipRequest | SipResponse;

/** Headers a request keeps once its transaction has answered it (see `compactRequest`). */
const KEPT_AFTER_ANSWER: ReadonlySet<string> = new Set(['via', 'from', 'to', 'call-id', 'cseq', 'record-route', 'route']);

/**
 * Shrinks a request whose transaction has sent or received its final response, in place: the
 * transaction lingers for its RFC 3261 timers (32 s over UDP) but from then on only builds
 * responses from it or matches against it, for which Via, From, To, Call-ID, CSeq and the route
 * headers suffice. The other headers and the body go, and the kept values are copied so the
 * whole message text is not held for those seconds.
 */
export function compactRequest(req: SipRequest): void {
  const kept: SipHeader[] = [];
  for (const h of req.headers) {
    if (KEPT_AFTER_ANSWER.has(h.key)) kept.push({ key: h.key, name: detach(h.name), value: detach(h.value) });
  }
  req.headers = kept;
  req.body = EMPTY;
  req.uri = detach(req.uri);
}

/** Deep copy: headers are copied, the body buffer is shared (it is never mutated in place). */
export function cloneMessage<T extends SipMessage>(m: T): T {
  const c = (m.type === 'request' ? new SipRequest(m.method, m.uri) : new SipResponse(m.status, m.reason)) as T;
  c.version = m.version;
  c.headers = m.headers.map((h) => ({ key: h.key, name: h.name, value: h.value }));
  c.body = m.body;
  return c;
}
