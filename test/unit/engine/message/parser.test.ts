// parseMessage and serialize: RFC 3261 sections 7 (message format), 18.3 (framing) and 20.
import t from 'tap';
import { parseMessage, type ParseResult } from '../../../../lib/engine/message/parser';
import { serialize, serializeHead } from '../../../../lib/engine/message/serializer';
import { SipRequest, SipResponse, type SipMessage } from '../../../../lib/engine/message/sip-message';

const SDP = 'v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n';

function lines(...ls: string[]): string {
  return ls.join('\r\n');
}

const INVITE_HEAD = [
  'INVITE sip:bob@biloxi.example.com SIP/2.0',
  'Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds',
  'Max-Forwards: 70',
  'To: Bob <sip:bob@biloxi.example.com>',
  'From: Alice <sip:alice@atlanta.example.com>;tag=1928301774',
  'Call-ID: a84b4c76e66710@pc33.atlanta.example.com',
  'CSeq: 314159 INVITE',
  'Contact: <sip:alice@pc33.atlanta.example.com>',
  'Content-Type: application/sdp',
];

function invite(extra: string[] = [], body = SDP, cl: string | null = String(Buffer.byteLength(body))): Buffer {
  const head = [...INVITE_HEAD, ...extra];
  if (cl !== null) head.push('Content-Length: ' + cl);
  return Buffer.from(head.join('\r\n') + '\r\n\r\n' + body);
}

/** A minimal valid request with the given start line and extra headers. */
function req(startLine: string, extra: string[] = [], method = 'OPTIONS'): Buffer {
  return Buffer.from(lines(
    startLine,
    'Via: SIP/2.0/UDP h.example.com;branch=z9hG4bKx',
    'From: <sip:a@example.com>;tag=1',
    'To: <sip:b@example.com>',
    'Call-ID: c1',
    `CSeq: 1 ${method}`,
    ...extra,
    'Content-Length: 0',
    '', ''));
}

function ok(r: ParseResult): SipMessage {
  if (!r.ok) throw new Error(`expected a parse, got ${r.status} ${r.reason}`);
  return r.message;
}

function failure(r: ParseResult): { status: number; reason: string; request?: SipRequest } {
  if (r.ok) throw new Error('expected a failure');
  return r;
}

t.test('RFC 3261 section 7: a canonical message round-trips byte for byte', async (tt) => {
  const bytes = invite();
  const m = ok(parseMessage(bytes));
  tt.equal(m.type, 'request');
  tt.ok(serialize(m).equals(bytes));
  const res = Buffer.from(lines(
    'SIP/2.0 180 Ringing',
    'Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1',
    'To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf',
    'From: Alice <sip:alice@atlanta.example.com>;tag=1928301774',
    'Call-ID: a84b4c76e66710@pc33.atlanta.example.com',
    'CSeq: 314159 INVITE',
    'Content-Length: 0',
    '', ''));
  const r = ok(parseMessage(res));
  if (r.type !== 'response') throw new Error('not a response');
  tt.equal(r.status, 180);
  tt.equal(r.reason, 'Ringing');
  tt.ok(serialize(r).equals(res));
});

