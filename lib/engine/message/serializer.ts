/**
 * Turns a SipMessage back into bytes (RFC 3261 section 7): start line, header lines in their
 * order as `name: value`, an empty line, the body. Content-Length always states the body's byte
 * length (RFC 3261 section 20.14): the first Content-Length (or compact `l`) line is rewritten in
 * place as `Content-Length`, later ones are dropped, and one is appended when there was none.
 */
import type { SipMessage } from './sip-message';

/**
 * A value with a raw CR or LF (only an application can put one there: the parser unfolds) would
 * split the header and let its text pass for other headers; it is folded to single spaces.
 */
function safeValue(v: string): string {
  if (v.indexOf('\n') < 0 && v.indexOf('\r') < 0) return v;
  return v.replace(/[ \t]*[\r\n]+[ \t]*/g, ' ');
}

/** The start line, without CRLF (RFC 3261 sections 7.1 and 7.2). */
export function startLine(m: SipMessage): string {
  return m.type === 'request' ? `${m.method} ${m.uri} ${m.version}` : `${m.version} ${m.status} ${m.reason}`;
}

/**
 * Everything before the body: start line, headers and the empty line, with Content-Length set
 * to `bodyLength` (the message's body length by default).
 */
export function serializeHead(m: SipMessage, bodyLength: number = m.body.length): string {
  let s = startLine(m) + '\r\n';
  let wroteLength = false;
  for (const h of m.headers) {
    if (h.key === 'content-length') {
      if (!wroteLength) s += 'Content-Length: ' + bodyLength + '\r\n';
      wroteLength = true;
      continue;
    }
    s += h.name + ': ' + safeValue(h.value) + '\r\n';
  }
  if (!wroteLength) s += 'Content-Length: ' + bodyLength + '\r\n';
  return s + '\r\n';
}

/** The whole message as one Buffer (head UTF-8 encoded, body copied after it). */
export function serialize(m: SipMessage): Buffer {
  const head = serializeHead(m);
  const headLen = Buffer.byteLength(head, 'utf8');
  const out = Buffer.allocUnsafe(headLen + m.body.length);
  out.write(head, 0, 'utf8');
  m.body.copy(out, headLen);
  return out;
}
