import { SipRequest, SipResponse, type SipMessage, canonicalName } from '../message/sip-message';

/**
 * Parses a SIP message written by an application. Unlike network input it is incomplete on
 * purpose (no Via, often no Call-ID or CSeq: the engine supplies them), so only the start line
 * and the header syntax are checked. Returns a reason string when it cannot be read.
 */
export function parseAppMessage(text: string): SipMessage | string {
  const split = text.indexOf('\r\n\r\n');
  const headEnd = split < 0 ? text.length : split;
  let eol = text.indexOf('\r\n');
  if (eol < 0 || eol > headEnd) eol = headEnd;
  const start = text.slice(0, eol);
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
  const headers = msg.headers;
  // header lines, one at a time (no array of lines); a line starting with SP/HTAB continues the last
  for (let pos = eol + 2; pos < headEnd; ) {
    let end = text.indexOf('\r\n', pos);
    if (end < 0 || end > headEnd) end = headEnd;
    if (end > pos) {
      const c = text.charCodeAt(pos);
      if ((c === 0x20 || c === 0x09) && headers.length > 0) {
        const last = headers[headers.length - 1]!;
        last.value += ' ' + text.slice(pos, end).trim();
      } else {
        const colon = text.indexOf(':', pos);
        if (colon <= pos || colon >= end) return `invalid header line: ${text.slice(pos, Math.min(end, pos + 60))}`;
        const name = text.slice(pos, colon).trim();
        headers.push({ key: canonicalName(name), name, value: text.slice(colon + 1, end).trim() });
      }
    }
    pos = end + 2;
  }
  if (split >= 0 && split + 4 < text.length) msg.body = Buffer.from(text.slice(split + 4), 'utf8');
  return msg;
}

/** Headers an application may not set: the engine owns them (drachtio drops them silently). */
export const ENGINE_OWNED = new Set(['via', 'route', 'record-route', 'rseq', 'content-length']);