t.test('RFC 3261 section 7.3.3: compact forms and any case of names', async (tt) => {
  const m = ok(parseMessage(Buffer.from(lines(
    'MESSAGE sip:b@example.com SIP/2.0',
    'v: SIP/2.0/UDP h;branch=z9hG4bK1',
    'F: <sip:a@example.com>;tag=1',
    't: <sip:b@example.com>',
    'I: id1',
    'cSeQ: 7 MESSAGE',
    'm: <sip:a@h>',
    'c: text/plain',
    'k: 100rel',
    's: hi',
    'e: gzip',
    'o: presence',
    'u: talk',
    'r: <sip:c@example.com>',
    'b: <sip:d@example.com>',
    'x: 90',
    'L: 5',
    '', 'hello'))));
  tt.equal(m.get('via'), 'SIP/2.0/UDP h;branch=z9hG4bK1');
  tt.equal(m.get('from'), '<sip:a@example.com>;tag=1');
  tt.equal(m.get('To'), '<sip:b@example.com>');
  tt.equal(m.callId, 'id1');
  tt.equal(m.get('contact'), '<sip:a@h>');
  tt.equal(m.get('content-type'), 'text/plain');
  tt.equal(m.get('supported'), '100rel');
  tt.equal(m.get('subject'), 'hi');
  tt.equal(m.get('content-encoding'), 'gzip');
  tt.equal(m.get('event'), 'presence');
  tt.equal(m.get('allow-events'), 'talk');
  tt.equal(m.get('refer-to'), '<sip:c@example.com>');
  tt.equal(m.get('referred-by'), '<sip:d@example.com>');
  tt.equal(m.get('session-expires'), '90');
  tt.equal(m.body.toString(), 'hello');
  tt.equal(m.headers[1]!.name, 'F', 'the name is kept as written');
  const out = serialize(m).toString();
  tt.match(out, /\r\nF: <sip:a@example.com>;tag=1\r\n/, 'compact names are relayed as written');
  tt.match(out, /\r\nContent-Length: 5\r\n\r\nhello$/, 'compact l becomes Content-Length');
  tt.notMatch(out, /\r\nL: /);
});

t.test('RFC 3261 section 7.3.1: folding, whitespace around the colon, multiple lines', async (tt) => {
  const m = ok(parseMessage(Buffer.from(lines(
    'OPTIONS sip:b@example.com SIP/2.0',
    'Via   :   SIP/2.0/UDP h;branch=z9hG4bK1',
    'Via:SIP/2.0/TCP g;branch=z9hG4bK2',
    'From\t: <sip:a@example.com>',
    '\t;tag=1',
    'To: <sip:b@example.com>',
    'Call-ID: c1',
    'CSeq: 1',
    '    OPTIONS',
    'Subject: I know you\'re there,',
    '   pick up the phone',
    '\tand talk to me!',
    'Allow: INVITE, ACK',
    'Allow: BYE',
    'X-Empty:',
    'X-Utf8: caf\u00e9 \u2603',
    'Content-Length: 0',
    '', ''))));
  tt.same(m.getAll('via'), ['SIP/2.0/UDP h;branch=z9hG4bK1', 'SIP/2.0/TCP g;branch=z9hG4bK2']);
  tt.equal(m.get('from'), '<sip:a@example.com> ;tag=1', 'line break and indent become one SP');
  tt.equal(m.get('cseq'), '1 OPTIONS');
  tt.equal(m.get('subject'), 'I know you\'re there, pick up the phone and talk to me!');
  tt.same(m.getAll('allow'), ['INVITE', 'ACK', 'BYE']);
  tt.equal(m.get('x-empty'), '');
  tt.equal(m.get('x-utf8'), 'caf\u00e9 \u2603', 'UTF-8 in values');
  tt.equal(m.headers.length, 12);
});

t.test('RFC 3261 section 7.5: CRLFs before the start line are skipped', async (tt) => {
  const m = ok(parseMessage(Buffer.concat([Buffer.from('\r\n\r\n\r\n'), invite()])));
  tt.equal(m.type === 'request' && m.method, 'INVITE');
});

