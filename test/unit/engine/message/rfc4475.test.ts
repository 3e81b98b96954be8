// The RFC 4475 torture messages (section 3) through the parser: the valid ones parse and read
// right, the invalid ones fail with the response code the RFC expects, and the ones whose syntax
// is fine but whose meaning is wrong are accepted here and left to the layer named in each test.
import t from 'tap';
import { TORTURE, torture } from '../../../fixtures/rfc4475/messages';
import { parseMessage, type ParseResult } from '../../../../lib/engine/message/parser';
import { serialize } from '../../../../lib/engine/message/serializer';
import type { SipMessage, SipRequest, SipResponse } from '../../../../lib/engine/message/sip-message';
import { parseNameAddr, getTag } from '../../../../lib/engine/message/name-addr';
import { parseVia } from '../../../../lib/engine/message/via';
import { parseCSeq } from '../../../../lib/engine/message/cseq';
import { parseUri } from '../../../../lib/engine/message/uri';

function ok(r: ParseResult): SipMessage {
  if (!r.ok) throw new Error(`expected a parse, got ${r.status} ${r.reason}`);
  return r.message;
}

function request(name: string): SipRequest {
  const m = ok(parseMessage(torture(name)));
  if (m.type !== 'request') throw new Error('not a request');
  return m;
}

function response(name: string): SipResponse {
  const m = ok(parseMessage(torture(name)));
  if (m.type !== 'response') throw new Error('not a response');
  return m;
}

/** Asserts a failure with `status` and whether a response can be built. */
function rejects(tt: tap.Test, name: string, status: number, answerable: boolean): void {
  const r = parseMessage(torture(name));
  tt.equal(r.ok, false, `${name} is rejected`);
  if (r.ok) return;
  tt.equal(r.status, status, `${name}: ${r.reason}`);
  tt.match(r.reason, /\S/, 'reason names the problem');
  tt.equal(r.request !== undefined, answerable, answerable ? 'a response can be built' : 'dropped, no response');
}

t.test('the fixture holds all 49 messages of RFC 4475 section 3', async (tt) => {
  tt.equal(TORTURE.length, 49);
  tt.equal(new Set(TORTURE.map((m) => m.name)).size, 49);
});

