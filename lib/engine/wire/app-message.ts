import { SipRequest, SipResponse, type SipMessage, canonicalName } from '../message/sip-message';

/**
 * Parses a SIP message written by an application. Unlike network input it is incomplete on
 * purpose (no Via, often no Call-ID or CSeq: the engine supplies them), so only the start line
 * and the header syntax are checked. Returns a reason string when it cannot be read.
 */
export function parseAppMessage(text: string): SipMessage | string {
  const split = text.indexOf('\r\n\r\n');
  const head = split < 0 ? text : text.slice(0, split);
  const body = split < 0 ? '' : text.slice(split + 4);
  const lines = head.split('\r\n');
  const start = lines[0] ?? '';
  let msg: SipMessage;
  if (start.startsWith('SIP/')) {
    const m = /^SIP\/2\.0 (\d{3})(?: (.*))?$/.exec(start);
    if (!m) return `invalid status line: ${start.slice(0, 60)}`;
    msg = new SipResponse(Number(m[1]), m[2] ?? '');
  } else {
    const m = /^([A-Za-z!%*_+`'~.-]+) (\S+) SIP\/2\.0$/.exec(start);
    if (!m) return `invalid request line: ${start.slice(0, 60)}`;
    msg = new SipRequest(m[1]!.toUpperCase(), m[2]!);
  }
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.length === 0) continue;
    if ((line[0] === ' ' || line[0] === '\t') && msg.headers.length > 0) {
      const last = msg.headers[msg.headers.length - 1]!;
      last.value += ' ' + line.trim();
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) return `invalid header line: ${line.slice(0, 60)}`;
    const name = line.slice(0, colon).trim();
    msg.headers.push({ key: canonicalName(name), name, value: line.slice(colon + 1).trim() });
  }
  msg.body = Buffer.from(body, 'utf8');
  return msg;
}

/** Headers an application may not set: the engine owns them (drachtio drops them silently). */
export const ENGINE_OWNED = new Set(['via', 'route', 'record-route', 'rseq', 'content-length']);