t.test('RFC 3261 section 7.1: Request-Line checks', async (tt) => {
  tt.ok(parseMessage(req('OPTIONS sips:b@example.com SIP/2.0')).ok, 'sips');
  tt.ok(parseMessage(req('OPTIONS tel:+1-201-555-0123;phone-context=example.com SIP/2.0')).ok, 'tel');
  tt.ok(parseMessage(req('OPTIONS sip:b@[2001:db8::10]:5070;transport=tcp SIP/2.0')).ok, 'IPv6 reference');
  tt.equal(ok(parseMessage(req('OPTIONS sip:b@example.com sip/2.0'))).version, 'SIP/2.0', 'the version is case-insensitive, relayed upper-case');
  tt.equal(failure(parseMessage(req('OPTIONS sip:b@example.com SIP/2.1'))).status, 505);
  const v3 = failure(parseMessage(req('OPTIONS sip:b@example.com SIP/3.0')));
  tt.equal(v3.reason, 'Version Not Supported');
  tt.ok(v3.request, 'a 505 can be sent');
  tt.equal(failure(parseMessage(req('OPTIONS sip:b@example.com HTTP/1.1'))).status, 400);
  const scheme = failure(parseMessage(req('OPTIONS mailto:b@example.com SIP/2.0')));
  tt.equal(scheme.status, 416);
  tt.equal(scheme.reason, 'Unsupported URI Scheme');
  tt.equal(failure(parseMessage(req('OPTIONS http://example.com/x SIP/2.0'))).status, 416);
  tt.equal(failure(parseMessage(req('OPTIONS sip: SIP/2.0'))).status, 400, 'empty SIP URI');
  tt.equal(failure(parseMessage(req('OPTIONS sip:b@exa<mple.com SIP/2.0'))).status, 400, 'embedded <');
  tt.equal(failure(parseMessage(req('OPTIONS sip:b@example.com:99999 SIP/2.0'))).status, 400, 'port out of range');
  tt.equal(failure(parseMessage(req('OPTIONS sip:b%zz@example.com SIP/2.0'))).status, 400, 'bad escape');
  tt.equal(failure(parseMessage(req('OPTIONS sip:b@example.com'))).status, 400, 'no version');
  tt.equal(failure(parseMessage(req('OPT<IONS sip:b@example.com SIP/2.0', [], 'OPT<IONS'))).status, 400, 'method is not a token');
  tt.equal(failure(parseMessage(req('OPTIONS\tsip:b@example.com\tSIP/2.0'))).status, 400, 'HTAB is not SP');
});

t.test('RFC 3261 section 7.2: Status-Line checks', async (tt) => {
  function res(line: string): Buffer {
    return Buffer.from(lines(line, 'Via: SIP/2.0/UDP h;branch=z9hG4bK1', 'From: <sip:a@b>;tag=1', 'To: <sip:c@d>', 'Call-ID: x', 'CSeq: 1 INVITE', 'Content-Length: 0', '', ''));
  }
  const m = ok(parseMessage(res('SIP/2.0 699 Custom reason with  spaces')));
  tt.equal(m.type === 'response' && m.reason, 'Custom reason with  spaces');
  const bare = ok(parseMessage(res('SIP/2.0 200')));
  tt.equal(bare.type === 'response' && bare.reason, '', 'a missing reason phrase is tolerated');
  for (const bad of ['SIP/2.0 099 Low', 'SIP/2.0 700 High', 'SIP/2.0 2000 Long', 'SIP/2.0 20 Short', 'SIP/2.0 abc X', 'SIP/2.0']) {
    const f = failure(parseMessage(res(bad)));
    tt.equal(f.status, 400, bad);
    tt.equal(f.request, undefined, 'responses are never answered');
  }
  tt.equal(failure(parseMessage(res('SIP/3.0 200 OK'))).status, 505);
});