t.test('RFC 4475 section 3.1.1: valid messages', async (tt) => {
  tt.test('3.1.1.1 wsinv: a short tortuous INVITE', async (t2) => {
    const m = request('wsinv');
    t2.equal(m.method, 'INVITE');
    t2.equal(m.uri, 'sip:vivekg@chair-dnrc.example.com;unknownparam');
    t2.equal(m.version, 'SIP/2.0');
    const to = parseNameAddr(m.get('to')!)!;
    t2.equal(to.uri, 'sip:vivekg@chair-dnrc.example.com');
    t2.equal(to.display, undefined);
    t2.equal(getTag(m.get('to')!), '1918181833n');
    const from = parseNameAddr(m.get('from')!)!;
    t2.equal(from.display, 'J Rosenberg \\"', 'quoted-pairs resolved');
    t2.equal(from.uri, 'sip:jdrosen@example.com');
    t2.equal(getTag(m.get('f')!), '98asjd8');
    t2.equal(m.get('max-forwards'), '0068');
    t2.same(parseCSeq(m.get('cseq')!), { seq: 9, method: 'INVITE' }, 'folded CSeq, leading zeros');
    t2.equal(m.get('content-length'), '150');
    const vias = m.getAll('via').map((v) => parseVia(v)!);
    t2.equal(vias.length, 3, 'Via and compact v, one a comma list');
    t2.same(vias.map((v) => [v.protocol, v.transport, v.host, v.params.get('branch')]), [
      ['SIP/2.0', 'UDP', '192.0.2.2', '390skdjuw'],
      ['SIP/2.0', 'TCP', 'spindle.example.com', 'z9hG4bK9ikj8'],
      ['SIP/2.0', 'UDP', '192.168.255.111', 'z9hG4bK30239'],
    ]);
    t2.equal(m.get('subject'), '', 'empty compact Subject');
    t2.equal(m.get('newfangledheader'), 'newfangled value continued newfangled value', 'unfolded');
    t2.equal(m.get('UnknownHeaderWithUnusualValue'), ';;,,;;,;', 'unknown header kept verbatim');
    t2.equal(m.get('route'), '<sip:services.example.com;lr;unknownwith=value;unknown-no-value>');
    const contact = parseNameAddr(m.get('contact')!)!;
    t2.equal(contact.display, 'Quoted string ""');
    t2.same([...contact.params], [['newparam', 'newvalue'], ['secondparam', null], ['q', '0.33']]);
    const ruri = parseUri(m.uri)!;
    t2.same([...ruri.params], [['unknownparam', null]]);
    t2.equal(m.body.length, 150);
  });

  tt.test('3.1.1.2 intmeth: wide range of valid characters', async (t2) => {
    const m = request('intmeth');
    t2.equal(m.method, "!interesting-Method0123456789_*+`.%indeed'~", '% is not an escape in a method');
    const ruri = parseUri(m.uri)!;
    t2.equal(ruri.user, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*");
    t2.equal(ruri.password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)");
    t2.equal(ruri.host, 'example.com');
    t2.equal(parseVia(m.get('via')!)!.params.get('branch'), "z9hG4bK-.!%66*_+`'~");
    t2.equal(parseNameAddr(m.get('to')!)!.display, 'BEL:\x07 NUL:\x00 DEL:\x7f', 'quoted BEL, NUL and DEL');
    const from = parseNameAddr(m.get('from')!)!;
    t2.equal(from.display, "token1~` token2'+_ token3*%!.-", 'display name of several tokens');
    t2.equal(from.params.get("fromparam''~+*_!.-%"), '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439"', 'UTF-8 quoted value');
    t2.equal(getTag(m.get('from')!), "_token~1'+`*%!-.");
    t2.equal(m.callId, 'intmeth.word%ZK-!.*_+\'@word`~)(><:\\/"][?}{');
    t2.same(parseCSeq(m.get('cseq')!), { seq: 139122385, method: m.method });
    t2.equal(m.get("extensionHeader-!.%*+_`'~"), '\ufeff\u5927\u505c\u96fb', 'UTF-8 value kept whole, BOM included');
  });

  tt.test('3.1.1.3 esc01: valid use of the % escaping mechanism', async (t2) => {
    const m = request('esc01');
    const ruri = parseUri(m.uri)!;
    t2.equal(ruri.user, 'sips%3Auser%40example.com', 'escapes kept as written');
    t2.equal(ruri.host, 'example.net');
    t2.equal(parseNameAddr(m.get('to')!)!.uri, 'sip:%75se%72@example.com');
    t2.equal(parseUri(parseNameAddr(m.get('from')!)!.uri)!.user, 'I%20have%20spaces');
    t2.equal(m.callId, 'esc01.239409asdfakjkn23onasd0-3234', 'compact i');
    t2.equal(m.get('content-type'), 'application/sdp', 'upper-case compact C');
    const curi = parseUri(parseNameAddr(m.get('contact')!)!.uri)!;
    t2.equal(curi.user, 'cal%6Cer');
    t2.same([...curi.params], [['%6c%72', null], ['n%61me', 'v%61lue%25%34%31']], 'names lower-cased, values as written');
  });

  tt.test('3.1.1.4 escnull: escaped nulls in URIs', async (t2) => {
    const m = request('escnull');
    t2.equal(parseUri(parseNameAddr(m.get('to')!)!.uri)!.user, 'null-%00-null');
    t2.same(m.getAll('contact'), ['<sip:%00@host5.example.com>', '<sip:%00%00@host5.example.com>']);
    t2.equal(m.get('content-length'), '0', 'compact L');
  });

  tt.test('3.1.1.5 esc02: use of % when it is not an escape', async (t2) => {
    const m = request('esc02');
    t2.equal(m.method, 'RE%47IST%45R', 'not REGISTER');
    t2.equal(parseNameAddr(m.get('to')!)!.display, '%Z%45');
    t2.equal(parseVia(m.get('via')!)!.params.get('branch'), 'z9hG4bK209%fzsnel234');
    t2.equal(m.getAll('contact').length, 2, 'C%6Fntact is another header, not Contact');
    t2.equal(m.get('C%6Fntact'), '<sip:alias2@host2.example.com>');
  });

  tt.test('3.1.1.6 lwsdisp: no LWS between display name and <', async (t2) => {
    const from = parseNameAddr(request('lwsdisp').get('from')!)!;
    t2.equal(from.display, 'caller');
    t2.equal(from.uri, 'sip:caller@example.com');
    t2.equal(from.params.get('tag'), '323');
  });

  tt.test('3.1.1.7 longreq: long values in header fields', async (t2) => {
    const m = request('longreq');
    const to = parseNameAddr(m.get('to')!)!;
    t2.equal(to.display, `I have a user name of ${'extreme'.repeat(10)} proportion`);
    const toUri = parseUri(to.uri)!;
    t2.equal(toUri.port, 6000);
    t2.equal(toUri.params.size, 3);
    t2.equal(getTag(m.get('from')!), `12${'982'.repeat(50)}424`);
    t2.equal(m.getAll('via').length, 34, 'Via in every case, long and compact, with spaces before the colon');
    t2.equal(parseVia(m.getAll('via')[33]!)!.params.get('received'), '192.0.2.5');
    t2.equal(m.body.length, 150);
  });

  tt.test('3.1.1.8 dblreq: extra trailing octets in a UDP datagram', async (t2) => {
    const m = request('dblreq');
    t2.equal(m.method, 'REGISTER');
    t2.equal(m.body.length, 0, 'the INVITE after Content-Length 0 is noise');
  });

  tt.test('3.1.1.9 semiuri: semicolon-separated parameters in the URI user part', async (t2) => {
    const m = request('semiuri');
    const u = parseUri(m.uri)!;
    t2.equal(u.user, 'user;par=u%40example.net');
    t2.equal(u.host, 'example.com');
    t2.equal(u.params.size, 0);
    t2.same(m.getAll('accept'), [
      'application/sdp', 'application/pkcs7-mime', 'multipart/mixed', 'multipart/signed', 'message/sip', 'message/sipfrag',
    ], 'folded list');
  });

  tt.test('3.1.1.10 transports: varied and unknown transport types', async (t2) => {
    const m = request('transports');
    t2.same(m.getAll('via').map((v) => parseVia(v)!.transport), ['UDP', 'SCTP', 'TLS', 'UNKNOWN', 'TCP']);
    t2.equal(m.callId, 'transports.kijh4akdnaqjkwendsasfdj');
  });

  tt.test('3.1.1.11 mpart01: multipart MIME message with a binary part', async (t2) => {
    const bytes = torture('mpart01');
    const m = request('mpart01');
    t2.equal(m.body.length, 553);
    t2.ok(m.body.equals(bytes.subarray(bytes.length - 553)), 'binary body intact');
    t2.equal(m.get('content-type'), 'multipart/mixed;boundary=7a9cbec02ceef655');
    t2.equal(parseVia(m.get('via')!)!.params.get('rport'), null);
  });

  tt.test('3.1.1.12 unreason: unusual reason phrase', async (t2) => {
    const m = response('unreason');
    t2.equal(m.status, 200);
    t2.equal(m.reason, '= 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e \u0434\u0435\u0432\u044f\u043d\u043e\u0441\u0442\u043e \u0434\u0435\u0432\u044f\u0442\u044c - \u043f\u0440\u043e\u0441\u0442\u043e\u0435');
    t2.equal(m.body.length, 154);
  });

  tt.test('3.1.1.13 noreason: empty reason phrase', async (t2) => {
    const m = response('noreason');
    t2.equal(m.status, 100);
    t2.equal(m.reason, '');
  });
});

t.test('RFC 4475 section 3.1.2: invalid messages', async (tt) => {
  tt.test('3.1.2.1 badinv01: extraneous header field separators -> 400', async (t2) => rejects(t2, 'badinv01', 400, true));
  tt.test('3.1.2.2 clerr: Content-Length larger than the datagram -> 400', async (t2) => rejects(t2, 'clerr', 400, true));
  tt.test('3.1.2.3 ncl: negative Content-Length -> 400', async (t2) => rejects(t2, 'ncl', 400, true));
  tt.test('3.1.2.4 scalar02: overlarge CSeq, Max-Forwards -> 400', async (t2) => rejects(t2, 'scalar02', 400, true));
  // a response is never answered: it is dropped and the reason logged
  tt.test('3.1.2.5 scalarlg: response with overlarge scalars is dropped', async (t2) => rejects(t2, 'scalarlg', 400, false));
  tt.test('3.1.2.6 quotbal: unterminated quoted string -> 400', async (t2) => rejects(t2, 'quotbal', 400, true));
  tt.test('3.1.2.7 ltgtruri: <> around the Request-URI -> 400', async (t2) => rejects(t2, 'ltgtruri', 400, true));
  tt.test('3.1.2.8 lwsruri: LWS inside the Request-URI -> 400', async (t2) => rejects(t2, 'lwsruri', 400, true));
  tt.test('3.1.2.9 lwsstart: several SP between Request-Line elements -> 400', async (t2) => rejects(t2, 'lwsstart', 400, true));
  tt.test('3.1.2.10 trws: SP at the end of the Request-Line -> 400', async (t2) => rejects(t2, 'trws', 400, true));
  // RFC 4475 allows either a 400 or ignoring the headers; headers are not allowed in a
  // Request-URI (RFC 3261 section 19.1.1, table 1), so this element takes the 400.
  tt.test('3.1.2.11 escruri: escaped headers in the Request-URI -> 400', async (t2) => rejects(t2, 'escruri', 400, true));
  // RFC 3261 section 20.17 requires GMT; the liberal alternative (ignoring Date) is not taken.
  tt.test('3.1.2.12 baddate: non-GMT Date -> 400', async (t2) => rejects(t2, 'baddate', 400, true));
  tt.test('3.1.2.13 regbadct: Contact URI with ? not in <> -> 400', async (t2) => rejects(t2, 'regbadct', 400, true));
  tt.test('3.1.2.14 badaspec: spaces within addr-spec -> 400', async (t2) => rejects(t2, 'badaspec', 400, true));
  tt.test('3.1.2.15 baddn: non-token characters in an unquoted display name -> 400', async (t2) => rejects(t2, 'baddn', 400, true));
  tt.test('3.1.2.16 badvers: SIP/7.0 -> 505', async (t2) => rejects(t2, 'badvers', 505, true));
  tt.test('3.1.2.17 mismatch01: CSeq method differs from the Request-Line -> 400', async (t2) => rejects(t2, 'mismatch01', 400, true));
  // RFC 4475 prefers 501 for an unknown method (400 is acceptable); 501 is what this parser says.
  tt.test('3.1.2.18 mismatch02: unknown method with CSeq mismatch -> 501', async (t2) => rejects(t2, 'mismatch02', 501, true));
  tt.test('3.1.2.19 bigcode: overlarge response code is dropped', async (t2) => rejects(t2, 'bigcode', 400, false));

  tt.test('the failed request keeps what a response needs', async (t2) => {
    const r = parseMessage(torture('badinv01'));
    if (r.ok || !r.request) throw new Error('expected a request');
    t2.equal(r.request.method, 'INVITE');
    t2.equal(r.request.uri, 'sip:user@example.com');
    t2.equal(r.request.callId, 'badinv01.0ha0isndaksdjasdf3234nas');
    t2.equal(r.request.get('cseq'), '8 INVITE');
    t2.equal(r.request.get('via'), 'SIP/2.0/UDP 192.0.2.15;;,;,,');
    const lws = parseMessage(torture('lwsruri'));
    if (lws.ok || !lws.request) throw new Error('expected a request');
    t2.equal(lws.request.method, 'INVITE');
    t2.equal(lws.request.uri, 'sip:user@example.com; lr');
    const vers = parseMessage(torture('badvers'));
    if (vers.ok || !vers.request) throw new Error('expected a request');
    t2.equal(vers.request.version, 'SIP/7.0');
  });
});

t.test('RFC 4475 section 3.2: transaction layer semantics', async (tt) => {
  // The parser accepts it; the transaction layer decides (a 400, or RFC 2543 matching).
  tt.test('3.2.1 badbranch: branch that is only the magic cookie parses', async (t2) => {
    const m = request('badbranch');
    t2.equal(parseVia(m.get('via')!)!.params.get('branch'), 'z9hG4bK');
  });
});

t.test('RFC 4475 section 3.3: application layer semantics', async (tt) => {
  // RFC 4475 asks for a 400, but without From, To and Call-ID no response can be built
  // (RFC 3261 section 8.2.6.2), so the message is dropped and logged.
  tt.test('3.3.1 insuf: missing From, To, Call-ID -> 400, dropped', async (t2) => rejects(t2, 'insuf', 400, false));
  tt.test('3.3.2 unkscm: unknown Request-URI scheme -> 416', async (t2) => rejects(t2, 'unkscm', 416, true));
  // RFC 4475: 416 when the scheme is never meaningful here, which holds for soap.beep.
  tt.test('3.3.3 novelsc: known but atypical scheme -> 416', async (t2) => rejects(t2, 'novelsc', 416, true));

  tt.test('3.3.4 unksm2: unknown URI schemes in To, From, Contact parse', async (t2) => {
    // a registrar rejects the non-SIP address-of-record; that is above the parser
    const m = request('unksm2');
    t2.equal(parseNameAddr(m.get('to')!)!.uri, 'isbn:2983792873');
    t2.equal(parseNameAddr(m.get('from')!)!.uri, 'http://www.example.com');
    t2.equal(parseNameAddr(m.get('contact')!)!.uri, 'name:John_Smith');
  });

  tt.test('3.3.5 bext01: unknown Require / Proxy-Require parse', async (t2) => {
    // the UAS answers 420 Bad Extension (Unsupported lists both); a proxy does the same for Proxy-Require
    const m = request('bext01');
    t2.same(m.getAll('require'), ['nothingSupportsThis', 'nothingSupportsThisEither']);
    t2.same(m.getAll('proxy-require'), ['noProxiesSupportThis', 'norDoAnyProxiesSupportThis']);
  });

  tt.test('3.3.6 invut: unknown Content-Type parses', async (t2) => {
    // the UAS answers 415 Unsupported Media Type with Accept
    const m = request('invut');
    t2.equal(m.get('content-type'), 'application/unknownformat');
    t2.equal(m.body.toString(), '<audio>\r\n <pcmu port="443"/>\r\n</audio>\r\n');
  });

  tt.test('3.3.7 regaut01: unknown Authorization scheme parses', async (t2) => {
    // the registrar challenges with 401 as if no credentials had been sent
    t2.equal(request('regaut01').get('authorization'), 'NoOneKnowsThisScheme opaque-data=here');
  });

  tt.test('3.3.8 multi01: repeated single-value headers -> 400', async (t2) => rejects(t2, 'multi01', 400, true));
  tt.test('3.3.9 mcl01: conflicting Content-Length values -> 400', async (t2) => rejects(t2, 'mcl01', 400, true));

  tt.test('3.3.10 bcast: 200 OK with a broadcast Via parses', async (t2) => {
    // the transport layer must not send this response on to 255.255.255.255
    const m = response('bcast');
    t2.equal(parseVia(m.getAll('via')[1]!)!.host, '255.255.255.255');
  });

  tt.test('3.3.11 zeromf: Max-Forwards of zero parses', async (t2) => {
    // a proxy answers 483 Too Many Hops; a UAS answers the OPTIONS normally
    t2.equal(request('zeromf').get('max-forwards'), '0');
  });

  tt.test('3.3.12 cparam01: parameter after a bare Contact URI belongs to the header', async (t2) => {
    const c = parseNameAddr(request('cparam01').get('contact')!)!;
    t2.equal(c.uri, 'sip:+19725552222@gw1.example.net');
    t2.same([...c.params], [['unknownparam', null]]);
    t2.equal(parseUri(c.uri)!.params.size, 0);
  });

  tt.test('3.3.13 cparam02: parameter inside <> belongs to the URI', async (t2) => {
    const c = parseNameAddr(request('cparam02').get('contact')!)!;
    t2.equal(c.params.size, 0);
    t2.same([...parseUri(c.uri)!.params], [['unknownparam', null]]);
  });

  tt.test('3.3.14 regescrt: REGISTER with an escaped header in the Contact URI parses', async (t2) => {
    // the registrar stores the binding; the header is only meaningful when the URI is used
    const c = parseNameAddr(request('regescrt').get('contact')!)!;
    t2.equal(parseUri(c.uri)!.headers, 'Route=%3Csip:sip.example.com%3E');
  });

  tt.test('3.3.15 sdp01: unacceptable Accept offering parses', async (t2) => {
    // the UAS answers 406 Not Acceptable
    t2.equal(request('sdp01').get('accept'), 'text/nobodyKnowsThis');
  });
});

t.test('RFC 4475 section 3.4: backward compatibility', async (tt) => {
  tt.test('3.4.1 inv2543: RFC 2543 syntax parses', async (t2) => {
    const m = request('inv2543');
    t2.equal(m.get('max-forwards'), undefined, 'no Max-Forwards');
    t2.equal(parseVia(m.get('via')!)!.params.size, 0, 'no branch');
    t2.equal(getTag(m.get('from')!), undefined, 'no From tag');
    t2.equal(m.body.length, 105, 'no Content-Length on a datagram: the body is the rest');
  });
});

t.test('RFC 4475 section 3: every accepted torture message survives serialize -> parse', async (tt) => {
  for (const tm of TORTURE) {
    const r = parseMessage(tm.bytes);
    if (!r.ok) continue;
    const again = parseMessage(serialize(r.message));
    tt.ok(again.ok, `${tm.name} (${tm.section}) re-parses`);
    if (!again.ok) continue;
    tt.same(
      again.message.headers.filter((h) => h.key !== 'content-length').map((h) => [h.key, h.value]),
      r.message.headers.filter((h) => h.key !== 'content-length').map((h) => [h.key, h.value]),
      `${tm.name}: same headers`,
    );
    tt.ok(again.message.body.equals(r.message.body), `${tm.name}: same body`);
  }
});