t.test('RFC 3261 section 8.1.1: required headers, exactly one From/To/Call-ID/CSeq', async (tt) => {
  const noVia = Buffer.from(lines('OPTIONS sip:b@e SIP/2.0', 'From: <sip:a@b>;tag=1', 'To: <sip:c@d>', 'Call-ID: x', 'CSeq: 1 OPTIONS', '', ''));
  const f = failure(parseMessage(noVia));
  tt.equal(f.status, 400);
  tt.match(f.reason, /Via/);
  tt.equal(f.request, undefined, 'no Via: nowhere to send a response');
  for (const name of ['From', 'To', 'Call-ID', 'CSeq']) {
    const twice = failure(parseMessage(req('OPTIONS sip:b@example.com SIP/2.0', [`${name}: ${name === 'CSeq' ? '2 OPTIONS' : name === 'Call-ID' ? 'c2' : '<sip:z@example.com>'}`])));
    tt.equal(twice.status, 400, `two ${name}`);
    tt.match(twice.reason, new RegExp(`Multiple ${name}`));
    tt.ok(twice.request, 'answerable');
  }
  const noCseq = Buffer.from(lines('OPTIONS sip:b@e SIP/2.0', 'Via: SIP/2.0/UDP h', 'From: <sip:a@b>;tag=1', 'To: <sip:c@d>', 'Call-ID: x', '', ''));
  tt.equal(failure(parseMessage(noCseq)).request, undefined, 'no CSeq: no response');
  tt.ok(parseMessage(req('OPTIONS sip:b@example.com SIP/2.0')).ok, 'Max-Forwards may be absent (RFC 2543 peers)');
});

t.test('RFC 3261 section 20.16 / 8.1.1.5: CSeq number and method', async (tt) => {
  tt.ok(parseMessage(req('OPTIONS sip:b@example.com SIP/2.0', [], 'OPTIONS')).ok);
  const big = Buffer.from(req('OPTIONS sip:b@example.com SIP/2.0').toString().replace('CSeq: 1 OPTIONS', 'CSeq: 2147483647 OPTIONS'));
  tt.ok(parseMessage(big).ok, '2**31-1 is the largest');
  const over = Buffer.from(req('OPTIONS sip:b@example.com SIP/2.0').toString().replace('CSeq: 1 OPTIONS', 'CSeq: 2147483648 OPTIONS'));
  tt.equal(failure(parseMessage(over)).reason, 'Bad Request - Malformed CSeq');
  const nomethod = Buffer.from(req('OPTIONS sip:b@example.com SIP/2.0').toString().replace('CSeq: 1 OPTIONS', 'CSeq: 1'));
  tt.equal(failure(parseMessage(nomethod)).reason, 'Bad Request - Malformed CSeq');
  const mismatch = failure(parseMessage(req('OPTIONS sip:b@example.com SIP/2.0', [], 'INVITE')));
  tt.equal(mismatch.status, 400);
  tt.equal(failure(parseMessage(req('OPTIONS sip:b@example.com SIP/2.0', [], 'options'))).status, 400, 'methods are case-sensitive');
  const ack = failure(parseMessage(req('ACK sip:b@example.com SIP/2.0', [], 'INVITE')));
  tt.equal(ack.request, undefined, 'an ACK is never answered');
});

t.test('RFC 3261 section 20.22: Max-Forwards must be 0..255 when present', async (tt) => {
  tt.ok(parseMessage(req('OPTIONS sip:b@example.com SIP/2.0', ['Max-Forwards: 255'])).ok);
  tt.ok(parseMessage(req('OPTIONS sip:b@example.com SIP/2.0', ['Max-Forwards: 0'])).ok);
  for (const v of ['256', '-1', 'ten', '', '7 0']) {
    tt.equal(failure(parseMessage(req('OPTIONS sip:b@example.com SIP/2.0', [`Max-Forwards: ${v}`]))).status, 400, JSON.stringify(v));
  }
});

t.test('RFC 3261 sections 20.10 / 20.20 / 20.39: From, To and Contact must parse', async (tt) => {
  const bad = (h: string): number => failure(parseMessage(req('OPTIONS sip:b@example.com SIP/2.0', [h]))).status;
  tt.ok(parseMessage(req('OPTIONS sip:b@example.com SIP/2.0', ['Contact: *'])).ok, 'Contact: *');
  tt.ok(parseMessage(req('OPTIONS sip:b@example.com SIP/2.0', ['Contact: <sip:a@h>;expires=60, "X" <sip:b@h>;q=0.5'])).ok, 'Contact list');
  tt.equal(bad('Contact: <sip:a@h'), 400, 'unclosed <');
  tt.equal(bad('Contact: sip:a@h?x=y'), 400, '? outside <>');
  tt.equal(bad('Contact: <sip:a@h>;;'), 400, 'empty parameter');
  const from = Buffer.from(req('OPTIONS sip:b@example.com SIP/2.0').toString().replace('From: <sip:a@example.com>;tag=1', 'From: no uri here'));
  tt.equal(failure(parseMessage(from)).reason, 'Bad Request - Malformed From');
});

t.test('RFC 3261 section 18.3: datagram bodies and Content-Length', async (tt) => {
  const noCl = ok(parseMessage(invite([], SDP, null)));
  tt.equal(noCl.body.toString(), SDP, 'absent: the rest of the datagram');
  const shorter = ok(parseMessage(invite([], SDP, '10')));
  tt.equal(shorter.body.toString(), SDP.slice(0, 10), 'smaller: truncated');
  const longer = failure(parseMessage(invite([], SDP, String(SDP.length + 1))));
  tt.equal(longer.status, 400);
  tt.equal(longer.reason, 'Bad Request - Content-Length larger than body');
  tt.ok(longer.request);
  tt.equal(failure(parseMessage(invite([], SDP, 'abc'))).status, 400);
  tt.equal(failure(parseMessage(invite([], SDP, '1e3'))).status, 400);
  tt.equal(failure(parseMessage(invite([], SDP, '99999999999999'))).status, 400);
  const zero = ok(parseMessage(invite([], '', '0')));
  tt.equal(zero.body.length, 0);
  tt.ok(parseMessage(invite(['Content-Length: ' + SDP.length], SDP)).ok, 'a repeated equal value is harmless');
});

t.test('RFC 3261 section 18.3: on a stream, Content-Length is mandatory', async (tt) => {
  const f = failure(parseMessage(invite([], SDP, null), { stream: true }));
  tt.equal(f.reason, 'Bad Request - Missing Content-Length');
  tt.ok(parseMessage(invite(), { stream: true }).ok);
});

t.test('RFC 3261 section 18.1.1: larger than maxSize -> 513', async (tt) => {
  const bytes = invite();
  const f = failure(parseMessage(bytes, { maxSize: bytes.length - 1 }));
  tt.equal(f.status, 513);
  tt.equal(f.reason, 'Message Too Large');
  tt.ok(f.request, 'answerable');
  tt.ok(parseMessage(bytes, { maxSize: bytes.length }).ok);
  const big = invite([], 'x'.repeat(70000));
  tt.equal(failure(parseMessage(big)).status, 513, 'default limit 65535');
});

t.test('RFC 3261 section 7: malformed input', async (tt) => {
  tt.equal(failure(parseMessage(Buffer.alloc(0))).status, 400);
  tt.equal(failure(parseMessage(Buffer.from('\r\n\r\n'))).status, 400);
  const garbage = failure(parseMessage(Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0x0d, 0x0a, 0x0d, 0x0a])));
  tt.equal(garbage.status, 400);
  tt.equal(garbage.request, undefined);
  const noColon = failure(parseMessage(req('OPTIONS sip:b@example.com SIP/2.0', ['This line has no colon'])));
  tt.equal(noColon.reason, 'Bad Request - Malformed header line');
  tt.ok(noColon.request, 'the other headers still allow a 400');
  tt.equal(failure(parseMessage(req('OPTIONS sip:b@example.com SIP/2.0', ['Bad Name: x']))).reason, 'Bad Request - Malformed header name');
  tt.equal(failure(parseMessage(req('OPTIONS sip:b@example.com SIP/2.0', ['X-A: one\ntwo']))).reason, 'Bad Request - Bare LF in header');
  tt.equal(failure(parseMessage(req('OPTIONS sip:b@example.com SIP/2.0', ['X-A: one\rtwo']))).reason, 'Bad Request - Bare CR in header');
  tt.equal(failure(parseMessage(Buffer.from(' folded: before anything\r\n' + req('OPTIONS sip:b@example.com SIP/2.0').toString()))).status, 400);
  tt.equal(failure(parseMessage(Buffer.from(lines('OPTIONS sip:b@e SIP/2.0', 'Via: SIP/2.0/UDP h')))).reason, 'Bad Request - Header block not terminated');
  const noBlank = ok(parseMessage(Buffer.from(req('OPTIONS sip:b@example.com SIP/2.0').toString().slice(0, -2))));
  tt.equal(noBlank.body.length, 0, 'a datagram missing only the final empty line is accepted');
  tt.equal(failure(parseMessage(req('OPTIONS sip:b@example.com SIP/2.0', ['Call-ID: has space']))).status, 400);
  tt.equal(failure(parseMessage(req('OPTIONS sip:b@example.com SIP/2.0', ['Date: Sat, 13 Nov 2010 23:29:00 PST']))).status, 400);
  tt.ok(parseMessage(req('OPTIONS sip:b@example.com SIP/2.0', ['Date: Sat, 13 Nov 2010 23:29:00 GMT'])).ok);
});

t.test('RFC 3261 section 7.4: the body is a view of the input, binary bytes intact', async (tt) => {
  const body = Buffer.from([0, 1, 2, 0xff, 0x0d, 0x0a, 0x0d, 0x0a, 0x80]);
  const head = Buffer.from(INVITE_HEAD.join('\r\n') + '\r\nContent-Length: 9\r\n\r\n');
  const m = ok(parseMessage(Buffer.concat([head, body])));
  tt.ok(m.body.equals(body));
});

t.test('serialize: Content-Length always states the body length (RFC 3261 section 20.14)', async (tt) => {
  const r = new SipRequest('MESSAGE', 'sip:b@example.com');
  r.append('Via', 'SIP/2.0/UDP h;branch=z9hG4bK1');
  r.append('l', '999');
  r.append('To', '<sip:b@example.com>');
  r.append('Content-Length', '5');
  r.body = Buffer.from('h\u00e9llo');
  const text = serialize(r).toString('utf8');
  tt.equal(text, lines(
    'MESSAGE sip:b@example.com SIP/2.0',
    'Via: SIP/2.0/UDP h;branch=z9hG4bK1',
    'Content-Length: 6',
    'To: <sip:b@example.com>',
    '', 'h\u00e9llo'));
  const res = new SipResponse(200, 'OK');
  res.append('To', '<sip:b@example.com>;tag=\u00e9');
  tt.equal(serialize(res).toString('utf8'), lines('SIP/2.0 200 OK', 'To: <sip:b@example.com>;tag=\u00e9', 'Content-Length: 0', '', ''), 'added when absent');
  tt.equal(serializeHead(res, 42), lines('SIP/2.0 200 OK', 'To: <sip:b@example.com>;tag=\u00e9', 'Content-Length: 42', '', ''));
  const evil = new SipResponse(200, 'OK');
  evil.append('X-App', 'a\r\nInjected: yes');
  tt.equal(serializeHead(evil), lines('SIP/2.0 200 OK', 'X-App: a Injected: yes', 'Content-Length: 0', '', ''), 'CR/LF in a value cannot start a header');
});

t.test('RFC 3261 section 7: serialize -> parse keeps headers, order and body', async (tt) => {
  const m = ok(parseMessage(invite(['Record-Route: <sip:p1;lr>, <sip:p2;lr>', 'X-Custom: \u00fcml\u00e4ut'])));
  const again = ok(parseMessage(serialize(m)));
  tt.same(again.headers, m.headers);
  tt.ok(again.body.equals(m.body));
});
